"""The OTLP/gRPC receiver: ``TraceService/Export`` and ``LogsService/Export``.

Requests are taken as raw bytes (generic handlers), decoded once with protobuf's upb backend, and
handed to the next stage with the bytes kept, so an untouched request is forwarded without being
serialised again. Errors map through :data:`otel_judge.errors.STATUS_TABLE`: malformed →
INVALID_ARGUMENT, overload → RESOURCE_EXHAUSTED (with a ``RetryInfo`` hint), a missing or wrong
credential → UNAUTHENTICATED (checked in the metadata before the request bytes are decoded); an
unexpected error becomes INTERNAL and is logged, never a crash.

The same server answers ``grpc.health.v1.Health/Check`` (see :mod:`otel_judge.health`), without
authentication so that orchestrators' probes work. With ``tls`` it serves TLS, and mTLS when
``client_ca_file`` is set.
"""

from __future__ import annotations

import grpc
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from otel_judge.auth import Authenticator, read_server_tls
from otel_judge.component import LogsConsumer, Settings, TracesConsumer
from otel_judge.config import GrpcServerConfig
from otel_judge.errors import (
    MalformedError,
    OtelJudgeError,
    OverloadedError,
    RequestTooLargeError,
    UnauthenticatedError,
    status_for,
)
from otel_judge.health import (
    HEALTH_SERVICE,
    ReadinessCheck,
    ServingStatus,
    decode_health_check_request,
    encode_health_check_response,
)
from otel_judge.logs import correlated_grpc
from otel_judge.otlp import LogsBatch, TraceBatch

__all__ = ["OtlpGrpcReceiver", "outcome_for"]

TRACE_SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
LOGS_SERVICE = "opentelemetry.proto.collector.logs.v1.LogsService"
# Services the health service reports on ("" is the server as a whole).
_HEALTH_SERVICES = frozenset({"", TRACE_SERVICE, LOGS_SERVICE})

_TRACE_OK: bytes = ExportTraceServiceResponse().SerializeToString()
_LOGS_OK: bytes = ExportLogsServiceResponse().SerializeToString()


def _retry_trailer(code: grpc.StatusCode, message: str, seconds: float) -> tuple[tuple[str, bytes], ...]:
    """The retry hint, where clients look for it: in the rich status (``grpc-status-details-bin``, read by
    the Go and Java OTLP exporters and otel-judge's own) and as a bare ``RetryInfo`` in
    ``google.rpc.retryinfo-bin`` (read by the Python SDK's OTLP exporter)."""
    delay = duration_pb2.Duration(seconds=int(seconds), nanos=int((seconds % 1) * 1e9))
    info = error_details_pb2.RetryInfo(retry_delay=delay)
    status = status_pb2.Status(code=code.value[0], message=message)
    status.details.add().Pack(info)
    return (
        ("grpc-status-details-bin", status.SerializeToString()),
        ("google.rpc.retryinfo-bin", info.SerializeToString()),
    )


def outcome_for(error: BaseException) -> str:
    """The ``outcome`` attribute of ``otel_judge.receiver.requests`` for a refused request."""
    if isinstance(error, MalformedError):
        return "malformed"
    if isinstance(error, UnauthenticatedError):
        return "unauthenticated"
    if isinstance(error, RequestTooLargeError):
        return "too_large"
    return "refused"


class OtlpGrpcReceiver:
    """Serves OTLP/gRPC on ``config.endpoint`` and feeds ``traces`` and ``logs`` consumers.

    With ``auth``, every Export call must carry a valid credential in its metadata. ``readiness``
    answers the health service (SERVING / NOT_SERVING); without it the server reports SERVING
    while it runs."""

    def __init__(
        self,
        config: GrpcServerConfig,
        traces: TracesConsumer,
        logs: LogsConsumer,
        settings: Settings,
        auth: Authenticator | None = None,
        *,
        readiness: ReadinessCheck | None = None,
    ) -> None:
        self._config = config
        self._traces = traces
        self._logs = logs
        self._settings = settings
        self._auth = auth
        self._readiness = readiness
        self._server: grpc.aio.Server | None = None
        self.port: int | None = None

    async def start(self) -> None:
        if self._server is not None:
            return
        max_bytes = self._config.max_recv_msg_size_mib * 1024 * 1024
        credentials = None
        if self._config.tls is not None:  # read before binding: bad files fail start-up, naming the file
            key, cert, client_ca = read_server_tls(self._config.tls, "receivers.otlp.protocols.grpc.tls")
            credentials = grpc.ssl_server_credentials(
                [(key, cert)], root_certificates=client_ca, require_client_auth=client_ca is not None
            )
        server = grpc.aio.server(options=[("grpc.max_receive_message_length", max_bytes), ("grpc.so_reuseport", 0)])
        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    TRACE_SERVICE,
                    {"Export": grpc.unary_unary_rpc_method_handler(correlated_grpc(self._export_traces))},
                ),
                grpc.method_handlers_generic_handler(
                    LOGS_SERVICE,
                    {"Export": grpc.unary_unary_rpc_method_handler(correlated_grpc(self._export_logs))},
                ),
                # Check only: Watch answers UNIMPLEMENTED, which the health-checking protocol allows.
                grpc.method_handlers_generic_handler(
                    HEALTH_SERVICE, {"Check": grpc.unary_unary_rpc_method_handler(self._health_check)}
                ),
            )
        )
        if credentials is None:
            port = server.add_insecure_port(self._config.endpoint)
        else:
            port = server.add_secure_port(self._config.endpoint, credentials)
        if port == 0:
            raise OSError(f"cannot listen on {self._config.endpoint}")
        self.port = port
        await server.start()
        self._server = server

    async def shutdown(self, deadline: float) -> None:
        """Stop accepting; let in-flight Export calls finish until ``deadline``."""
        if self._server is None:
            return
        grace = max(0.0, deadline - self._settings.clock.monotonic())
        await self._server.stop(grace)
        self._server = None

    async def _export_traces(self, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        telemetry = self._settings.telemetry
        try:
            if self._auth is not None:  # before the bytes are decoded: nothing is processed unauthenticated
                self._auth.authenticate_metadata(context.invocation_metadata())
            batch = TraceBatch.from_bytes(raw)
            await self._traces.consume_traces(batch)
        except OtelJudgeError as exc:
            await self._refuse(exc, context, "traces")
        except Exception as exc:  # never crash the server for one request
            self._settings.logger.exception("unexpected error handling a trace export")
            await self._refuse(exc, context, "traces")
        telemetry.add("otel_judge.receiver.requests", transport="grpc", signal="traces", outcome="accepted")
        telemetry.add("otel_judge.receiver.spans", batch.span_count, transport="grpc")
        return _TRACE_OK

    async def _export_logs(self, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        telemetry = self._settings.telemetry
        try:
            if self._auth is not None:
                self._auth.authenticate_metadata(context.invocation_metadata())
            batch = LogsBatch.from_bytes(raw)
            await self._logs.consume_logs(batch)
        except OtelJudgeError as exc:
            await self._refuse(exc, context, "logs")
        except Exception as exc:
            self._settings.logger.exception("unexpected error handling a logs export")
            await self._refuse(exc, context, "logs")
        telemetry.add("otel_judge.receiver.requests", transport="grpc", signal="logs", outcome="accepted")
        telemetry.add("otel_judge.receiver.log_records", batch.record_count, transport="grpc")
        return _LOGS_OK

    async def _refuse(self, exc: BaseException, context: grpc.aio.ServicerContext, signal: str) -> None:
        code, _ = status_for(exc)
        self._settings.telemetry.add(
            "otel_judge.receiver.requests", transport="grpc", signal=signal, outcome=outcome_for(exc)
        )
        message = str(exc) if isinstance(exc, OtelJudgeError) else "internal error"
        if isinstance(exc, OverloadedError):
            context.set_trailing_metadata(_retry_trailer(code, message, exc.retry_after))
        await context.abort(code, message)

    async def _health_check(self, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        try:
            service = decode_health_check_request(raw)
        except MalformedError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"not a HealthCheckRequest: {exc}")
        if service not in _HEALTH_SERVICES:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {service!r}")
        if self._readiness is None:
            return encode_health_check_response(ServingStatus.SERVING)
        try:
            ready = self._readiness().ready
        except Exception:  # a probe must get an answer
            self._settings.logger.exception("readiness check failed")
            ready = False
        return encode_health_check_response(ServingStatus.SERVING if ready else ServingStatus.NOT_SERVING)
