"""Realistic OTLP trace requests, serialised once and patched per send.

A request holds ``batch // 4`` traces of four spans each: an HTTP server span, two internal spans
and one GenAI ``chat`` client span (the GenAI share is 25%). Attributes follow the HTTP and GenAI
semantic conventions; the GenAI span carries ``gen_ai.input.messages`` / ``gen_ai.output.messages``
as JSON strings.

Sending must be cheap, so requests are not rebuilt per send. The serialised template is copied and
patched in place: ``trace_id`` is a fixed 16-byte field and ``start_time_unix_nano`` /
``end_time_unix_nano`` are ``fixed64``, so their byte offsets are stable. Each send gets fresh
random trace ids (judgments are never deduplicated, probabilistic sampling sees new traces) and
``end_time_unix_nano`` = the send time, which the sink subtracts from the arrival time.

Only GenAI spans have kind CLIENT (:data:`GENAI_KIND`), so the sink tells the two apart without
walking attributes.
"""

from __future__ import annotations

import json
import random
import re
import struct
from dataclasses import dataclass

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ScopeSpans, Span

from otel_judge import semconv
from otel_judge.otlp import py_to_any_value

__all__ = ["GENAI_KIND", "SPANS_PER_TRACE", "TRACE_EXPORT_METHOD", "Template", "build_templates"]

TRACE_EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
SPANS_PER_TRACE = 4
GENAI_KIND = Span.SPAN_KIND_CLIENT

_U64 = struct.Struct("<Q")
_START_SENTINEL = 0x5EED_0000_0000_0000
_END_SENTINEL = 0x5EED_8000_0000_0000

_QUESTIONS = (
    "How do I rotate the API keys for our staging environment without downtime? We use two "
    "replicas behind a load balancer and the keys are read at start-up.",
    "Summarise the attached incident report in three bullet points for the weekly status email, "
    "and say which team owns each follow-up action.",
    "Write a SQL query that returns the ten customers with the highest total order value in the "
    "last 90 days, excluding cancelled orders.",
    "What is the difference between a liveness probe and a readiness probe in Kubernetes, and "
    "which one should restart the pod when the database is unreachable?",
    "Translate the following release note into French, keeping product names in English: "
    "'Exports now retry with exponential backoff and honour server hints.'",
)
_ANSWERS = (
    "Create the new key first and add it to the secret store next to the old one. Roll the "
    "replicas one at a time so each restarts with both keys accepted; the load balancer keeps "
    "serving from the other replica while one restarts. Once both run with the new key, revoke "
    "the old key and remove it from the secret store. Verify with a request signed by each key.",
    "- The outage lasted 42 minutes and was caused by an expired TLS certificate on the internal "
    "gateway (owner: platform team).\n- Alerting fired but paged the wrong rotation; the on-call "
    "mapping is being fixed (owner: SRE).\n- Certificate expiry is now monitored 30 days ahead "
    "(owner: security).",
    "SELECT c.id, c.name, SUM(o.total) AS value\nFROM customers c JOIN orders o ON o.customer_id "
    "= c.id\nWHERE o.created_at >= now() - interval '90 days' AND o.status <> 'cancelled'\nGROUP "
    "BY c.id, c.name\nORDER BY value DESC\nLIMIT 10;",
    "A liveness probe tells Kubernetes whether to restart the container; a readiness probe tells "
    "it whether to send traffic. An unreachable database is usually not fixed by a restart, so it "
    "should fail readiness (stop traffic) but not liveness; otherwise every pod restarts in a loop "
    "while the database is down.",
    "Les exports réessaient désormais avec un backoff exponentiel et respectent les indications du serveur.",
)
_SYSTEM = "You are a helpful assistant for the engineering team. Answer precisely and briefly."
_ROUTES = ("/api/chat", "/api/summarise", "/api/sql", "/api/ask", "/api/translate")


def _attrs(span: Span, values: dict[str, object]) -> None:
    for key, value in values.items():
        kv: KeyValue = span.attributes.add()
        kv.key = key
        py_to_any_value(value, kv.value)


def _messages(rng: random.Random) -> tuple[str, str, int]:
    i = rng.randrange(len(_QUESTIONS))
    inputs = [
        {"role": "system", "parts": [{"type": "text", "content": _SYSTEM}]},
        {"role": "user", "parts": [{"type": "text", "content": _QUESTIONS[i]}]},
    ]
    outputs = [{"role": "assistant", "parts": [{"type": "text", "content": _ANSWERS[i]}], "finish_reason": "stop"}]
    dumps = json.dumps
    return dumps(inputs, ensure_ascii=False), dumps(outputs, ensure_ascii=False), i


@dataclass(frozen=True, slots=True)
class Template:
    """One serialised request and where to patch it."""

    raw: bytes
    span_count: int
    genai_count: int
    trace_id_offsets: tuple[tuple[int, ...], ...]  # per trace: the offsets of its trace id copies
    start_offsets: tuple[int, ...]
    end_offsets: tuple[int, ...]
    durations_ns: tuple[int, ...]

    def with_trace_ids(self, prefixes: bytes) -> bytearray:
        """A copy whose trace ids start with ``prefixes[8 * t : 8 * t + 8]`` for trace ``t``."""
        buf = bytearray(self.raw)
        for t, offsets in enumerate(self.trace_id_offsets):
            prefix = prefixes[8 * t : 8 * t + 8]
            for offset in offsets:
                buf[offset : offset + 8] = prefix
        return buf

    def set_times(self, buf: bytearray, sent_ns: int) -> bytes:
        """Every span ends at ``sent_ns`` (the sink measures delay from it)."""
        pack = _U64.pack_into
        for offset in self.end_offsets:
            pack(buf, offset, sent_ns)
        for offset, duration in zip(self.start_offsets, self.durations_ns, strict=True):
            pack(buf, offset, sent_ns - duration)
        return bytes(buf)

    @property
    def trace_count(self) -> int:
        return len(self.trace_id_offsets)


def _build_one(rng: random.Random, batch: int, service: int) -> Template:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    for key, value in {
        semconv.SERVICE_NAME: f"checkout-assistant-{service}",
        "service.version": "2.14.1",
        "deployment.environment.name": "production",
        "host.name": f"ip-10-0-{service}-17.ec2.internal",
        "process.pid": 4242 + service,
        "telemetry.sdk.name": "opentelemetry",
        "telemetry.sdk.language": "python",
        "telemetry.sdk.version": "1.38.0",
    }.items():
        kv = rs.resource.attributes.add()
        kv.key = key
        py_to_any_value(value, kv.value)
    http_scope = rs.scope_spans.add()
    http_scope.scope.name, http_scope.scope.version = "opentelemetry.instrumentation.fastapi", "0.59b0"
    app_scope = rs.scope_spans.add()
    app_scope.scope.name, app_scope.scope.version = "checkout_assistant", "2.14.1"
    genai_scope = rs.scope_spans.add()
    genai_scope.scope.name, genai_scope.scope.version = "opentelemetry.instrumentation.openai_v2", "2.2b0"

    trace_ids: list[bytes] = []
    durations: list[int] = []

    def new_span(
        container: ScopeSpans, trace_id: bytes, parent: bytes, name: str, kind: Span.SpanKind.ValueType
    ) -> Span:
        span: Span = container.spans.add()
        index = len(durations)
        span.trace_id, span.span_id, span.parent_span_id = trace_id, rng.randbytes(8), parent
        span.name, span.kind = name, kind
        span.start_time_unix_nano = _START_SENTINEL + index
        span.end_time_unix_nano = _END_SENTINEL + index
        durations.append(rng.randrange(1_000_000, 900_000_000))
        return span

    for _ in range(batch // SPANS_PER_TRACE):
        trace_id = rng.randbytes(16)
        trace_ids.append(trace_id)
        route = rng.choice(_ROUTES)
        server = new_span(http_scope, trace_id, b"", f"POST {route}", Span.SPAN_KIND_SERVER)
        _attrs(
            server,
            {
                "http.request.method": "POST",
                "http.route": route,
                "url.path": route,
                "url.scheme": "https",
                "http.response.status_code": 200,
                "server.address": "assistant.example.internal",
                "server.port": 443,
                "network.protocol.version": "1.1",
                "client.address": f"10.1.{rng.randrange(256)}.{rng.randrange(256)}",
                "user_agent.original": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/131.0",
            },
        )
        retrieve = new_span(app_scope, trace_id, server.span_id, "retrieve_context", Span.SPAN_KIND_INTERNAL)
        _attrs(
            retrieve,
            {
                "code.function.name": "retrieve_context",
                "code.file.path": "/app/checkout_assistant/rag.py",
                "code.line.number": 118,
                "app.retrieval.index": "docs-v7",
                "app.retrieval.top_k": 8,
                "app.retrieval.documents": rng.randrange(1, 9),
                "app.retrieval.cache_hit": rng.random() < 0.3,
                "app.tenant.id": f"tenant-{rng.randrange(1000):04d}",
                "app.user.id": f"user-{rng.randrange(100_000):06d}",
                "app.request.id": rng.randbytes(8).hex(),
            },
        )
        render = new_span(app_scope, trace_id, server.span_id, "render_prompt", Span.SPAN_KIND_INTERNAL)
        _attrs(
            render,
            {
                "code.function.name": "render_prompt",
                "code.file.path": "/app/checkout_assistant/prompts.py",
                "code.line.number": 54,
                "app.prompt.template": "support-answer",
                "app.prompt.version": 12,
                "app.prompt.chars": rng.randrange(400, 4000),
                "app.prompt.truncated": False,
                "app.tenant.id": f"tenant-{rng.randrange(1000):04d}",
                "app.locale": rng.choice(("en-GB", "fr-FR", "de-DE")),
                "app.feature_flags": "rag,stream,guardrails",
            },
        )
        inputs, outputs, which = _messages(rng)
        chat = new_span(genai_scope, trace_id, retrieve.span_id, "chat gpt-4o-mini", GENAI_KIND)
        _attrs(
            chat,
            {
                semconv.GEN_AI_OPERATION_NAME: "chat",
                semconv.GEN_AI_PROVIDER_NAME: "openai",
                semconv.GEN_AI_REQUEST_MODEL: "gpt-4o-mini",
                "gen_ai.request.temperature": 0.2,
                "gen_ai.request.max_tokens": 800,
                semconv.GEN_AI_RESPONSE_MODEL: "gpt-4o-mini-2024-07-18",
                semconv.GEN_AI_RESPONSE_ID: f"chatcmpl-{rng.randbytes(12).hex()}",
                semconv.GEN_AI_RESPONSE_FINISH_REASONS: ["stop"],
                semconv.GEN_AI_USAGE_INPUT_TOKENS: 40 + 3 * which + rng.randrange(200),
                semconv.GEN_AI_USAGE_OUTPUT_TOKENS: 60 + rng.randrange(300),
                "server.address": "api.openai.com",
                semconv.GEN_AI_INPUT_MESSAGES: inputs,
                semconv.GEN_AI_OUTPUT_MESSAGES: outputs,
            },
        )

    raw = request.SerializeToString()
    span_count = len(durations)
    starts, ends = _sentinel_offsets(raw, span_count)
    by_trace: dict[bytes, list[int]] = {tid: [] for tid in trace_ids}
    for match in _TRACE_ID_FIELD.finditer(raw):
        offsets = by_trace.get(match.group(1))
        if offsets is not None:
            offsets.append(match.start(1))
    if any(len(offsets) != SPANS_PER_TRACE for offsets in by_trace.values()):
        raise ValueError("a trace id also occurs by chance elsewhere in the template: use another seed")
    trace_offsets = tuple(tuple(by_trace[tid]) for tid in trace_ids)
    return Template(raw, span_count, span_count // SPANS_PER_TRACE, trace_offsets, starts, ends, tuple(durations))


# Span.trace_id is field 1 (tag 0x0a, length 16); the timestamps are fixed64, so a sentinel is
# found by its last six bytes (little-endian: the span index sits in the first two).
_TRACE_ID_FIELD = re.compile(rb"\x0a\x10(.{16})", re.DOTALL)
_SENTINEL = re.compile(rb"(.{2})\x00\x00\x00([\x00\x80])\xed\x5e", re.DOTALL)


def _sentinel_offsets(raw: bytes, span_count: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    starts: dict[int, int] = {}
    ends: dict[int, int] = {}
    for match in _SENTINEL.finditer(raw):
        index = int.from_bytes(match.group(1), "little")
        (ends if match.group(2) == b"\x80" else starts)[index] = match.start()
    if sorted(starts) != list(range(span_count)) or sorted(ends) != list(range(span_count)):
        raise ValueError("span timestamps not found where expected in the template")
    return tuple(starts[i] for i in range(span_count)), tuple(ends[i] for i in range(span_count))


def build_templates(batch: int, count: int, seed: int) -> list[Template]:
    """``count`` distinct requests of ``batch`` spans (``batch`` a multiple of 4), from ``seed``."""
    if batch <= 0 or batch % SPANS_PER_TRACE:
        raise ValueError(f"batch must be a positive multiple of {SPANS_PER_TRACE}")
    rng = random.Random(seed)
    return [_build_one(rng, batch, service=i % 8) for i in range(count)]
