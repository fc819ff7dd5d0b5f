"""Send one realistic GenAI conversation to otel-judge (or any OTLP/gRPC endpoint) with the OTel SDK.

Two spans, as an instrumented web app calling OpenAI would produce them:

    POST /support/chat          the app's HTTP server span (http.route=/support/chat)
    └── chat gpt-4o-mini        the LLM call, with the current GenAI semantic conventions and
                                content capture on (gen_ai.input.messages / gen_ai.output.messages)

Usage (otel-judge running, e.g. with `make run`):

    python examples/send_conversation.py

The endpoint is OTEL_EXPORTER_OTLP_ENDPOINT, default http://127.0.0.1:4317. Needs opentelemetry-sdk
and opentelemetry-exporter-otlp-proto-grpc (both in requirements-dev.lock).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExportResult
from opentelemetry.trace import SpanKind, set_span_in_context

DEFAULT_ENDPOINT = "http://127.0.0.1:4317"

SYSTEM_INSTRUCTIONS = [
    {
        "type": "text",
        "content": "You are the support assistant of Northwind Outdoor. Answer briefly and accurately; "
        "if you do not know, say so and offer a human agent.",
    }
]

INPUT_MESSAGES = [
    {"role": "user", "parts": [{"type": "text", "content": "Hi, I ordered a tent last week (order 10482)."}]},
    {
        "role": "assistant",
        "parts": [{"type": "text", "content": "Thanks! I can see order 10482: the Ridge 2 tent. How can I help?"}],
    },
    {
        "role": "user",
        "parts": [
            {
                "type": "text",
                "content": "One of the poles arrived cracked. Can I get just a replacement pole instead of "
                "returning the whole tent?",
            }
        ],
    },
]

OUTPUT_MESSAGES = [
    {
        "role": "assistant",
        "parts": [
            {
                "type": "text",
                "content": "Sorry about the cracked pole! Yes: we ship replacement poles free of charge for "
                "damage on arrival, so there is no need to return the tent. I have opened a request for one "
                "Ridge 2 main pole to your delivery address; it usually arrives in 3-5 working days. "
                "Could you reply with a photo of the damage for our records?",
            }
        ],
        "finish_reason": "stop",
    }
]


class DeliveryError(RuntimeError):
    """The SDK could not deliver the spans (nothing listening, or the receiver refused them)."""


class _CheckedExporter(OTLPSpanExporter):
    """The SDK's OTLP/gRPC exporter, remembering whether every export succeeded."""

    failed = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = super().export(spans)
        self.failed = self.failed or result is not SpanExportResult.SUCCESS
        return result


def endpoint_from_env() -> str:
    return os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or DEFAULT_ENDPOINT


def main(endpoint: str | None = None) -> str:
    """Send the conversation to ``endpoint`` (default: from the environment); return its trace id (hex).

    Raises :class:`DeliveryError` when the spans did not get through.
    """
    endpoint = endpoint or endpoint_from_env()
    provider = TracerProvider(
        resource=Resource.create({"service.name": "support-bot", "deployment.environment.name": "dev"})
    )
    # http:// means plaintext, as for any OTLP/gRPC exporter; otel-judge's default listener has no TLS.
    exporter = _CheckedExporter(endpoint=endpoint, insecure=not endpoint.startswith("https://"))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    # A tracer from our own provider rather than the global one, so main() can run more than once.
    tracer = provider.get_tracer("examples.send_conversation", "1.0.0")

    # Explicit timestamps give the LLM call a realistic 1.4 s duration without sleeping.
    start = time.time_ns()
    llm_start, llm_end = start + 12_000_000, start + 1_412_000_000
    root = tracer.start_span(
        "POST /support/chat",
        kind=SpanKind.SERVER,
        start_time=start,
        attributes={
            "http.request.method": "POST",
            "http.route": "/support/chat",
            "url.path": "/support/chat",
            "url.scheme": "https",
        },
    )
    llm = tracer.start_span(
        "chat gpt-4o-mini",
        context=set_span_in_context(root),
        kind=SpanKind.CLIENT,
        start_time=llm_start,
        attributes={
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.request.temperature": 0.2,
            "gen_ai.request.max_tokens": 400,
            "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
            "gen_ai.response.id": "chatcmpl-BQ7x2dHf9kLmN3pR8sT1uV4wY",
            "gen_ai.response.finish_reasons": ["stop"],
            "gen_ai.usage.input_tokens": 131,
            "gen_ai.usage.output_tokens": 74,
            "server.address": "api.openai.com",
            "server.port": 443,
            # Content capture on: the JSON strings the instrumentation writes with
            # OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=SPAN_ONLY.
            "gen_ai.system_instructions": json.dumps(SYSTEM_INSTRUCTIONS),
            "gen_ai.input.messages": json.dumps(INPUT_MESSAGES),
            "gen_ai.output.messages": json.dumps(OUTPUT_MESSAGES),
        },
    )
    llm.end(end_time=llm_end)
    root.set_attribute("http.response.status_code", 200)
    root.end(end_time=llm_end + 3_000_000)
    trace_id = format(root.get_span_context().trace_id, "032x")

    # shutdown() flushes: the spans are sent (or the export has failed) when it returns.
    provider.shutdown()
    if exporter.failed:
        raise DeliveryError(f"could not send the spans to {endpoint} (is otel-judge running? see the SDK's log above)")
    return trace_id


if __name__ == "__main__":
    target = endpoint_from_env()
    try:
        trace = main(target)
    except DeliveryError as exc:
        sys.exit(f"send_conversation: {exc}")
    print(f"sent trace {trace} to {target}", file=sys.stderr)
