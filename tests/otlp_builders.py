"""Small builders for OTLP requests, and a raw OTLP/gRPC client, for tests."""

from __future__ import annotations

import itertools
from typing import Any

import grpc
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from otel_judge.otlp import py_to_any_value

from .conftest import genai_attributes

_ids = itertools.count(1)


def span(name: str = "work", attributes: dict[str, Any] | None = None, *, trace_id: bytes | None = None) -> Span:
    n = next(_ids)
    out = Span(
        name=name,
        trace_id=trace_id or n.to_bytes(16, "big"),
        span_id=n.to_bytes(8, "big"),
        start_time_unix_nano=1_700_000_000_000_000_000 + n,
        end_time_unix_nano=1_700_000_000_500_000_000 + n,
        kind=Span.SPAN_KIND_CLIENT,
    )
    for key, value in (attributes or {}).items():
        kv = out.attributes.add()
        kv.key = key
        py_to_any_value(value, kv.value)
    return out


def genai_span(answer: str = "ANSWER", **kwargs: Any) -> Span:
    return span("chat gpt-4o-mini", genai_attributes("question?", answer), **kwargs)


def request(*spans: Span, service: str = "app") -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    kv = rs.resource.attributes.add()
    kv.key = "service.name"
    kv.value.string_value = service
    ss = rs.scope_spans.add()
    ss.scope.name = "tests"
    ss.spans.extend(spans)
    return req


class RawClient:
    """A bare OTLP/gRPC client: sends requests (or arbitrary bytes) and surfaces the status code."""

    def __init__(self, port: int) -> None:
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        self._traces = self.channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
        self._logs = self.channel.unary_unary("/opentelemetry.proto.collector.logs.v1.LogsService/Export")

    async def traces(self, payload: ExportTraceServiceRequest | bytes) -> bytes:
        data = payload if isinstance(payload, bytes) else payload.SerializeToString()
        return await self._traces(data, timeout=10)

    async def logs(self, payload: ExportLogsServiceRequest | bytes) -> bytes:
        data = payload if isinstance(payload, bytes) else payload.SerializeToString()
        return await self._logs(data, timeout=10)

    async def close(self) -> None:
        await self.channel.close()
