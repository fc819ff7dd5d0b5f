"""Python capture client: runs ONE scenario with ONE instrumentation library, inside that library's venv.

    python client.py --lib LIB --mode MODE --scenario S --base-url http://127.0.0.1:P/v1 \
        --otlp http://127.0.0.1:Q --result client_result.json [--no-app-span]

The mode's environment (capture_env in expected.json) is set by orchestrate.py before this process starts.
SDK providers: TracerProvider + BatchSpanProcessor, LoggerProvider + BatchLogRecordProcessor, MeterProvider,
all with OTLP gRPC exporters, set as globals BEFORE the library is initialised (openlit and litellm reuse them).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from importlib.metadata import PackageNotFoundError, version
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import scenarios as sc

LIB_PACKAGES = {
    "openlit": "openlit",
    "litellm": "litellm",
    "traceloop": "opentelemetry-instrumentation-openai",
    "otelv2": "opentelemetry-instrumentation-openai-v2",
    "otelv2ug04": "opentelemetry-instrumentation-openai-v2",
    "otelv2legacy": "opentelemetry-instrumentation-openai-v2",
    "openinference": "openinference-instrumentation-openai",
    "langchain-openinference": "openinference-instrumentation-langchain",
}


def _ver(pkg: str) -> str | None:
    try:
        return version(pkg)
    except PackageNotFoundError:
        return None


# ---------------------------------------------------------------------------------------------------------
# OpenTelemetry SDK


class Otel:
    def __init__(self, lib: str, mode: str, scenario: str, endpoint: str) -> None:
        from opentelemetry import _logs, metrics, trace
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        resource = Resource.create(
            {
                "service.name": f"heldout-{lib}",
                "heldout.library": lib,
                "heldout.mode": mode,
                "heldout.scenario": scenario,
            }
        )
        self.tracer_provider = TracerProvider(resource=resource)
        self.tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True)))
        trace.set_tracer_provider(self.tracer_provider)
        self.logger_provider = LoggerProvider(resource=resource)
        self.logger_provider.add_log_record_processor(
            BatchLogRecordProcessor(OTLPLogExporter(endpoint=endpoint, insecure=True))
        )
        _logs.set_logger_provider(self.logger_provider)
        self.meter_provider = MeterProvider(
            resource=resource,
            metric_readers=[
                PeriodicExportingMetricReader(
                    OTLPMetricExporter(endpoint=endpoint, insecure=True), export_interval_millis=600_000
                )
            ],
        )
        metrics.set_meter_provider(self.meter_provider)
        self.tracer = trace.get_tracer("heldout.app")

    def shutdown(self) -> None:
        for p in (self.tracer_provider, self.logger_provider):  # the meter exports once, on shutdown
            try:
                p.force_flush()
            except Exception:
                traceback.print_exc()
        for p in (self.tracer_provider, self.logger_provider, self.meter_provider):
            try:
                p.shutdown()
            except Exception:
                traceback.print_exc()


# ---------------------------------------------------------------------------------------------------------
# Library set-up


def instrument(lib: str, mode: str, otlp: str) -> str:
    """Initialise the library; return the code line recorded as capture_code."""
    if lib in ("otelv2", "otelv2ug04", "otelv2legacy"):
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

        OpenAIInstrumentor().instrument()
        suffix = " 2.3b0" if lib == "otelv2legacy" else ""
        return f"OpenAIInstrumentor().instrument()  (opentelemetry.instrumentation.openai_v2{suffix})"
    if lib == "traceloop":
        from opentelemetry.instrumentation.openai import OpenAIInstrumentor

        if mode == "events":
            OpenAIInstrumentor(use_attributes=False).instrument()
            return "OpenAIInstrumentor(use_attributes=False).instrument()  (opentelemetry.instrumentation.openai)"
        OpenAIInstrumentor().instrument()
        return "OpenAIInstrumentor().instrument()  (opentelemetry.instrumentation.openai)"
    if lib == "openinference":
        from openinference.instrumentation.openai import OpenAIInstrumentor

        OpenAIInstrumentor().instrument()
        return "OpenAIInstrumentor().instrument()  (openinference.instrumentation.openai)"
    if lib == "langchain-openinference":
        from openinference.instrumentation.langchain import LangChainInstrumentor

        LangChainInstrumentor().instrument()
        return "LangChainInstrumentor().instrument()  (openinference.instrumentation.langchain)"
    if lib == "openlit":
        import openlit

        # pricing_json: a local empty file, so openlit does not download its price list.
        pricing = os.path.join(os.path.dirname(os.path.abspath(__file__)), "openlit_pricing.json")
        openlit.init(
            service_name="heldout-openlit",
            environment="heldout",
            pricing_json=pricing,
            collect_gpu_stats=False,
            collect_system_metrics=False,
        )
        return 'openlit.init(service_name="heldout-openlit", environment="heldout", pricing_json=<local {}>)'
    if lib == "litellm":
        import litellm

        litellm.telemetry = False
        litellm.suppress_debug_info = True
        litellm.callbacks = ["otel"]
        return (
            'litellm.callbacks = ["otel"]; litellm.completion(model="openai/gpt-4o-mini", api_base=..., max_retries=0)'
        )
    raise ValueError(lib)


# ---------------------------------------------------------------------------------------------------------
# Scenario runners. Each returns the list of per-call results (client_result.json "results").


def _tool_calls_of(msg: Any) -> list[dict[str, Any]]:
    out = []
    for tc in getattr(msg, "tool_calls", None) or []:
        out.append({"id": tc.id, "name": tc.function.name, "arguments": tc.function.arguments})
    return out


def run_openai_sdk(scenario: str, base_url: str) -> list[dict[str, Any]]:
    import openai

    client = openai.OpenAI(base_url=base_url, api_key="sk-heldout-fake", max_retries=0)
    model = sc.REQUEST_MODEL
    msgs = sc.base_messages(scenario)
    params = sc.request_params(scenario)
    results: list[dict[str, Any]] = []
    if scenario in ("single", "multi_turn"):
        r = client.chat.completions.create(model=model, messages=msgs, **params)
        m = r.choices[0].message
        results.append(
            {"content": m.content, "tool_calls": _tool_calls_of(m), "finish_reason": r.choices[0].finish_reason}
        )
    elif scenario == "tool_call":
        r = client.chat.completions.create(model=model, messages=msgs, tools=[sc.WEATHER_TOOL], tool_choice="auto")
        m = r.choices[0].message
        results.append(
            {"content": m.content, "tool_calls": _tool_calls_of(m), "finish_reason": r.choices[0].finish_reason}
        )
        msgs2 = [*msgs, sc.assistant_tool_call_message(), sc.tool_result_message()]
        r2 = client.chat.completions.create(model=model, messages=msgs2, tools=[sc.WEATHER_TOOL])
        m2 = r2.choices[0].message
        results.append(
            {"content": m2.content, "tool_calls": _tool_calls_of(m2), "finish_reason": r2.choices[0].finish_reason}
        )
    elif scenario == "streaming":
        stream = client.chat.completions.create(
            model=model, messages=msgs, stream=True, stream_options={"include_usage": True}, **params
        )
        text, finish = "", None
        for chunk in stream:
            for ch in chunk.choices:
                if ch.delta and ch.delta.content:
                    text += ch.delta.content
                if ch.finish_reason:
                    finish = ch.finish_reason
        results.append({"content": text, "finish_reason": finish})
    elif scenario == "error":
        try:
            client.chat.completions.create(
                model=model, messages=msgs, extra_headers={sc.FAIL_HEADER: sc.FAIL_HEADER_VALUE}, **params
            )
            results.append({"error": None})
        except openai.APIStatusError as e:
            results.append({"error": type(e).__name__, "status": e.status_code})
    return results


def run_litellm(scenario: str, base_url: str) -> list[dict[str, Any]]:
    import litellm

    common = {
        "model": "openai/" + sc.REQUEST_MODEL,
        "api_base": base_url,
        "api_key": "sk-heldout-fake",
        "max_retries": 0,
    }
    msgs = sc.base_messages(scenario)
    params = sc.request_params(scenario)
    results: list[dict[str, Any]] = []
    if scenario in ("single", "multi_turn"):
        r = litellm.completion(messages=msgs, **params, **common)
        m = r.choices[0].message
        results.append(
            {"content": m.content, "tool_calls": _tool_calls_of(m), "finish_reason": r.choices[0].finish_reason}
        )
    elif scenario == "tool_call":
        r = litellm.completion(messages=msgs, tools=[sc.WEATHER_TOOL], tool_choice="auto", **common)
        m = r.choices[0].message
        results.append(
            {"content": m.content, "tool_calls": _tool_calls_of(m), "finish_reason": r.choices[0].finish_reason}
        )
        msgs2 = [*msgs, sc.assistant_tool_call_message(), sc.tool_result_message()]
        r2 = litellm.completion(messages=msgs2, tools=[sc.WEATHER_TOOL], **common)
        m2 = r2.choices[0].message
        results.append(
            {"content": m2.content, "tool_calls": _tool_calls_of(m2), "finish_reason": r2.choices[0].finish_reason}
        )
    elif scenario == "streaming":
        stream = litellm.completion(
            messages=msgs, stream=True, stream_options={"include_usage": True}, **params, **common
        )
        text, finish = "", None
        for chunk in stream:
            for ch in chunk.choices:
                if ch.delta and ch.delta.content:
                    text += ch.delta.content
                if ch.finish_reason:
                    finish = ch.finish_reason
        results.append({"content": text, "finish_reason": finish})
    elif scenario == "error":
        try:
            litellm.completion(messages=msgs, extra_headers={sc.FAIL_HEADER: sc.FAIL_HEADER_VALUE}, **params, **common)
            results.append({"error": None})
        except Exception as e:
            results.append({"error": type(e).__name__, "status": getattr(e, "status_code", None)})
    return results


def run_langchain(scenario: str, base_url: str) -> list[dict[str, Any]]:
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
    from langchain_openai import ChatOpenAI

    def to_lc(msgs: list[dict[str, Any]]) -> list[Any]:
        out: list[Any] = []
        for m in msgs:
            if m["role"] == "system":
                out.append(SystemMessage(content=m["content"]))
            elif m["role"] == "user":
                out.append(HumanMessage(content=m["content"]))
            elif m["role"] == "assistant":
                out.append(AIMessage(content=m["content"] or ""))
        return out

    def res(msg: Any) -> dict[str, Any]:
        return {
            "content": msg.content or None,
            "tool_calls": [
                {"id": t["id"], "name": t["name"], "arguments": json.dumps(t["args"])} for t in msg.tool_calls or []
            ],
            "finish_reason": (msg.response_metadata or {}).get("finish_reason"),
        }

    kw: dict[str, Any] = {
        "model": sc.REQUEST_MODEL,
        "base_url": base_url,
        "api_key": "sk-heldout-fake",
        "max_retries": 0,
    }
    params = sc.request_params(scenario)
    msgs = to_lc(sc.base_messages(scenario))
    results: list[dict[str, Any]] = []
    if scenario in ("single", "multi_turn"):
        llm = ChatOpenAI(**kw, **params)
        results.append(res(llm.invoke(msgs)))
    elif scenario == "tool_call":
        llm = ChatOpenAI(**kw)
        bound = llm.bind_tools([sc.WEATHER_TOOL], tool_choice="auto")
        ai = bound.invoke(msgs)
        results.append(res(ai))
        llm2 = llm.bind_tools([sc.WEATHER_TOOL])
        msgs2 = [*msgs, ai, ToolMessage(content=sc.TOOL_RESULT, tool_call_id=sc.TOOL_CALL_ID)]
        results.append(res(llm2.invoke(msgs2)))
    elif scenario == "streaming":
        llm = ChatOpenAI(**kw, **params, streaming=True, stream_usage=True)
        text, finish = "", None
        for chunk in llm.stream(msgs):
            if isinstance(chunk.content, str):
                text += chunk.content
            finish = (chunk.response_metadata or {}).get("finish_reason") or finish
        results.append({"content": text, "finish_reason": finish})
    elif scenario == "error":
        llm = ChatOpenAI(**kw, **params, default_headers={sc.FAIL_HEADER: sc.FAIL_HEADER_VALUE})
        try:
            llm.invoke(msgs)
            results.append({"error": None})
        except Exception as e:
            results.append({"error": type(e).__name__, "status": getattr(e, "status_code", None)})
    return results


# ---------------------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", required=True)
    ap.add_argument("--mode", required=True)
    ap.add_argument("--scenario", required=True, choices=sc.SCENARIOS)
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--otlp", required=True)
    ap.add_argument("--result", required=True)
    ap.add_argument("--no-app-span", action="store_true")
    ap.add_argument("--hold-span", type=float, default=0.0, help="keep the app span open N s after the calls")
    ap.add_argument("--settle", type=float, default=0.0, help="sleep N s before flushing (async callbacks)")
    args = ap.parse_args()

    otel = Otel(args.lib, args.mode, args.scenario, args.otlp)
    capture_code = instrument(args.lib, args.mode, args.otlp)

    if args.lib == "litellm":
        runner = run_litellm
    elif args.lib == "langchain-openinference":
        runner = run_langchain
    else:
        runner = run_openai_sdk

    def run() -> list[dict[str, Any]]:
        results = runner(args.scenario, args.base_url)
        if args.hold_span:
            time.sleep(args.hold_span)
        return results

    if args.no_app_span:
        results = run()
    else:
        with otel.tracer.start_as_current_span(
            f"heldout scenario {args.scenario}", attributes={"heldout.scenario": args.scenario}
        ):
            results = run()
    if args.settle:
        time.sleep(args.settle)

    out: dict[str, Any] = {"library_version": _ver(LIB_PACKAGES[args.lib])}
    if args.lib == "langchain-openinference":
        out["langchain_openai_version"] = _ver("langchain-openai")
    out["openai_version"] = _ver("openai")
    out["otel_sdk_version"] = _ver("opentelemetry-sdk")
    out["capture_code"] = capture_code
    out["results"] = results
    with open(args.result, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=2, ensure_ascii=False)
    otel.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
