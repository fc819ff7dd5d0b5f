"""The small app the instrumentation examples share: a support bot answering one customer question.

It uses the real ``openai`` client (``OPENAI_API_KEY``, ``OPENAI_BASE_URL`` from the environment)
and the OpenTelemetry SDK exporting OTLP/gRPC to ``OTEL_EXPORTER_OTLP_ENDPOINT`` (default
``http://127.0.0.1:4317``: otel-judge's default listener). Each ``*_app.py`` beside this file adds
one instrumentation library; the ``instrument`` callback it passes is the only line that differs.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind

DEFAULT_ENDPOINT = "http://127.0.0.1:4317"
SYSTEM_PROMPT = (
    "You are the support assistant of Northwind Outdoor. Answer briefly and accurately; "
    "if you do not know, say so and offer a human agent."
)
DEFAULT_QUESTION = "One pole of my Ridge 2 tent arrived cracked. Can I get just a replacement pole?"


def tracer_provider(service: str) -> TracerProvider:
    """An SDK tracer provider exporting OTLP/gRPC to otel-judge (or a Collector in front of it)."""
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or DEFAULT_ENDPOINT
    # Resource.create also reads OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME.
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    exporter = OTLPSpanExporter(endpoint=endpoint, insecure=endpoint.startswith("http://"))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def ask(provider: TracerProvider, question: str, model: str, route: str = "/support/chat") -> str:
    """Answer ``question`` with ``model`` inside a server span for ``route``; the instrumentation
    library (already installed on ``provider``) records the model call as a child span."""
    import openai  # after instrumenting: some instrumentations patch the module on import

    client = openai.OpenAI(max_retries=0)
    tracer = provider.get_tracer("examples.support_bot", "1.0.0")
    with tracer.start_as_current_span(f"POST {route}", kind=SpanKind.SERVER, attributes={"http.route": route}):
        reply = client.chat.completions.create(
            model=model,
            messages=[{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": question}],
            temperature=0.2,
        )
    return reply.choices[0].message.content or ""


def main(service: str, instrument: Callable[[TracerProvider], None], argv: Sequence[str] | None = None) -> int:
    """The command line of every ``*_app.py``: ask one question, print the answer, flush the spans."""
    parser = argparse.ArgumentParser(description=f"{service}: one instrumented chat completion")
    parser.add_argument("question", nargs="?", default=DEFAULT_QUESTION)
    parser.add_argument("--model", default=os.environ.get("SUPPORT_BOT_MODEL", "gpt-4o-mini"))
    args = parser.parse_args(argv)
    provider = tracer_provider(service)
    instrument(provider)
    try:
        print(ask(provider, args.question, args.model))
    finally:
        provider.shutdown()  # flushes: the spans are sent when this returns
    return 0
