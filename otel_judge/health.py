"""Health: liveness and readiness, over HTTP (``/healthz``, ``/readyz``) and gRPC (``grpc.health.v1``).

* Liveness: the process runs and its event loop answers.
* Readiness: the pipeline is started (and not shutting down) and every exporter can make progress:
  an OTLP exporter is ready while its backend is reachable (channel not in TRANSIENT_FAILURE or
  SHUTDOWN) *or* its queue still has room; exporters without a remote (file, debug) are always
  ready. Not ready therefore means "a new request would be refused".

With ``service.health.metrics`` (on by default) the same HTTP server also serves ``GET /metrics``:
otel-judge's own telemetry in the Prometheus text format (:meth:`Telemetry.render_prometheus`).

The gRPC health service (``grpc.health.v1.Health/Check``) is served on the OTLP/gRPC port by
:class:`otel_judge.receiver.OtlpGrpcReceiver`; its two tiny messages are encoded here by hand so no
extra dependency is needed. ``Watch`` is not implemented (UNIMPLEMENTED), which the health-checking
protocol allows.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from aiohttp import hdrs, web

from otel_judge.component import Settings
from otel_judge.config import HealthConfig
from otel_judge.errors import MalformedError
from otel_judge.exporter import FanOutExporter
from otel_judge.telemetry import PROMETHEUS_CONTENT_TYPE

__all__ = [
    "HEALTH_SERVICE",
    "HealthServer",
    "Readiness",
    "ReadinessReporter",
    "ServingStatus",
    "decode_health_check_request",
    "encode_health_check_response",
    "exporter_readiness",
    "listen_http",
    "split_host_port",
]

HEALTH_SERVICE = "grpc.health.v1.Health"


@dataclass(frozen=True)
class Readiness:
    """Whether otel-judge should be sent traffic now, and why (shown by ``/readyz``)."""

    ready: bool
    reason: str


ReadinessCheck = Callable[[], Readiness]


@runtime_checkable
class ReadinessReporter(Protocol):
    """An exporter that can tell whether it can make progress (``OtlpGrpcExporter``)."""

    def ready(self) -> tuple[bool, str]:
        """``(ready, why)``; ``why`` names the exporter and its state, never secrets."""
        ...


def exporter_readiness(exporter: object) -> tuple[bool, str]:
    """Readiness of ``exporter``; a fan-out is ready when all its exporters are."""
    if isinstance(exporter, FanOutExporter):
        results = [exporter_readiness(part) for part in exporter.exporters]
        not_ready = [why for ok, why in results if not ok]
        if not_ready:
            return False, "; ".join(not_ready)
        return True, "; ".join(why for _, why in results)
    if isinstance(exporter, ReadinessReporter):
        return exporter.ready()
    return True, f"{type(exporter).__name__} has no remote"


# --------------------------------------------------------------------------- grpc.health.v1 messages


class ServingStatus:
    """``grpc.health.v1.HealthCheckResponse.ServingStatus``."""

    UNKNOWN = 0
    SERVING = 1
    NOT_SERVING = 2


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(data) or shift > 63:
            raise MalformedError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def decode_health_check_request(data: bytes) -> str:
    """The ``service`` (field 1) of a serialised ``HealthCheckRequest``; unknown fields are skipped."""
    service = ""
    pos = 0
    while pos < len(data):
        tag, pos = _varint(data, pos)
        field, wire = tag >> 3, tag & 7
        if wire == 0:
            _, pos = _varint(data, pos)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise MalformedError("truncated field")
            if field == 1:
                try:
                    service = data[pos : pos + length].decode("utf-8")
                except UnicodeDecodeError:
                    raise MalformedError("service is not UTF-8") from None
            pos += length
        else:
            raise MalformedError(f"unsupported wire type {wire}")
        if pos > len(data):
            raise MalformedError("truncated field")
    return service


def encode_health_check_response(status: int) -> bytes:
    """A serialised ``HealthCheckResponse{status}`` (proto3: the default UNKNOWN is empty)."""
    return b"" if status == ServingStatus.UNKNOWN else bytes((0x08, status))


# --------------------------------------------------------------------------- HTTP


def split_host_port(endpoint: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too) as ``(host, port)``."""
    host, _, port = endpoint.rpartition(":")
    return host.strip("[]"), int(port)


async def listen_http(
    app: web.Application,
    endpoint: str,
    where: str,
    *,
    ssl_context: ssl.SSLContext | None = None,
    **runner_options: Any,
) -> web.AppRunner:
    """Serve ``app`` on ``endpoint`` and return its runner (bound port: ``runner.addresses[0][1]``).
    A port that cannot be bound raises OSError naming the config key ``where``; nothing is left open."""
    runner = web.AppRunner(app, access_log=None, **runner_options)
    await runner.setup()
    host, port = split_host_port(endpoint)
    try:
        await web.TCPSite(runner, host, port, ssl_context=ssl_context).start()
    except OSError as exc:
        await runner.cleanup()
        raise OSError(f"{where}: cannot listen on {endpoint}: {exc.strerror or exc}") from None
    return runner


class HealthServer:
    """``GET /healthz`` (200 ``{"status": "ok"}`` while the process runs) and ``GET /readyz``
    (200 ``{"status": "ready"}``, or 503 ``{"status": "not ready", "reason": ...}``), as the
    Collector's health_check extension on ``service.health.endpoint``; with ``metrics``, also
    ``GET /metrics`` (Prometheus text format 0.0.4). ``port`` is the bound port once started."""

    def __init__(self, config: HealthConfig, readiness: ReadinessCheck, settings: Settings) -> None:
        self._config = config
        self._readiness = readiness
        self._settings = settings
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def start(self) -> None:
        if self._runner is not None:
            return
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        if self._config.metrics:
            app.router.add_get("/metrics", self._metrics)
        runner = await listen_http(app, self._config.endpoint, "service.health.endpoint", shutdown_timeout=1.0)
        self._runner = runner
        self.port = runner.addresses[0][1]

    async def shutdown(self, deadline: float) -> None:
        if self._runner is None:
            return
        runner, self._runner = self._runner, None
        await runner.cleanup()

    async def _healthz(self, request: web.Request) -> web.Response:
        return _json(200, {"status": "ok"})

    async def _readyz(self, request: web.Request) -> web.Response:
        try:
            readiness = self._readiness()
        except Exception:  # a probe must answer, never crash
            self._settings.logger.exception("readiness check failed")
            return _json(503, {"status": "not ready", "reason": "readiness check failed"})
        if readiness.ready:
            return _json(200, {"status": "ready", "reason": readiness.reason})
        return _json(503, {"status": "not ready", "reason": readiness.reason})

    async def _metrics(self, request: web.Request) -> web.Response:
        body = self._settings.telemetry.render_prometheus().encode("utf-8")
        return web.Response(status=200, body=body, headers={hdrs.CONTENT_TYPE: PROMETHEUS_CONTENT_TYPE})


def _json(status: int, body: dict[str, str]) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type="application/json")
