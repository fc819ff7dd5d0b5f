"""Exporters: where telemetry leaves otel-judge.

:class:`OtlpGrpcExporter` sends to any OTLP/gRPC backend through a bounded in-memory queue with
``num_consumers`` senders, merging queued requests (by concatenating their wire bytes, which
protobuf defines as merging) and retrying retryable failures with capped exponential backoff and
jitter, honouring the server's ``RetryInfo``; :class:`OtlpHttpExporter` does the same over OTLP/HTTP
(protobuf), honouring ``Retry-After``. :class:`FileExporter` writes OTLP/JSON lines as the
Collector's file exporter does; :class:`DebugExporter` prints one compact line per judged span.

Admission control happens at the front door: the judging stage calls :meth:`ensure_capacity`
before it accepts a request, so the receiver can answer RESOURCE_EXHAUSTED instead of accepting
and dropping. Spans released after judging are always queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import email.utils
import math
import random
import ssl
import sys
import zlib
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal, Protocol

import aiohttp
import grpc
from aiohttp import hdrs
from google.protobuf.message import DecodeError
from google.rpc import status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from yarl import URL

from otel_judge import __version__, logs, semconv
from otel_judge.component import Settings
from otel_judge.config import (
    OtlpExporterConfig,
    OtlpHttpExporterConfig,
    RetryConfig,
    SendingQueueConfig,
    TlsClientConfig,
)
from otel_judge.errors import (
    RETRYABLE_GRPC_CODES,
    ConfigError,
    OverloadedError,
    PermanentError,
    RetryableError,
)
from otel_judge.otlp import LogsBatch, MetricsBatch, TraceBatch, any_value_to_py, encode_otlp_json, iter_spans
from otel_judge.storage import Entry, acquire, release

__all__ = ["DebugExporter", "Exporter", "FanOutExporter", "FileExporter", "OtlpGrpcExporter", "OtlpHttpExporter"]

Signal = Literal["traces", "logs", "metrics"]

TRACE_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
LOGS_METHOD = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
METRICS_METHOD = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
_RESPONSES: dict[str, Any] = {
    "traces": ExportTraceServiceResponse,
    "logs": ExportLogsServiceResponse,
    "metrics": ExportMetricsServiceResponse,
}


class Exporter(Protocol):
    async def consume_traces(self, batch: TraceBatch) -> None: ...

    async def consume_logs(self, batch: LogsBatch) -> None: ...

    async def consume_metrics(self, batch: MetricsBatch) -> None:
        """otel-judge's own and evaluation metrics (never refused: they are small and periodic)."""
        ...

    def ensure_capacity(self) -> None:
        """Raise :class:`OverloadedError` when a new request would not fit."""
        ...

    async def start(self) -> None: ...

    async def shutdown(self, deadline: float) -> None: ...


# --------------------------------------------------------------------------- retry


def _jitter(interval: float, factor: float, rng: random.Random) -> float:
    return interval * (1 + factor * (2 * rng.random() - 1))


# --------------------------------------------------------------------------- queued sender


@dataclass(slots=True)
class _Item:
    signal: Signal
    payload: bytes
    count: int
    parts: tuple[_Item, ...] = ()  # the queued requests a merged item was made of
    solo: bool = False  # split off a refused merged item: send alone
    tokens: tuple[Entry, ...] = ()  # persistent mode: released once the backend took (or refused) the item


class _TooLarge(PermanentError):
    """RESOURCE_EXHAUSTED without a RetryInfo (gRPC), or 413 (HTTP): the backend will not take this
    request as it is."""


class QueuedExporter:
    """A bounded queue of export requests drained by ``num_consumers`` senders with retries."""

    name = "queued"

    def __init__(self, *, queue: SendingQueueConfig, retry: RetryConfig, settings: Settings) -> None:
        self._queue: deque[_Item] = deque()
        self._queue_size = queue.queue_size
        self._num_consumers = queue.num_consumers
        self._max_batch = queue.max_batch_items
        self._max_bytes = queue.max_batch_bytes
        self._retry = retry
        self._settings = settings
        self._rng = random.Random()
        self._wakeup = asyncio.Condition()
        self._consumers: list[asyncio.Task[None]] = []
        self._busy = 0
        self._sending: list[_Item] = []  # taken by a sender, not yet sent nor given up
        self._idle = asyncio.Event()
        self._idle.set()
        self._stop = asyncio.Event()  # set at the shutdown deadline: interrupts retry waits
        self._down: bool = False  # the last attempt failed retryably: logged once when it changes
        self._full: bool = False  # a request was refused as the queue was full: logged once

    def ready(self) -> tuple[bool, str]:
        """``(ready, why)`` for readiness probes: ready while the queue has room for a request."""
        if len(self._queue) < self._queue_size:
            return True, f"{self.name} exporter queue has room ({len(self._queue)}/{self._queue_size})"
        return False, f"{self.name} exporter queue is full ({len(self._queue)}/{self._queue_size})"

    def ensure_capacity(self) -> None:
        if len(self._queue) >= self._queue_size:
            if not self._full:
                self._full = True
                self._settings.logger.warning(
                    "%s exporter queue is full (%d requests): receivers answer RESOURCE_EXHAUSTED / 429",
                    self.name,
                    self._queue_size,
                    extra=logs.event("exporter.queue_full"),
                )
            raise OverloadedError(f"{self.name} exporter queue is full ({self._queue_size} requests)", 1.0)

    async def consume_traces(self, batch: TraceBatch) -> None:
        await self._put(_Item("traces", batch.to_bytes(), max(batch.span_count, 0), tokens=batch.tokens))

    async def consume_logs(self, batch: LogsBatch) -> None:
        await self._put(_Item("logs", batch.to_bytes(), max(batch.record_count, 0), tokens=batch.tokens))

    async def consume_metrics(self, batch: MetricsBatch) -> None:
        await self._put(_Item("metrics", batch.to_bytes(), max(batch.point_count, 0)))

    async def _put(self, item: _Item) -> None:
        self._queue.append(item)
        self._idle.clear()
        self._settings.telemetry.set("otel_judge.exporter.queue.size", len(self._queue), exporter=self.name)
        async with self._wakeup:
            self._wakeup.notify()

    async def start(self) -> None:
        if not self._consumers:
            self._consumers = [
                asyncio.create_task(self._consume(), name=f"{self.name}-sender-{i}") for i in range(self._num_consumers)
            ]

    async def shutdown(self, deadline: float) -> None:
        """Send what is queued until ``deadline``; then count the rest as lost."""
        clock = self._settings.clock
        remaining = deadline - clock.monotonic()
        if remaining > 0 and (self._queue or self._busy):
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._idle.wait()
        self._stop.set()
        unsent = [*self._sending, *self._queue]  # before the senders are cancelled: none of these will be sent
        for task in self._consumers:
            task.cancel()
        for task in self._consumers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._consumers = []
        # Persistent mode: what carries a stored request stays on disk for the next start.
        kept = sum(item.count for item in unsent if item.tokens)
        lost = sum(item.count for item in unsent if not item.tokens)
        if lost:
            self._settings.logger.error("%s exporter: %d items still queued at shutdown were not sent", self.name, lost)
        if kept:
            self._settings.logger.warning(
                "%s exporter: %d items not sent by the end of shutdown stay on disk for the next start", self.name, kept
            )
        for item in unsent:
            name = "otel_judge.storage.kept" if item.tokens else "otel_judge.exporter.failed"
            self._settings.telemetry.add(name, item.count, exporter=self.name, signal=item.signal)
        self._queue.clear()
        await self._close()

    async def _close(self) -> None:
        return None

    def _take(self) -> _Item:
        """The next request, merged with the following ones of the same signal within the limits."""
        first = self._queue.popleft()
        items, count, size = [first], first.count, len(first.payload)
        while self._queue and not first.solo:
            head = self._queue[0]
            if head.solo or head.signal != first.signal or count + head.count > self._max_batch:
                break
            if size + len(head.payload) > self._max_bytes:
                break
            items.append(self._queue.popleft())
            count += head.count
            size += len(head.payload)
        self._settings.telemetry.set("otel_judge.exporter.queue.size", len(self._queue), exporter=self.name)
        if self._full and len(self._queue) < self._queue_size:
            self._full = False
            self._settings.logger.info(
                "%s exporter queue has room again", self.name, extra=logs.event("exporter.queue_recovered")
            )
        if len(items) == 1:
            return first
        tokens = tuple(t for i in items for t in i.tokens)
        return _Item(first.signal, b"".join(i.payload for i in items), count, tuple(items), tokens=tokens)

    async def _consume(self) -> None:
        while not self._stop.is_set():
            async with self._wakeup:
                await self._wakeup.wait_for(lambda: bool(self._queue))
                item = self._take()
            self._busy += 1
            self._sending.append(item)
            try:
                await self._send_with_retry(item)
            finally:
                self._sending.remove(item)
                self._busy -= 1
                if not self._queue and not self._busy:
                    self._idle.set()

    async def _send_with_retry(self, item: _Item) -> None:
        telemetry = self._settings.telemetry
        clock = self._settings.clock
        started = clock.monotonic()
        interval = self._retry.initial_interval
        while True:
            try:
                await self._send(item.signal, item.payload)
            except RetryableError as exc:
                if not self._down:
                    self._down = True
                    self._settings.logger.warning(
                        "%s exporter: backend not accepting (%s); retrying",
                        self.name,
                        exc,
                        extra=logs.event("exporter.down"),
                    )
                wait = _jitter(interval, self._retry.randomization_factor, self._rng)
                if exc.retry_after is not None:
                    wait = max(exc.retry_after, 0.0)  # the server's hint wins
                elapsed = clock.monotonic() - started
                limit = self._retry.max_elapsed_time
                if not self._retry.enabled or (limit and elapsed + wait > limit) or self._stop.is_set():
                    self._give_up(item, f"{exc} (gave up after {elapsed:.1f}s)")
                    return
                telemetry.add("otel_judge.exporter.retries", exporter=self.name)
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that arrives as
                # _stop is set, and shutdown would then wait forever for this sender.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._stop.wait()
                interval = min(interval * self._retry.multiplier, self._retry.max_interval)
            except _TooLarge as exc:
                if len(item.parts) > 1:  # a merge the backend refused: send its parts one by one
                    for part in reversed(item.parts):
                        self._queue.appendleft(
                            _Item(part.signal, part.payload, part.count, solo=True, tokens=part.tokens)
                        )
                    async with self._wakeup:
                        self._wakeup.notify(len(item.parts))
                    return
                self._give_up(item, str(exc))
                return
            except PermanentError as exc:
                self._give_up(item, str(exc))
                return
            else:
                telemetry.add("otel_judge.exporter.sent", item.count, exporter=self.name, signal=item.signal)
                if self._down:
                    self._down = False
                    self._settings.logger.info(
                        "%s exporter: backend accepting again", self.name, extra=logs.event("exporter.up")
                    )
                if item.tokens:
                    release(item.tokens)
                return

    def _give_up(self, item: _Item, reason: str) -> None:
        self._settings.telemetry.add("otel_judge.exporter.failed", item.count, exporter=self.name, signal=item.signal)
        self._settings.logger.error("%s exporter dropped %d %s: %s", self.name, item.count, item.signal, reason)
        if item.tokens:  # dropped and counted: nothing left to deliver
            release(item.tokens)

    async def _send(self, signal: Signal, payload: bytes) -> None:
        raise NotImplementedError

    def _count_rejected(self, signal: Signal, reply: bytes) -> None:
        """Count the items an ``Export*ServiceResponse``'s ``partial_success`` says were rejected."""
        response = _RESPONSES[signal].FromString(reply)
        partial = response.partial_success
        rejected = (
            getattr(partial, "rejected_spans", 0)
            or getattr(partial, "rejected_log_records", 0)
            or getattr(partial, "rejected_data_points", 0)
        )
        if rejected:
            self._settings.telemetry.add("otel_judge.exporter.failed", rejected, exporter=self.name, signal=signal)
            self._settings.logger.warning(
                "%s: backend rejected %d %s: %s", self.name, rejected, signal, partial.error_message
            )


class OtlpGrpcExporter(QueuedExporter):
    """OTLP/gRPC ``TraceService/Export`` and ``LogsService/Export`` to one endpoint."""

    name = "otlp"

    def __init__(self, config: OtlpExporterConfig, settings: Settings) -> None:
        super().__init__(queue=config.sending_queue, retry=config.retry_on_failure, settings=settings)
        if not config.endpoint:
            raise ValueError("exporters.otlp.endpoint is not set (nor OTEL_EXPORTER_OTLP_ENDPOINT)")
        self._config = config
        self._metadata = tuple((k.lower(), v) for k, v in config.headers.items())
        self._channel: grpc.aio.Channel | None = None
        self._calls: dict[Signal, grpc.aio.UnaryUnaryMultiCallable] = {}

    @staticmethod
    def target(endpoint: str) -> tuple[str, bool | None]:
        """``host:port`` and whether the scheme asked for TLS (None when there was no scheme)."""
        for scheme, tls in (("https://", True), ("http://", False)):
            if endpoint.startswith(scheme):
                return endpoint[len(scheme) :].rstrip("/"), tls
        return endpoint, None

    def _open(self) -> grpc.aio.Channel:
        target, scheme_tls = self.target(self._config.endpoint or "")
        tls = self._config.tls
        retry = self._config.retry_on_failure
        options = [
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
            ("grpc.enable_retries", 0),
            # gRPC's own reconnect backoff (1 s growing to 120 s) would keep a backend that is back
            # unreached long after an outage; reconnect at the pace of retry_on_failure instead.
            ("grpc.initial_reconnect_backoff_ms", max(1, int(retry.initial_interval * 1000))),
            ("grpc.min_reconnect_backoff_ms", max(1, int(retry.initial_interval * 1000))),
            ("grpc.max_reconnect_backoff_ms", max(1, int(retry.max_interval * 1000))),
        ]
        compression = grpc.Compression.Gzip if self._config.compression == "gzip" else grpc.Compression.NoCompression
        if tls.insecure or (scheme_tls is False and not tls.ca_file):
            return grpc.aio.insecure_channel(target, options=options, compression=compression)
        root = Path(tls.ca_file).read_bytes() if tls.ca_file else None
        key = Path(tls.key_file).read_bytes() if tls.key_file else None
        cert = Path(tls.cert_file).read_bytes() if tls.cert_file else None
        credentials = grpc.ssl_channel_credentials(root_certificates=root, private_key=key, certificate_chain=cert)
        return grpc.aio.secure_channel(target, credentials, options=options, compression=compression)

    def ready(self) -> tuple[bool, str]:
        """Ready while the backend is reachable (channel not in TRANSIENT_FAILURE or SHUTDOWN) *or*
        the queue still has room: only when neither holds would a new request be refused."""
        target = self.target(self._config.endpoint or "")[0]
        if self._channel is None:
            return False, f"{self.name} exporter to {target} is not started"
        has_room, queue = super().ready()
        state = self._channel.get_state(try_to_connect=False)
        reachable = state not in (grpc.ChannelConnectivity.TRANSIENT_FAILURE, grpc.ChannelConnectivity.SHUTDOWN)
        if reachable or has_room:
            return True, f"{self.name} exporter to {target}: {state.name}; {queue}"
        return False, f"{self.name} exporter: {target} is unreachable ({state.name}) and {queue}"

    async def start(self) -> None:
        if self._channel is None:
            self._channel = self._open()
            self._calls = {
                "traces": self._channel.unary_unary(TRACE_METHOD),
                "logs": self._channel.unary_unary(LOGS_METHOD),
                "metrics": self._channel.unary_unary(METRICS_METHOD),
            }
        await super().start()

    async def _close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    async def _send(self, signal: Signal, payload: bytes) -> None:
        try:
            reply = await self._calls[signal](payload, timeout=self._config.timeout, metadata=self._metadata)
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            message = f"{code.name}: {exc.details()}"
            hint = _retry_info(exc)
            if code == grpc.StatusCode.RESOURCE_EXHAUSTED and hint is None:
                # OTLP: retryable only when the server says when; gRPC also answers this for too large.
                raise _TooLarge(message) from None
            if code in RETRYABLE_GRPC_CODES:
                raise RetryableError(message, hint) from None
            raise PermanentError(message) from None
        self._count_rejected(signal, reply)


def _retry_info(error: grpc.aio.AioRpcError) -> float | None:
    """The delay a server asked for in ``google.rpc.RetryInfo``, if any."""
    from google.rpc import error_details_pb2, status_pb2

    for key, value in error.trailing_metadata() or ():
        if key != "grpc-status-details-bin" or not isinstance(value, bytes):
            continue
        try:
            status = status_pb2.Status.FromString(value)
        except Exception:
            return None
        for detail in status.details:
            info = error_details_pb2.RetryInfo()
            if detail.Unpack(info):
                return float(info.retry_delay.seconds + info.retry_delay.nanos / 1e9)
    return None


# --------------------------------------------------------------------------- OTLP/HTTP

PROTOBUF = "application/x-protobuf"
RETRYABLE_HTTP_STATUSES = frozenset({429, 502, 503, 504})  # OTLP/HTTP spec, "Retryable Response Codes"
_GZIP_IN_THREAD = 64 * 1024  # compress larger payloads off the event loop (zlib releases the GIL)


class OtlpHttpExporter(QueuedExporter):
    """OTLP/HTTP: ``POST`` of the protobuf ``Export*ServiceRequest`` to ``/v1/traces`` and ``/v1/logs``.

    Same queue, merging and retries as :class:`OtlpGrpcExporter`; responses are read as the OTLP/HTTP
    specification says: 2xx is success (a ``partial_success`` in the body is counted as failed
    items), 429/502/503/504 are retried (``Retry-After``, in seconds or as an HTTP date, wins over the
    backoff), 413 splits a merged request (a single one is dropped), any other status is permanent.
    Connection errors and timeouts (``timeout`` per attempt) are retried. Redirects are not followed,
    so headers (credentials) never go to a host that was not configured.
    """

    name = "otlphttp"

    def __init__(self, config: OtlpHttpExporterConfig, settings: Settings) -> None:
        super().__init__(queue=config.sending_queue, retry=config.retry_on_failure, settings=settings)
        self._config = config
        self._urls: dict[Signal, str] = {
            "traces": self._url(config.traces_endpoint, config.endpoint, "/v1/traces", "traces_endpoint"),
            "logs": self._url(config.logs_endpoint, config.endpoint, "/v1/logs", "logs_endpoint"),
        }
        if config.metrics_endpoint or config.endpoint:  # without either, metrics are not sent here
            metrics = self._url(config.metrics_endpoint, config.endpoint, "/v1/metrics", "metrics_endpoint")
            self._urls["metrics"] = metrics
        self._headers = {
            hdrs.USER_AGENT: f"otel-judge/{__version__}",
            **config.headers,
            hdrs.CONTENT_TYPE: PROTOBUF,
        }
        if config.compression == "gzip":
            self._headers[hdrs.CONTENT_ENCODING] = "gzip"
        self._timeout = aiohttp.ClientTimeout(total=config.timeout)
        self._session: aiohttp.ClientSession | None = None
        self._unreachable: str | None = None  # why the last attempt could not reach the backend

    @staticmethod
    def _url(explicit: str | None, base: str | None, path: str, key: str) -> str:
        url = explicit or (base.rstrip("/") + path if base else None)
        if not url:
            why = f"not set (nor exporters.otlphttp.{key}, nor OTEL_EXPORTER_OTLP_ENDPOINT)"
            raise ConfigError([f"exporters.otlphttp.endpoint: {why}"])
        if not url.startswith(("http://", "https://")):
            where = f"exporters.otlphttp.{key}" if explicit else "exporters.otlphttp.endpoint"
            raise ConfigError([f"{where}: {url!r} must start with http:// or https://"])
        return url

    async def consume_metrics(self, batch: MetricsBatch) -> None:
        if "metrics" in self._urls:
            await super().consume_metrics(batch)

    @property
    def where(self) -> str:
        """The traces URL without credentials or query, for messages."""
        url = URL(self._urls["traces"])
        return str(url.with_user(None).with_password(None).with_query(None).with_fragment(None))

    def ready(self) -> tuple[bool, str]:
        """Ready while the last attempt reached the backend *or* the queue still has room: only when
        neither holds would a new request be refused."""
        if self._session is None:
            return False, f"{self.name} exporter to {self.where} is not started"
        has_room, queue = super().ready()
        if self._unreachable is None:
            return True, f"{self.name} exporter to {self.where}: reachable; {queue}"
        if has_room:
            return True, f"{self.name} exporter to {self.where}: {self._unreachable}; {queue}"
        return False, f"{self.name} exporter: {self.where} is unreachable ({self._unreachable}) and {queue}"

    async def start(self) -> None:
        if self._session is None:
            needs_tls = any(url.startswith("https://") for url in self._urls.values())
            context = client_ssl_context(self._config.tls, "exporters.otlphttp.tls") if needs_tls else None
            connector = aiohttp.TCPConnector(ssl=context if context is not None else True)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        await super().start()

    async def _close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _send(self, signal: Signal, payload: bytes) -> None:
        if self._session is None:
            raise RetryableError(f"{self.name} exporter is not started")
        body = payload
        if self._config.compression == "gzip":
            body = await asyncio.to_thread(_gzip, payload) if len(payload) > _GZIP_IN_THREAD else _gzip(payload)
        url = self._urls[signal]
        try:
            async with self._session.post(url, data=body, headers=self._headers, allow_redirects=False) as response:
                status = response.status
                reply = await response.read()
                retry_after = response.headers.get(hdrs.RETRY_AFTER)
                media = response.content_type
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            # Foreign errors stop here: no response at all is always worth retrying.
            self._unreachable = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise RetryableError(f"{self.where}: {self._unreachable}") from None
        self._unreachable = None
        if 200 <= status < 300:
            if reply and media == PROTOBUF:
                try:
                    self._count_rejected(signal, reply)
                except DecodeError:
                    self._settings.logger.warning("%s: undecodable success response from %s", self.name, url)
            return
        message = f"HTTP {status} from {self.where}{_status_message(reply, media)}"
        if status in RETRYABLE_HTTP_STATUSES:
            raise RetryableError(message, parse_retry_after(retry_after, self._settings.clock.time_ns() / 1e9))
        if status == 413:
            raise _TooLarge(message)
        raise PermanentError(message)


def _gzip(data: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


def _status_message(reply: bytes, media: str) -> str:
    """``": <message>"`` from a ``google.rpc.Status`` body (OTLP/HTTP failures carry one), else ``""``."""
    if not reply or media != PROTOBUF:
        return ""
    try:
        message = str(status_pb2.Status.FromString(reply).message)
    except DecodeError:
        return ""
    return f": {message[:200]}" if message else ""


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delay-seconds (decimals accepted) or an HTTP
    date, relative to ``now`` (Unix seconds). ``None`` when absent or unreadable; never negative."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:  # HTTP dates are GMT ("-0000" parses as naive)
            when = when.replace(tzinfo=datetime.UTC)
        return max(when.timestamp() - now, 0.0)
    if not math.isfinite(seconds):
        return None
    return max(seconds, 0.0)


def client_ssl_context(config: TlsClientConfig, where: str) -> ssl.SSLContext:
    """A TLS client context: the system CAs, or ``ca_file``; a client certificate for mTLS.
    ``where`` is the YAML path of the ``tls`` block, used in errors (raised as :class:`OSError`)."""
    context = ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if config.ca_file:
        try:
            context.load_verify_locations(cafile=config.ca_file)
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise OSError(f"{where}.ca_file: {config.ca_file} is not a readable PEM CA bundle: {exc}") from None
    if config.cert_file and config.key_file:
        try:
            context.load_cert_chain(config.cert_file, config.key_file)
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise OSError(
                f"{where}: {config.cert_file} and {config.key_file} are not a readable PEM certificate and its "
                f"private key: {exc}"
            ) from None
    return context


# --------------------------------------------------------------------------- local outputs


class FileExporter:
    """Appends one OTLP/JSON request per line (the Collector file exporter's format)."""

    def __init__(self, path: str, settings: Settings) -> None:
        self.path = path
        self._settings = settings
        self._file: IO[str] | None = None

    def ensure_capacity(self) -> None:
        return None

    async def start(self) -> None:
        if self._file is None:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115, ASYNC230 - once, at start

    async def shutdown(self, deadline: float) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _write(self, line: str, signal: str, count: int) -> None:
        if self._file is None:
            raise RuntimeError("file exporter is not started")
        self._file.write(line + "\n")
        self._file.flush()
        self._settings.telemetry.add("otel_judge.exporter.sent", count, exporter="file", signal=signal)

    async def consume_traces(self, batch: TraceBatch) -> None:
        self._write(encode_otlp_json(batch.request), "traces", batch.span_count)
        release(batch.tokens)

    async def consume_logs(self, batch: LogsBatch) -> None:
        self._write(encode_otlp_json(batch.request), "logs", batch.record_count)
        release(batch.tokens)

    async def consume_metrics(self, batch: MetricsBatch) -> None:
        self._write(encode_otlp_json(batch.request), "metrics", batch.point_count)


class DebugExporter:
    """One compact console line per GenAI span otel-judge considered (not the sampled-out ones)."""

    def __init__(self, verbosity: str, settings: Settings, stream: IO[str] | None = None) -> None:
        self._verbosity = verbosity
        self._stream = stream or sys.stdout

    def ensure_capacity(self) -> None:
        return None

    async def start(self) -> None:
        return None

    async def shutdown(self, deadline: float) -> None:
        return None

    async def consume_logs(self, batch: LogsBatch) -> None:
        release(batch.tokens)

    async def consume_metrics(self, batch: MetricsBatch) -> None:
        return None  # the console shows judged spans; metrics are at /metrics and over OTLP

    async def consume_traces(self, batch: TraceBatch) -> None:
        for _, _, span in iter_spans(batch.request.resource_spans):
            line = self.describe(span)
            if line:
                print(line, file=self._stream, flush=True)
        release(batch.tokens)

    def describe(self, span: object) -> str | None:
        attrs = {kv.key: any_value_to_py(kv.value) for kv in span.attributes}  # type: ignore[attr-defined]
        status = attrs.get(semconv.OTEL_JUDGE_EVALUATION_STATUS)
        if status is None or status == "sampled_out":
            return None
        scores = []
        for key, value in attrs.items():
            if key.startswith(semconv.EVALUATION_PREFIX) and key.endswith(".score.value"):
                name = key[len(semconv.EVALUATION_PREFIX) : -len(".score.value")]
                label = attrs.get(semconv.score_label_key(name))
                scores.append(f"{name}={value:g}" + (f" ({label})" if label else ""))
                if self._verbosity == "detailed" and attrs.get(semconv.explanation_key(name)):
                    scores.append(f"  {name}: {attrs[semconv.explanation_key(name)]}")
        model = attrs.get(semconv.GEN_AI_RESPONSE_MODEL) or attrs.get(semconv.GEN_AI_REQUEST_MODEL) or "?"
        trace_id = span.trace_id.hex()  # type: ignore[attr-defined]
        span_id = span.span_id.hex()  # type: ignore[attr-defined]
        name = span.name  # type: ignore[attr-defined]
        detail = " ".join(scores) or attrs.get(semconv.OTEL_JUDGE_EVALUATION_ERROR, "")
        return f"otel-judge {status:<16} trace={trace_id} span={span_id} {name!r} model={model} {detail}".rstrip()


class FanOutExporter:
    """Sends every batch to each exporter in turn. In persistent mode each exporter gets its own
    reference to the batch's stored requests: a request leaves the disk once every exporter is done."""

    def __init__(self, exporters: list[Exporter]) -> None:
        self.exporters = exporters

    def ensure_capacity(self) -> None:
        for exporter in self.exporters:
            exporter.ensure_capacity()

    async def consume_traces(self, batch: TraceBatch) -> None:
        if batch.tokens:
            acquire(batch.tokens, len(self.exporters) - 1)
        for exporter in self.exporters:
            await exporter.consume_traces(batch)

    async def consume_logs(self, batch: LogsBatch) -> None:
        if batch.tokens:
            acquire(batch.tokens, len(self.exporters) - 1)
        for exporter in self.exporters:
            await exporter.consume_logs(batch)

    async def consume_metrics(self, batch: MetricsBatch) -> None:
        for exporter in self.exporters:
            await exporter.consume_metrics(batch)

    async def start(self) -> None:
        for exporter in self.exporters:
            await exporter.start()

    async def shutdown(self, deadline: float) -> None:
        for exporter in self.exporters:
            await exporter.shutdown(deadline)
