"""Run one example end to end on this machine, with one command and no API key.

    python examples/run.py openai_v2         # official OpenTelemetry openai-v2 instrumentation
    python examples/run.py openllmetry       # OpenLLMetry (Traceloop)
    python examples/run.py openinference     # OpenInference (Arize)
    python examples/run.py litellm_gateway   # the LiteLLM gateway config, otel callback
    python examples/run.py router            # a router that keeps a cheaper model while its quality holds
    python examples/run.py --list

What runs, all on 127.0.0.1 and free ports:

* a fake LLM: an OpenAI-compatible server (``otel_judge.testing.FakeJudge``) that the app's real
  ``openai`` client (or LiteLLM) calls instead of OpenAI;
* a fake judge: the same kind of server, answering otel-judge's judge prompts with a score;
* a trace backend: ``otel_judge.testing.SpanSink``, an OTLP/gRPC server that keeps what it gets;
* otel-judge itself, in this process, from ``examples/otel-judge.yaml``;
* the example app, in its own process (instrumentation libraries patch ``openai`` globally),
  exporting OTLP/gRPC to otel-judge.

It prints what the backend received (status, score, label, explanation per model-call span) and
exits 0 when at least one span was judged. Use the apps against real services the same way: run
otel-judge (``make run`` or ``otel-judge serve --config examples/otel-judge.yaml``) and the app with
``OPENAI_API_KEY`` set.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from otel_judge import semconv
from otel_judge.config import load_config
from otel_judge.pipeline import Pipeline
from otel_judge.testing import FakeJudge, JudgeRequest, ReceivedSpan, SpanSink

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "otel-judge.yaml"
EVALUATOR = "helpfulness"  # the evaluator of examples/otel-judge.yaml
APP_TIMEOUT = 120.0  # seconds for the app process (imports of the instrumentation libraries included)
JUDGED_TIMEOUT = 60.0  # seconds for the judged spans to reach the backend after the app exited


@dataclass(frozen=True)
class AppExample:
    script: str  # relative to examples/
    what: str


APPS: dict[str, AppExample] = {
    "openai_v2": AppExample("openai_v2_app.py", "the official OpenTelemetry openai-v2 instrumentation"),
    "openllmetry": AppExample("openllmetry_app.py", "OpenLLMetry (Traceloop's opentelemetry-instrumentation-openai)"),
    "openinference": AppExample("openinference_app.py", "OpenInference (openinference-instrumentation-openai)"),
    "litellm_gateway": AppExample(
        "litellm_proxy/gateway_app.py", "the LiteLLM gateway config.yaml, otel callback (litellm.Router in-process)"
    ),
}
EXAMPLES = [*APPS, "router"]


# --------------------------------------------------------------------------- the fakes' scripts


def llm_answer(request: JudgeRequest) -> str:
    """The fake LLM's reply to the support bot: a helpful one."""
    return (
        "Sorry about the cracked pole! We ship replacement poles free of charge for damage on arrival, "
        "so there is no need to return the tent. A new Ridge 2 main pole usually arrives in 3-5 working days."
    )


def judge_verdict(request: JudgeRequest) -> str:
    """The fake judge: a high score for an answer that offers the replacement, a low one otherwise."""
    answer = request.response_text or ""
    if "replacement" in answer:
        return json.dumps({"score": 86, "explanation": "Answers the question and says what happens next."})
    return json.dumps({"score": 22, "explanation": "Does not answer the customer's question."})


# --------------------------------------------------------------------------- otel-judge in-process


def demo_env(judge: FakeJudge, backend: SpanSink) -> dict[str, str]:
    """The ``${env:...}`` values of examples/otel-judge.yaml for the local demo."""
    return {
        "OTEL_JUDGE_GRPC_ENDPOINT": "127.0.0.1:0",
        "BACKEND_OTLP_ENDPOINT": backend.endpoint,
        "OTEL_JUDGE_MODEL": judge.model,
        "OTEL_JUDGE_API_BASE": judge.api_base,
    }


def app_env(pipeline: Pipeline, llm: FakeJudge, **extra: str) -> dict[str, str]:
    """The app's environment: OTLP to otel-judge, OpenAI to the fake LLM, nothing to the internet."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "OPENAI_", "TRACELOOP_", "OPENINFERENCE_"))
    }
    env.update(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{pipeline.grpc_port}",
            "OPENAI_BASE_URL": llm.api_base,
            "OPENAI_API_KEY": "sk-demo-not-a-real-key",
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # LiteLLM: no price list download
            "TRACELOOP_TELEMETRY": "false",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


async def run_process(args: Sequence[str], env: dict[str, str], timeout: float = APP_TIMEOUT) -> str:
    """Run ``python ARGS...``; return its standard output; raise RuntimeError with its log if it fails."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *args,
        cwd=HERE,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise RuntimeError(f"{' '.join(args)} did not finish within {timeout:.0f}s") from None
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited with {proc.returncode}:\n{stderr.decode()[-3000:]}")
    return stdout.decode()


def considered(spans: Sequence[ReceivedSpan]) -> list[ReceivedSpan]:
    """The spans otel-judge considered: every model-call span carries an evaluation status."""
    return [s for s in spans if semconv.OTEL_JUDGE_EVALUATION_STATUS in s.attributes]


def describe(span: ReceivedSpan, evaluator: str = EVALUATOR) -> str:
    """One line per model-call span, as the backend received it."""
    attrs = span.attributes
    status = attrs[semconv.OTEL_JUDGE_EVALUATION_STATUS]
    line = f"  {span.span.name!r}: otel_judge.evaluation.status={status}"
    if status == "evaluated":
        value = attrs.get(semconv.score_value_key(evaluator))
        label = attrs.get(semconv.score_label_key(evaluator))
        explanation = attrs.get(semconv.explanation_key(evaluator))
        line += f"; {evaluator} {value:g} ({label}): {explanation}"
    elif semconv.OTEL_JUDGE_EVALUATION_ERROR in attrs:
        line += f"; error: {attrs[semconv.OTEL_JUDGE_EVALUATION_ERROR]}"
    return line


async def run_app(name: str, out: TextIO = sys.stdout) -> list[ReceivedSpan]:
    """Run the app example ``name`` through otel-judge; return every span the backend received."""
    example = APPS[name]
    async with (
        FakeJudge(llm_answer, model="gpt-4o-mini") as llm,
        FakeJudge(judge_verdict) as judge,
        SpanSink() as backend,
    ):
        config, _ = load_config(CONFIG, demo_env(judge, backend))
        pipeline = Pipeline(config)
        await pipeline.start()
        try:
            print(f"otel-judge: OTLP/gRPC on 127.0.0.1:{pipeline.grpc_port}, judge {judge.api_base}", file=out)
            print(f"running {example.script} ({example.what})", file=out)
            answer = await run_process([example.script], app_env(pipeline, llm))
            print(f"app answered: {answer.strip()}", file=out)
            await backend.wait_for(lambda: bool(considered(backend.spans())), JUDGED_TIMEOUT)
        finally:
            await pipeline.shutdown(5)
    spans = backend.spans()
    print(f"the backend received {len(spans)} spans; model calls:", file=out)
    for span in considered(spans):
        print(describe(span), file=out)
    return spans


# --------------------------------------------------------------------------- the router


async def run_router(out: TextIO = sys.stdout) -> dict[str, Any]:
    """The quality-gated router (examples/quality_router.py) against otel-judge's quality API."""
    import quality_router  # beside this file

    with tempfile.TemporaryDirectory(prefix="otel-judge-router-") as tmp:
        return await quality_router.demo(Path(tmp), out=out)


# --------------------------------------------------------------------------- command line


def judged(spans: Sequence[ReceivedSpan]) -> list[ReceivedSpan]:
    return [s for s in spans if s.attributes.get(semconv.OTEL_JUDGE_EVALUATION_STATUS) == "evaluated"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("example", nargs="?", choices=EXAMPLES)
    parser.add_argument("--list", action="store_true", help="list the examples")
    args = parser.parse_args(argv)
    if args.list or args.example is None:
        for name, example in APPS.items():
            print(f"{name:16} {example.what}")
        print(f"{'router':16} keeps a cheaper model only while the quality API says it is good enough")
        return 0
    try:
        if args.example == "router":
            result = asyncio.run(run_router())
            return 0 if result["transitions"] else 1
        spans = asyncio.run(run_app(args.example))
    except (RuntimeError, TimeoutError) as exc:
        print(f"run.py: {args.example} failed: {exc or 'timed out waiting for judged spans'}", file=sys.stderr)
        return 1
    return 0 if judged(spans) else 1


if __name__ == "__main__":
    sys.exit(main())
