"""A small app: the real `openai` client, instrumented by a real library, exporting OTLP/gRPC.

    python -m tests.apps.instrumented_app --lib otelv2|openllmetry|openinference \
        --otlp 127.0.0.1:4317 --llm-base-url http://127.0.0.1:PORT/v1 --answer-tag TAG

Run in its own process: instrumentors patch the openai module globally.
"""

from __future__ import annotations

import argparse
import os


def instrument(lib: str, provider: object) -> None:
    if lib == "otelv2":
        os.environ["OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"] = "SPAN_ONLY"
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

        OpenAIInstrumentor().instrument(tracer_provider=provider)
    elif lib == "openllmetry":
        os.environ["TRACELOOP_TRACE_CONTENT"] = "true"
        os.environ["TRACELOOP_TELEMETRY"] = "false"
        from opentelemetry.instrumentation.openai import OpenAIInstrumentor as TraceloopInstrumentor

        TraceloopInstrumentor().instrument(tracer_provider=provider)
    elif lib == "openinference":
        from openinference.instrumentation.openai import OpenAIInstrumentor as OpenInferenceInstrumentor

        OpenInferenceInstrumentor().instrument(tracer_provider=provider)
    else:
        raise SystemExit(f"unknown library {lib}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lib", required=True)
    parser.add_argument("--otlp", required=True)
    parser.add_argument("--llm-base-url", required=True)
    parser.add_argument("--answer-tag", required=True)
    args = parser.parse_args()

    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": f"app-{args.lib}"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=args.otlp, insecure=True)))
    trace.set_tracer_provider(provider)
    instrument(args.lib, provider)

    import openai

    client = openai.OpenAI(base_url=args.llm_base_url, api_key="sk-app", max_retries=0)
    tracer = provider.get_tracer("app")
    with tracer.start_as_current_span("POST /support/chat", attributes={"http.route": "/support/chat"}):
        reply = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[
                {"role": "system", "content": "You are a helpful support assistant."},
                {"role": "user", "content": f"Which tag do you answer with? {args.answer_tag}"},
            ],
        )
    print(reply.choices[0].message.content)
    provider.force_flush()
    provider.shutdown()


if __name__ == "__main__":
    main()
