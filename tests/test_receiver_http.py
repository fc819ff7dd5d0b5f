"""OTLP/HTTP receiver: protobuf and JSON bodies, gzip, and the status codes the OTLP/HTTP spec prescribes.

A real aiohttp client talks to the real receiver of an in-process pipeline (judging off: a pure
pass-through) that exports to a real OTLP/gRPC sink.
"""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import grpc
import pytest
from google.protobuf import json_format
from google.rpc import status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from otel_judge.component import Settings
from otel_judge.otlp import encode_otlp_json
from otel_judge.testing import SpanSink

from .conftest import pipeline_config, running
from .otlp_builders import request, span

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
LIMIT = 64 * 1024


def http_receivers(**http: Any) -> dict[str, Any]:
    """The ``receivers`` section: gRPC and HTTP on ephemeral ports."""
    return {"otlp": {"protocols": {"grpc": {"endpoint": "127.0.0.1:0"}, "http": {"endpoint": "127.0.0.1:0", **http}}}}


def logs_request(body: str) -> ExportLogsServiceRequest:
    req = ExportLogsServiceRequest()
    record = req.resource_logs.add().scope_logs.add().log_records.add()
    record.body.string_value = body
    record.trace_id = bytes(range(16))
    record.span_id = bytes(range(8))
    return req


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    content_type: str = field(default="")

    def status_message(self) -> status_pb2.Status:
        """The ``google.rpc.Status`` body, decoded per the response's content type."""
        if self.content_type == JSON:
            return json_format.Parse(self.body, status_pb2.Status())
        return status_pb2.Status.FromString(self.body)


class HttpClient:
    """A bare OTLP/HTTP client over aiohttp (the SDK's HTTP exporter is not a dependency)."""

    def __init__(self, port: int, session: aiohttp.ClientSession) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.session = session

    async def post(
        self, path: str, body: Any, content_type: str = PROTOBUF, headers: dict[str, str] | None = None
    ) -> Answer:
        all_headers = {"Content-Type": content_type, **(headers or {})}
        async with self.session.post(self.base + path, data=body, headers=all_headers) as resp:
            data = await resp.read()
            return Answer(resp.status, dict(resp.headers), data, resp.content_type)

    async def get(self, path: str) -> Answer:
        async with self.session.get(self.base + path) as resp:
            return Answer(resp.status, dict(resp.headers), await resp.read(), resp.content_type)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(auto_decompress=False) as s:
        yield s


async def test_protobuf_export_reaches_the_sink_and_gets_an_empty_response(
    sink: SpanSink, session: aiohttp.ClientSession
) -> None:
    """POST /v1/traces with a protobuf body: 200, an ExportTraceServiceResponse, the span forwarded as sent."""
    sent = request(span("checkout"))
    async with running(pipeline_config(sink, None, receivers=http_receivers())) as pipeline:
        answer = await HttpClient(pipeline.http_port, session).post("/v1/traces", sent.SerializeToString())
        received = await sink.wait_for_spans(1)

    assert answer.status == 200
    assert answer.content_type == PROTOBUF
    assert ExportTraceServiceResponse.FromString(answer.body) == ExportTraceServiceResponse()
    assert [r.span for r in received] == list(sent.resource_spans[0].scope_spans[0].spans)


async def test_json_with_hex_ids_delivers_the_same_spans_as_protobuf(
    sink: SpanSink, session: aiohttp.ClientSession
) -> None:
    """The same request as OTLP/JSON (hex ids) and as protobuf: the sink receives identical spans twice."""
    sent = request(span("a"), span("b"), service="json-app")
    as_json = encode_otlp_json(sent)
    assert f'"traceId":"{sent.resource_spans[0].scope_spans[0].spans[0].trace_id.hex()}"' in as_json
    async with running(pipeline_config(sink, None, receivers=http_receivers())) as pipeline:
        client = HttpClient(pipeline.http_port, session)
        json_answer = await client.post("/v1/traces", as_json, JSON)
        await sink.wait_for_spans(2)
        proto_answer = await client.post("/v1/traces", sent.SerializeToString(), PROTOBUF)
        await sink.wait_for_spans(4)

    assert (json_answer.status, json_answer.content_type) == (200, JSON)
    assert json_answer.body.strip() == b"{}"
    assert proto_answer.status == 200
    assert sink.trace_requests[0] == sink.trace_requests[1] == sent


@pytest.mark.parametrize("content_type", [PROTOBUF, JSON], ids=["protobuf", "json"])
async def test_gzip_bodies_are_inflated(sink: SpanSink, session: aiohttp.ClientSession, content_type: str) -> None:
    """Content-Encoding: gzip, for both encodings (two gzip members concatenated, as RFC 1952 allows)."""
    sent = request(span("zipped"))
    raw = sent.SerializeToString() if content_type == PROTOBUF else encode_otlp_json(sent).encode()
    body = gzip.compress(raw[:10]) + gzip.compress(raw[10:])
    async with running(pipeline_config(sink, None, receivers=http_receivers())) as pipeline:
        answer = await HttpClient(pipeline.http_port, session).post(
            "/v1/traces", body, content_type, {"Content-Encoding": "gzip"}
        )
        await sink.wait_for_spans(1)

    assert answer.status == 200
    assert sink.trace_requests == [sent]


@pytest.mark.parametrize("content_type", [PROTOBUF, JSON], ids=["protobuf", "json"])
async def test_logs_are_accepted_in_both_encodings(
    sink: SpanSink, session: aiohttp.ClientSession, content_type: str
) -> None:
    """POST /v1/logs: the log records reach the sink unchanged."""
    sent = logs_request("hello")
    body = sent.SerializeToString() if content_type == PROTOBUF else encode_otlp_json(sent)
    async with running(pipeline_config(sink, None, receivers=http_receivers())) as pipeline:
        answer = await HttpClient(pipeline.http_port, session).post("/v1/logs", body, content_type)
        await sink.wait_for(lambda: bool(sink.log_requests))

    assert answer.status == 200
    assert sink.log_requests == [sent]


async def _chunked(data: bytes) -> AsyncIterator[bytes]:
    """A body without Content-Length (chunked transfer), so only the streaming cap can stop it."""
    for start in range(0, len(data), 8192):
        yield data[start : start + 8192]


def _bomb() -> bytes:
    body = gzip.compress(b"\0" * (10 * 1024 * 1024), 9)
    assert len(body) < LIMIT, "the bomb itself is small; only inflating it is too large"
    return body


GZIP = {"Content-Encoding": "gzip"}


@dataclass(frozen=True)
class Refusal:
    """One bad request and the answer the OTLP/HTTP spec prescribes for it."""

    id: str
    status: int
    code: int | None  # gRPC code in the google.rpc.Status body; None: no Status body is prescribed
    body: Callable[[], Any] = lambda: b""
    content_type: str = PROTOBUF
    headers: dict[str, str] = field(default_factory=dict)
    method: str = "POST"
    path: str = "/v1/traces"
    says: str = ""  # expected in the Status message


REFUSALS = [
    Refusal("garbage-protobuf", 400, 3, lambda: b"\xff\xff\xff\xff"),
    Refusal("garbage-json", 400, 3, lambda: b'{"resourceSpans": 12', JSON),
    Refusal("json-of-wrong-shape", 400, 3, lambda: b'{"resourceSpans": {"x": 1}}', JSON),
    Refusal("garbage-gzip", 400, 3, lambda: b"not gzip at all", headers=GZIP, says="not valid gzip"),
    Refusal("truncated-gzip", 400, 3, lambda: gzip.compress(b"x" * 100)[:-8], headers=GZIP),
    Refusal("too-large", 413, 8, lambda: b"\0" * (LIMIT + 1)),
    Refusal("too-large-chunked", 413, 8, lambda: _chunked(b"\0" * (LIMIT * 2))),
    Refusal("gzip-bomb", 413, 8, _bomb, headers=GZIP, says="gzip body inflates past max_request_body_size"),
    Refusal("unsupported-type", 415, 3, lambda: b"hello", "text/plain"),
    Refusal("unsupported-encoding", 415, 3, lambda: b"x", headers={"Content-Encoding": "br"}),
    Refusal("wrong-path", 404, None, path="/v1/metricz"),
    Refusal("wrong-method", 405, None, method="GET"),
]


async def test_bad_requests_get_the_spec_status_and_nothing_reaches_the_sink(
    sink: SpanSink, session: aiohttp.ClientSession
) -> None:
    """Every malformed, oversized, unsupported or misrouted request gets its status (and a google.rpc.Status
    body where the spec asks for one); none is forwarded; the server keeps serving."""
    settings = Settings()
    config = pipeline_config(sink, None, receivers=http_receivers(max_request_body_size=LIMIT))
    answers: dict[str, Answer] = {}
    async with running(config, settings) as pipeline:
        client = HttpClient(pipeline.http_port, session)
        for case in REFUSALS:
            if case.method == "GET":
                answers[case.id] = await client.get(case.path)
            else:
                answers[case.id] = await client.post(case.path, case.body(), case.content_type, case.headers)
        good = await client.post("/v1/traces", request(span("after")).SerializeToString())
        received = await sink.wait_for_spans(1)

    for case in REFUSALS:
        answer = answers[case.id]
        assert answer.status == case.status, (case.id, answer)
        if case.code is not None:
            assert answer.status_message().code == case.code, case.id
            assert answer.status_message().message, case.id
            assert case.says in answer.status_message().message, case.id
            assert answer.content_type == (JSON if case.content_type == JSON else PROTOBUF), case.id
    assert good.status == 200
    assert [r.span.name for r in received] == ["after"], "nothing refused may reach the sink"
    telemetry = settings.telemetry
    series = {"signal": "traces", "transport": "http"}
    assert telemetry.value("otel_judge.receiver.requests", outcome="malformed", **series) == 5
    assert telemetry.value("otel_judge.receiver.requests", outcome="too_large", **series) == 3
    assert telemetry.value("otel_judge.receiver.requests", outcome="unsupported_media_type", **series) == 2
    assert telemetry.value("otel_judge.receiver.requests", outcome="accepted", **series) == 1


async def test_full_export_queue_answers_429_with_retry_after(sink: SpanSink, session: aiohttp.ClientSession) -> None:
    """Backend down and the exporter queue full: 429 + Retry-After and a RESOURCE_EXHAUSTED Status body;
    everything that got 200 arrives once the backend is back."""
    sink.fail_next(10_000, grpc.StatusCode.UNAVAILABLE, retry_after=0.02)
    config = pipeline_config(
        sink,
        None,
        receivers=http_receivers(),
        exporters={
            "otlp": {
                "endpoint": sink.endpoint,
                "tls": {"insecure": True},
                "sending_queue": {"queue_size": 1, "num_consumers": 1},
            }
        },
    )
    accepted: list[str] = []
    refused: list[Answer] = []
    async with running(config) as pipeline:
        client = HttpClient(pipeline.http_port, session)
        for i in range(4):
            answer = await client.post("/v1/traces", request(span(f"s{i}")).SerializeToString())
            if answer.status == 200:
                accepted.append(f"s{i}")
            else:
                refused.append(answer)
        sink.stop_failing()
        received = await sink.wait_for_spans(len(accepted))

    assert refused, "a full queue must push back"
    for answer in refused:
        assert answer.status == 429
        assert answer.headers["Retry-After"] == "1"
        assert answer.status_message().code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert sorted(r.span.name for r in received) == accepted


async def test_custom_paths_and_http_only(sink: SpanSink, session: aiohttp.ClientSession) -> None:
    """traces_url_path is honoured, the default path is then 404, and gRPC may be off entirely."""
    receivers = {
        "otlp": {"protocols": {"grpc": None, "http": {"endpoint": "127.0.0.1:0", "traces_url_path": "/otlp/t"}}}
    }
    async with running(pipeline_config(sink, None, receivers=receivers)) as pipeline:
        client = HttpClient(pipeline.http_port, session)
        moved = await client.post("/v1/traces", request(span("x")).SerializeToString())
        answer = await client.post("/otlp/t", request(span("y")).SerializeToString())
        received = await sink.wait_for_spans(1)
        assert pipeline.grpc_port is None
        assert "OTLP/HTTP on 127.0.0.1:0" in pipeline.describe()

    assert (moved.status, answer.status) == (404, 200)
    assert [r.span.name for r in received] == ["y"]
