"""The OTLP/HTTP receiver: ``POST /v1/traces`` and ``POST /v1/logs``, protobuf or JSON, optionally gzip.

Behaviour follows the OTLP/HTTP specification:

* ``Content-Type: application/x-protobuf`` carries the serialised ``Export*ServiceRequest`` (decoded
  once, the bytes kept, as over gRPC); ``application/json`` carries OTLP/JSON (hex trace and span
  ids); the response uses the request's encoding. Anything else: 415.
* ``Content-Encoding: gzip`` is inflated incrementally and stops as soon as the inflated size passes
  ``max_request_body_size``: 413, so a small "zip bomb" cannot exhaust memory. Other encodings: 415.
* Success is 200 with an empty ``Export*ServiceResponse``. Failures carry a ``google.rpc.Status``
  body with the gRPC code of :data:`otel_judge.errors.STATUS_TABLE` and its HTTP status: malformed
  400, overloaded 429 (``Retry-After``), retryable 503 (``Retry-After`` when known), unauthenticated
  401, too large 413, unexpected 500 (logged). Wrong path and wrong method are aiohttp's 404 and 405.
* With ``auth``, the credential header is checked before a byte of the body is read.
* With ``tls``, HTTPS (and mTLS when ``client_ca_file`` is set).

A request is never fatal: every failure is answered and counted in ``otel_judge.receiver.requests``.
"""

from __future__ import annotations

import math
import zlib
from typing import Any, Literal

import aiohttp
import grpc
from aiohttp import hdrs, web
from google.protobuf import json_format
from google.rpc import status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from otel_judge.auth import Authenticator, server_ssl_context
from otel_judge.component import LogsConsumer, Settings, TracesConsumer
from otel_judge.config import HttpServerConfig
from otel_judge.errors import (
    MalformedError,
    OtelJudgeError,
    OverloadedError,
    RequestTooLargeError,
    RetryableError,
    UnauthenticatedError,
    status_for,
)
from otel_judge.health import listen_http
from otel_judge.logs import correlated_http
from otel_judge.otlp import LogsBatch, TraceBatch, decode_otlp_json
from otel_judge.receiver import outcome_for

__all__ = ["OtlpHttpReceiver"]

PROTOBUF = "application/x-protobuf"
JSON = "application/json"

Signal = Literal["traces", "logs"]

_CHUNK = 64 * 1024
_OK: dict[Signal, dict[str, bytes]] = {
    "traces": {
        PROTOBUF: ExportTraceServiceResponse().SerializeToString(),
        JSON: json_format.MessageToJson(ExportTraceServiceResponse()).encode(),
    },
    "logs": {
        PROTOBUF: ExportLogsServiceResponse().SerializeToString(),
        JSON: json_format.MessageToJson(ExportLogsServiceResponse()).encode(),
    },
}


class _Inflater:
    """Incremental gzip decoding (multi-member too) that never holds more than ``limit`` bytes."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._size = 0
        self._zlib = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)

    def feed(self, data: bytes) -> bytes:
        out = bytearray()
        try:
            while data:
                room = self._limit - self._size - len(out)
                # max_length caps what one call may produce: the bomb is stopped one byte past the limit.
                out += self._zlib.decompress(data, room + 1)
                if self._size + len(out) > self._limit:
                    raise RequestTooLargeError(f"gzip body inflates past max_request_body_size ({self._limit} bytes)")
                data = b""
                if self._zlib.eof and self._zlib.unused_data:  # another gzip member follows
                    data = self._zlib.unused_data
                    self._zlib = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        except zlib.error as exc:
            raise MalformedError(f"not valid gzip: {exc}") from None
        self._size += len(out)
        return bytes(out)

    def finish(self) -> None:
        if not self._zlib.eof:
            raise MalformedError("gzip body is truncated")


class OtlpHttpReceiver:
    """Serves OTLP/HTTP on ``config.endpoint`` and feeds ``traces`` and ``logs`` consumers.

    Same lifecycle as :class:`otel_judge.receiver.OtlpGrpcReceiver`: ``start()`` binds (``port`` is
    then the bound port), ``shutdown(deadline)`` stops accepting and lets in-flight requests finish
    until ``deadline``. TLS files are read at ``start()``; a bad one raises :class:`OSError` naming it.
    """

    def __init__(
        self,
        config: HttpServerConfig,
        traces: TracesConsumer,
        logs: LogsConsumer,
        settings: Settings,
        auth: Authenticator | None = None,
    ) -> None:
        self._config = config
        self._traces = traces
        self._logs = logs
        self._settings = settings
        self._auth = auth
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def start(self) -> None:
        if self._runner is not None:
            return
        tls = self._config.tls
        ssl_context = server_ssl_context(tls, "receivers.otlp.protocols.http.tls") if tls is not None else None
        app = web.Application()
        app.router.add_post(self._config.traces_url_path, correlated_http(self._export_traces))
        app.router.add_post(self._config.logs_url_path, correlated_http(self._export_logs))
        # auto_decompress off: gzip is inflated here, under the size cap.
        runner = await listen_http(
            app,
            self._config.endpoint,
            "receivers.otlp.protocols.http.endpoint",
            ssl_context=ssl_context,
            auto_decompress=False,
        )
        self._runner = runner
        self.port = runner.addresses[0][1]

    async def shutdown(self, deadline: float) -> None:
        """Stop accepting; let in-flight exports finish until ``deadline``."""
        if self._runner is None:
            return
        runner, self._runner = self._runner, None
        # aiohttp reads the grace from the runner; it is only known now.
        runner._shutdown_timeout = max(0.0, deadline - self._settings.clock.monotonic())
        await runner.cleanup()

    async def _export_traces(self, request: web.Request) -> web.Response:
        return await self._export(request, "traces")

    async def _export_logs(self, request: web.Request) -> web.Response:
        return await self._export(request, "logs")

    async def _export(self, request: web.Request, signal: Signal) -> web.Response:
        media = request.content_type
        reply_as = JSON if media == JSON else PROTOBUF
        try:
            if self._auth is not None:  # headers only: nothing of the body is read for a stranger
                self._auth.authenticate(request.headers.get(self._auth.header))
            encoding = request.headers.get(hdrs.CONTENT_ENCODING, "identity").strip().lower()
            if media not in (PROTOBUF, JSON) or encoding not in ("identity", "gzip"):
                return self._unsupported(signal, media, encoding, reply_as)
            body = await self._read_body(request, gzipped=encoding == "gzip")
            count = await self._consume(signal, body, media)
        except OtelJudgeError as exc:
            return self._refuse(exc, signal, reply_as)
        except Exception as exc:  # never crash the server for one request
            self._settings.logger.exception("unexpected error handling an OTLP/HTTP %s export", signal)
            return self._refuse(exc, signal, reply_as)
        telemetry = self._settings.telemetry
        telemetry.add("otel_judge.receiver.requests", transport="http", signal=signal, outcome="accepted")
        if signal == "traces":
            telemetry.add("otel_judge.receiver.spans", count, transport="http")
        else:
            telemetry.add("otel_judge.receiver.log_records", count, transport="http")
        return web.Response(status=200, body=_OK[signal][reply_as], content_type=reply_as)

    async def _read_body(self, request: web.Request, *, gzipped: bool) -> bytes:
        limit = self._config.max_request_body_size
        if request.content_length is not None and request.content_length > limit:
            raise RequestTooLargeError(
                f"body of {request.content_length} bytes exceeds max_request_body_size ({limit})"
            )
        inflater = _Inflater(limit) if gzipped else None
        parts: list[bytes] = []
        received = 0
        try:
            async for chunk in request.content.iter_chunked(_CHUNK):
                received += len(chunk)
                if received > limit:
                    raise RequestTooLargeError(f"body exceeds max_request_body_size ({limit} bytes)")
                parts.append(inflater.feed(chunk) if inflater is not None else chunk)
        except (aiohttp.ClientPayloadError, ConnectionError) as exc:
            raise MalformedError(f"incomplete body: {exc}") from None
        if inflater is not None:
            inflater.finish()
        return b"".join(parts)

    async def _consume(self, signal: Signal, body: bytes, media: str) -> int:
        """Decode ``body`` and hand it on; the number of spans / log records."""
        if signal == "traces":
            traces = (
                TraceBatch(decode_otlp_json(body, ExportTraceServiceRequest))
                if media == JSON
                else TraceBatch.from_bytes(body)
            )
            await self._traces.consume_traces(traces)
            return traces.span_count
        logs = (
            LogsBatch(decode_otlp_json(body, ExportLogsServiceRequest)) if media == JSON else LogsBatch.from_bytes(body)
        )
        await self._logs.consume_logs(logs)
        return logs.record_count

    def _unsupported(self, signal: Signal, media: str, encoding: str, reply_as: str) -> web.Response:
        self._settings.telemetry.add(
            "otel_judge.receiver.requests", transport="http", signal=signal, outcome="unsupported_media_type"
        )
        if media not in (PROTOBUF, JSON):
            message = f"unsupported Content-Type {media!r}: use {PROTOBUF} or {JSON}"
        else:
            message = f"unsupported Content-Encoding {encoding!r}: use gzip or none"
        status = status_pb2.Status(code=grpc.StatusCode.INVALID_ARGUMENT.value[0], message=message)
        return _status_response(415, status, reply_as, {})

    def _refuse(self, exc: BaseException, signal: Signal, reply_as: str) -> web.Response:
        code, http_status = status_for(exc)
        self._settings.telemetry.add(
            "otel_judge.receiver.requests", transport="http", signal=signal, outcome=outcome_for(exc)
        )
        message = str(exc) if isinstance(exc, OtelJudgeError) else "internal error"
        headers: dict[str, str] = {}
        if isinstance(exc, OverloadedError | RetryableError) and exc.retry_after is not None:
            headers[hdrs.RETRY_AFTER] = str(max(0, math.ceil(exc.retry_after)))
        if isinstance(exc, UnauthenticatedError) and self._auth is not None and self._auth.scheme:
            headers[hdrs.WWW_AUTHENTICATE] = self._auth.scheme
        status = status_pb2.Status(code=code.value[0], message=message)
        return _status_response(http_status, status, reply_as, headers)


def _status_response(http_status: int, status: Any, reply_as: str, headers: dict[str, str]) -> web.Response:
    body = json_format.MessageToJson(status).encode() if reply_as == JSON else status.SerializeToString()
    return web.Response(status=http_status, body=body, content_type=reply_as, headers=headers)
