"""The OTLP/gRPC receiver: ``TraceService/Export`` and ``LogsService/Export``.

Requests are taken as raw bytes (generic handlers), decoded once with protobuf's upb backend, and
handed to the next stage with the bytes kept, so an untouched request is forwarded without being
serialised again. Errors map through :data:`otel_judge.errors.STATUS_TABLE`: malformed →
INVALID_ARGUMENT, overload → RESOURCE_EXHAUSTED (with a ``RetryInfo`` hint); an unexpected error
becomes INTERNAL and is logged, never a crash.
"""

from __future__ import annotations

import grpc
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from otel_judge.component import LogsConsumer, Settings, TracesConsumer
from otel_judge.config import GrpcServerConfig
from otel_judge.errors import MalformedError, OtelJudgeError, OverloadedError, status_for
from otel_judge.otlp import LogsBatch, TraceBatch

__all__ = ["OtlpGrpcReceiver"]

_TRACE_OK: bytes = ExportTraceServiceResponse().SerializeToString()
_LOGS_OK: bytes = ExportLogsServiceResponse().SerializeToString()


def _retry_trailer(code: grpc.StatusCode, message: str, seconds: float) -> tuple[tuple[str, bytes], ...]:
    delay = duration_pb2.Duration(seconds=int(seconds), nanos=int((seconds % 1) * 1e9))
    status = status_pb2.Status(code=code.value[0], message=message)
    status.details.add().Pack(error_details_pb2.RetryInfo(retry_delay=delay))
    return (("grpc-status-details-bin", status.SerializeToString()),)


class OtlpGrpcReceiver:
    """Serves OTLP/gRPC on ``config.endpoint`` and feeds ``traces`` and ``logs`` consumers."""

    def __init__(
        self, config: GrpcServerConfig, traces: TracesConsumer, logs: LogsConsumer, settings: Settings
    ) -> None:
        self._config = config
        self._traces = traces
        self._logs = logs
        self._settings = settings
        self._server: grpc.aio.Server | None = None
        self.port: int | None = None

    async def start(self) -> None:
        if self._server is not None:
            return
        max_bytes = self._config.max_recv_msg_size_mib * 1024 * 1024
        server = grpc.aio.server(options=[("grpc.max_receive_message_length", max_bytes), ("grpc.so_reuseport", 0)])
        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    "opentelemetry.proto.collector.trace.v1.TraceService",
                    {"Export": grpc.unary_unary_rpc_method_handler(self._export_traces)},
                ),
                grpc.method_handlers_generic_handler(
                    "opentelemetry.proto.collector.logs.v1.LogsService",
                    {"Export": grpc.unary_unary_rpc_method_handler(self._export_logs)},
                ),
            )
        )
        port = server.add_insecure_port(self._config.endpoint)
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
            batch = TraceBatch.from_bytes(raw)
            await self._traces.consume_traces(batch)
        except OtelJudgeError as exc:
            await self._refuse(exc, context, "traces")
        except Exception as exc:  # never crash the server for one request
            self._settings.logger.exception("unexpected error handling a trace export")
            await self._refuse(exc, context, "traces")
        telemetry.add("otel_judge.receiver.requests", signal="traces", outcome="accepted")
        telemetry.add("otel_judge.receiver.spans", batch.span_count)
        return _TRACE_OK

    async def _export_logs(self, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        telemetry = self._settings.telemetry
        try:
            batch = LogsBatch.from_bytes(raw)
            await self._logs.consume_logs(batch)
        except OtelJudgeError as exc:
            await self._refuse(exc, context, "logs")
        except Exception as exc:
            self._settings.logger.exception("unexpected error handling a logs export")
            await self._refuse(exc, context, "logs")
        telemetry.add("otel_judge.receiver.requests", signal="logs", outcome="accepted")
        telemetry.add("otel_judge.receiver.log_records", batch.record_count)
        return _LOGS_OK

    async def _refuse(self, exc: BaseException, context: grpc.aio.ServicerContext, signal: str) -> None:
        code, _ = status_for(exc)
        outcome = "malformed" if isinstance(exc, MalformedError) else "refused"
        self._settings.telemetry.add("otel_judge.receiver.requests", signal=signal, outcome=outcome)
        message = str(exc) if isinstance(exc, OtelJudgeError) else "internal error"
        if isinstance(exc, OverloadedError):
            context.set_trailing_metadata(_retry_trailer(code, message, exc.retry_after))
        await context.abort(code, message)
