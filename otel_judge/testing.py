"""Fakes for tests, shipped so users can test their own configs (like the Collector's consumertest).

* :class:`SpanSink`: a real OTLP/gRPC server on 127.0.0.1 (traces, logs and metrics services) that
  records every request it receives, and can be told to fail the next calls (to exercise retries).
* :class:`HttpSpanSink`: the same over OTLP/HTTP (``/v1/traces``, ``/v1/logs``, ``/v1/metrics``;
  protobuf, gzip too), failing with HTTP statuses and ``Retry-After``, refusing bodies over a size
  with 413, and recording request headers.
* :class:`FakeJudge`: a real HTTP server on 127.0.0.1 speaking the OpenAI chat-completions API,
  whose answer is scripted per request (a function of the prompt it received), so the real litellm
  code path runs against it.

Both are async context managers; waiting is event-based (``wait_for_spans``), never sleeping.
"""

from __future__ import annotations

import asyncio
import gzip
import inspect
import re
import ssl
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Self

import grpc
from aiohttp import web
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from otel_judge.otlp import attributes_to_dict, iter_log_records, iter_spans

__all__ = ["FakeJudge", "HttpAttempt", "HttpSpanSink", "JudgeAnswer", "JudgeRequest", "ReceivedSpan", "SpanSink"]


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as the sink received it, with its resource and scope."""

    resource: Any
    scope: Any
    span: Any

    @property
    def attributes(self) -> dict[str, Any]:
        return attributes_to_dict(self.span.attributes)

    @property
    def key(self) -> tuple[str, str]:
        return self.span.trace_id.hex(), self.span.span_id.hex()


class _Recorder:
    """What both sinks record, and the event-based waits on it."""

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def __init__(self) -> None:
        self.trace_requests: list[ExportTraceServiceRequest] = []
        self.log_requests: list[ExportLogsServiceRequest] = []
        self.metric_requests: list[ExportMetricsServiceRequest] = []
        self._changed: asyncio.Condition | None = None

    async def _notify(self) -> None:
        assert self._changed is not None
        async with self._changed:
            self._changed.notify_all()

    def spans(self) -> list[ReceivedSpan]:
        return [
            ReceivedSpan(rs.resource, ss.scope, span)
            for req in self.trace_requests
            for rs, ss, span in iter_spans(req.resource_spans)
        ]

    def log_records(self) -> list[Any]:
        return [rec for req in self.log_requests for _, _, rec in iter_log_records(req.resource_logs)]

    def metrics(self, name: str | None = None) -> list[Any]:
        """Every ``Metric`` received (of ``name`` only, when given), oldest request first."""
        return [
            metric
            for req in self.metric_requests
            for rm in req.resource_metrics
            for sm in rm.scope_metrics
            for metric in sm.metrics
            if name is None or metric.name == name
        ]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 15.0) -> None:
        """Wait until ``predicate()`` holds after a received request; TimeoutError otherwise."""
        assert self._changed is not None
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(predicate), timeout)

    async def wait_for_spans(self, count: int, timeout: float = 15.0) -> list[ReceivedSpan]:
        await self.wait_for(lambda: len(self.spans()) >= count, timeout)
        return self.spans()


class SpanSink(_Recorder):
    """An OTLP/gRPC server (traces, logs and metrics) that records what reaches it."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, max_receive_bytes: int = 4 * 1024 * 1024) -> None:
        super().__init__()
        self._address = f"{host}:{port}"
        self._max_receive = max_receive_bytes
        self._server: grpc.aio.Server | None = None
        self.port: int | None = None
        self.metadata: list[dict[str, str]] = []
        self._failures: list[tuple[grpc.StatusCode, float | None]] = []

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._changed = asyncio.Condition()
        server = grpc.aio.server(
            options=[("grpc.so_reuseport", 0), ("grpc.max_receive_message_length", self._max_receive)]
        )
        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    "opentelemetry.proto.collector.trace.v1.TraceService",
                    {"Export": grpc.unary_unary_rpc_method_handler(self._traces)},
                ),
                grpc.method_handlers_generic_handler(
                    "opentelemetry.proto.collector.logs.v1.LogsService",
                    {"Export": grpc.unary_unary_rpc_method_handler(self._logs)},
                ),
                grpc.method_handlers_generic_handler(
                    "opentelemetry.proto.collector.metrics.v1.MetricsService",
                    {"Export": grpc.unary_unary_rpc_method_handler(self._metrics)},
                ),
            )
        )
        self.port = server.add_insecure_port(self._address)
        await server.start()
        self._server = server

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(None)
            self._server = None

    def fail_next(
        self, times: int, code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE, retry_after: float | None = None
    ) -> None:
        """Answer the next ``times`` Export calls with ``code`` (and a RetryInfo hint if given)."""
        self._failures.extend([(code, retry_after)] * times)

    def stop_failing(self) -> None:
        """Forget the failures still scripted by :meth:`fail_next`."""
        self._failures.clear()

    async def _maybe_fail(self, context: grpc.aio.ServicerContext) -> None:
        if not self._failures:
            return
        code, retry_after = self._failures.pop(0)
        if retry_after is not None:
            status = status_pb2.Status(code=code.value[0], message="sink told to fail")
            delay = duration_pb2.Duration(seconds=int(retry_after), nanos=int((retry_after % 1) * 1e9))
            status.details.add().Pack(error_details_pb2.RetryInfo(retry_delay=delay))
            context.set_trailing_metadata((("grpc-status-details-bin", status.SerializeToString()),))
        await context.abort(code, "sink told to fail")

    async def _traces(self, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        await self._maybe_fail(context)
        self.trace_requests.append(ExportTraceServiceRequest.FromString(raw))
        self.metadata.append({k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)})
        await self._notify()
        return bytes(ExportTraceServiceResponse().SerializeToString())

    async def _logs(self, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        await self._maybe_fail(context)
        self.log_requests.append(ExportLogsServiceRequest.FromString(raw))
        await self._notify()
        return bytes(ExportLogsServiceResponse().SerializeToString())

    async def _metrics(self, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        await self._maybe_fail(context)
        self.metric_requests.append(ExportMetricsServiceRequest.FromString(raw))
        await self._notify()
        return bytes(ExportMetricsServiceResponse().SerializeToString())


@dataclass(frozen=True)
class HttpAttempt:
    """One request that reached :class:`HttpSpanSink`: path, headers, arrival time and the status sent."""

    path: str
    headers: dict[str, str]
    at: float  # time.monotonic() on arrival
    status: int


class HttpSpanSink(_Recorder):
    """An OTLP/HTTP server (``POST /v1/traces``, ``POST /v1/logs``; protobuf, identity or gzip) that
    records what reaches it, with the same reading API as :class:`SpanSink`.

    ``attempts`` lists every request (failed ones too); ``headers`` the headers of each accepted
    export. A decoded body larger than ``max_body_bytes`` is answered 413; :meth:`fail_next`
    scripts failures, :meth:`disconnect_next` dropped connections, :meth:`reject_next` a
    ``partial_success``. With ``ssl_context`` it serves HTTPS.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        max_body_bytes: int | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__()
        self._host, self._port = host, port
        self._max_body = max_body_bytes
        self._ssl = ssl_context
        self._runner: web.AppRunner | None = None
        self.port: int | None = None
        self.headers: list[dict[str, str]] = []
        self.attempts: list[HttpAttempt] = []
        self._failures: list[tuple[int, float | str | None]] = []  # status 0: drop the connection
        self._rejections: list[tuple[int, str]] = []

    @property
    def endpoint(self) -> str:
        """The base URL (``exporters.otlphttp.endpoint``)."""
        return f"{'https' if self._ssl else 'http'}://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._changed = asyncio.Condition()
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_post("/v1/traces", self._traces)
        app.router.add_post("/v1/logs", self._logs)
        app.router.add_post("/v1/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None, auto_decompress=False)  # gzip is checked here
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host, self._port, ssl_context=self._ssl).start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def fail_next(self, times: int, status: int = 503, retry_after: float | str | None = None) -> None:
        """Answer the next ``times`` requests with ``status`` (and ``Retry-After``: seconds or an HTTP date)."""
        self._failures.extend([(status, retry_after)] * times)

    def disconnect_next(self, times: int) -> None:
        """Close the connection of the next ``times`` requests without answering (recorded as status 0)."""
        self._failures.extend([(0, None)] * times)

    def stop_failing(self) -> None:
        """Forget the failures still scripted by :meth:`fail_next` and :meth:`disconnect_next`."""
        self._failures.clear()

    def reject_next(self, rejected: int, message: str = "sink rejected some") -> None:
        """Accept the next request but answer 200 with a ``partial_success`` of ``rejected`` items."""
        self._rejections.append((rejected, message))

    async def _traces(self, request: web.Request) -> web.Response:
        return await self._handle(request, "traces")

    async def _logs(self, request: web.Request) -> web.Response:
        return await self._handle(request, "logs")

    async def _metrics(self, request: web.Request) -> web.Response:
        return await self._handle(request, "metrics")

    async def _handle(self, request: web.Request, signal: str) -> web.Response:
        headers = {k.lower(): v for k, v in request.headers.items()}
        raw = await request.read()
        status, reply, extra = self._answer(headers, raw, signal)
        self.attempts.append(HttpAttempt(request.path, headers, time.monotonic(), status))
        if status == 200:
            self.headers.append(headers)
        await self._notify()
        if status == 0 and request.transport is not None:
            request.transport.close()  # the reply below is then never written: the client sees a disconnect
        return web.Response(status=status or 503, body=reply, content_type="application/x-protobuf", headers=extra)

    def _answer(self, headers: dict[str, str], raw: bytes, signal: str) -> tuple[int, bytes, dict[str, str]]:
        """``(status, body, headers)`` for one request; records it when accepted."""
        if self._failures:
            status, retry_after = self._failures.pop(0)
            extra: dict[str, str] = {}
            if retry_after is not None:
                extra["Retry-After"] = retry_after if isinstance(retry_after, str) else f"{retry_after:g}"
            return status, _status(14 if status in (502, 503, 504) else 8, "sink told to fail"), extra
        if headers.get("content-type", "").split(";")[0].strip() != "application/x-protobuf":
            return 415, _status(3, f"unsupported Content-Type {headers.get('content-type')!r}"), {}
        encoding = headers.get("content-encoding", "identity").lower()
        if encoding == "gzip":
            try:
                raw = gzip.decompress(raw)
            except (OSError, EOFError, zlib.error) as exc:
                return 400, _status(3, f"bad gzip: {exc}"), {}
        elif encoding != "identity":
            return 415, _status(3, f"unsupported Content-Encoding {encoding!r}"), {}
        if self._max_body is not None and len(raw) > self._max_body:
            return 413, _status(8, f"body of {len(raw)} bytes exceeds {self._max_body}"), {}
        rejected, message = self._rejections.pop(0) if self._rejections else (0, "")
        if signal == "traces":
            self.trace_requests.append(ExportTraceServiceRequest.FromString(raw))
            trace_reply = ExportTraceServiceResponse()
            if rejected:
                trace_reply.partial_success.rejected_spans = rejected
                trace_reply.partial_success.error_message = message
            return 200, trace_reply.SerializeToString(), {}
        if signal == "metrics":
            self.metric_requests.append(ExportMetricsServiceRequest.FromString(raw))
            metrics_reply = ExportMetricsServiceResponse()
            if rejected:
                metrics_reply.partial_success.rejected_data_points = rejected
                metrics_reply.partial_success.error_message = message
            return 200, metrics_reply.SerializeToString(), {}
        self.log_requests.append(ExportLogsServiceRequest.FromString(raw))
        logs_reply = ExportLogsServiceResponse()
        if rejected:
            logs_reply.partial_success.rejected_log_records = rejected
            logs_reply.partial_success.error_message = message
        return 200, logs_reply.SerializeToString(), {}


def _status(code: int, message: str) -> bytes:
    """A serialised ``google.rpc.Status`` (the OTLP/HTTP failure body)."""
    return bytes(status_pb2.Status(code=code, message=message).SerializeToString())


# --------------------------------------------------------------------------- fake judge


@dataclass(frozen=True)
class JudgeRequest:
    """What the fake judge received: the chat request body and helpers to read the prompt."""

    body: dict[str, Any]
    headers: dict[str, str]
    path: str = ""  # path and query string, e.g. /v1/chat/completions

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages", []))

    @property
    def prompt(self) -> str:
        return "\n".join(str(m.get("content", "")) for m in self.messages)

    @property
    def response_text(self) -> str | None:
        """The judged response, as otel-judge fenced it in the prompt (None if not found)."""
        match = re.search(r"<<<response (\w+)>>>\n(.*)\n<<<end response \1>>>", self.prompt, re.DOTALL)
        return match.group(2) if match else None


@dataclass
class JudgeAnswer:
    """A scripted reply. ``hang`` holds the request open until :meth:`FakeJudge.release`."""

    text: str | None = "75"
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False
    error_body: dict[str, Any] | None = None
    prompt_tokens: int = 120
    completion_tokens: int = 12
    cached_tokens: int | None = None  # usage.prompt_tokens_details.cached_tokens when set


Script = Callable[[JudgeRequest], "JudgeAnswer | str | Awaitable[JudgeAnswer | str]"]


class FakeJudge:
    """An OpenAI-compatible ``/v1/chat/completions`` server on 127.0.0.1."""

    def __init__(self, script: Script | None = None, *, model: str = "fake-judge") -> None:
        self.script: Script = script or (lambda request: "75")
        self.model_name = model
        self.requests: list[JudgeRequest] = []
        self._runner: web.AppRunner | None = None
        self._release = asyncio.Event()
        self.port: int | None = None
        self.hanging = 0

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def model(self) -> str:
        """The litellm model string that reaches this server (with ``api_base``)."""
        return f"openai/{self.model_name}"

    async def __aenter__(self) -> FakeJudge:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._handle)
        app.router.add_post("/chat/completions", self._handle)
        app.router.add_post("/openai/deployments/{deployment}/chat/completions", self._handle)  # Azure OpenAI
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def release(self) -> None:
        """Let every hanging request finish (with an error) so the server can stop."""
        self._release.set()

    async def stop(self) -> None:
        self.release()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, http_request: web.Request) -> web.StreamResponse:
        body = await http_request.json()
        request = JudgeRequest(body, dict(http_request.headers), http_request.path_qs)
        self.requests.append(request)
        answer = self.script(request)
        if inspect.isawaitable(answer):
            answer = await answer
        if isinstance(answer, str):
            answer = JudgeAnswer(text=answer)
        if answer.hang:
            self.hanging += 1
            try:
                await self._release.wait()
            finally:
                self.hanging -= 1
            return web.json_response({"error": {"message": "released"}}, status=503)
        if answer.status != 200:
            error = answer.error_body or {
                "error": {"message": f"fake judge status {answer.status}", "type": "server_error", "code": None}
            }
            return web.json_response(error, status=answer.status, headers=answer.headers)
        usage: dict[str, Any] = {
            "prompt_tokens": answer.prompt_tokens,
            "completion_tokens": answer.completion_tokens,
            "total_tokens": answer.prompt_tokens + answer.completion_tokens,
        }
        if answer.cached_tokens is not None:
            usage["prompt_tokens_details"] = {"cached_tokens": answer.cached_tokens}
        return web.json_response(
            {
                "id": f"chatcmpl-fake{len(self.requests):06d}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", self.model_name),
                "choices": [
                    {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": answer.text}}
                ],
                "usage": usage,
            },
            headers=answer.headers,
        )
