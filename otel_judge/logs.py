"""otel-judge's own logs: one structured line per event, never per span, never content.

* :func:`configure_logging` installs one handler (stderr by default) whose lines are JSON objects
  (``service.logs.format: json``) or ``key=value`` text, at ``service.logs.level`` or
  ``OTEL_JUDGE_LOG_LEVEL``.
* Every line carries the ids that let an operator follow one span through the pipeline, when they
  are known: ``trace_id``, ``span_id`` and ``evaluation_id`` (passed with ``extra=ids(...)``), and
  ``correlation_id``, the value of the incoming export request's correlation header
  (``service.logs.correlation_header``, default ``x-request-id``), which the receivers bind for
  the time they handle the request (:func:`bind_correlation`).
* State changes carry a stable ``event`` name (:data:`EVENTS`): start and stop, judge circuit
  open / closed, exporter down / up, queue full / recovered. They are logged once per change;
  anything that can happen per span is counted in :mod:`otel_judge.telemetry`, or logged at most
  once per interval with the number of occurrences since (:class:`Throttle`).
* Prompt and completion text, API keys and header values never reach a log line: the code never
  passes them (``service.logs.include_content`` opts in to content for debugging), and as a second
  line of defence the configured secrets (judge API keys, exporter and alert header values, the
  receivers' API keys) are replaced by ``[REDACTED]`` in every formatted line.
"""

from __future__ import annotations

import contextvars
import datetime
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, Any, Final

from otel_judge.errors import ConfigError

if TYPE_CHECKING:
    from otel_judge.component import Settings
    from otel_judge.config import Config, LoggingConfig

__all__ = [
    "EVENTS",
    "JsonFormatter",
    "StateWatcher",
    "TextFormatter",
    "Throttle",
    "bind_correlation",
    "config_secrets",
    "configure_logging",
    "correlated_grpc",
    "correlated_http",
    "correlation_from_headers",
    "correlation_from_metadata",
    "event",
    "ids",
    "resolve_level",
]

LEVEL_ENV: Final = "OTEL_JUDGE_LOG_LEVEL"
LEVELS: Final = ("debug", "info", "warning", "error")
REDACTED: Final = "[REDACTED]"
MAX_CORRELATION_CHARS: Final = 128

# Stable names of the state changes otel-judge logs (the ``event`` field).
EVENTS: Final = frozenset(
    {
        "otel_judge.started",
        "otel_judge.stopping",
        "otel_judge.stopped",
        "judge.circuit_open",
        "judge.circuit_closed",
        "judge.queue_full",
        "judge.queue_recovered",
        "exporter.down",
        "exporter.up",
        "exporter.queue_full",
        "exporter.queue_recovered",
        "storage.replaying",
        "storage.replayed",
        "storage.full",
        "storage.recovered",
        "storage.write_failed",
        "storage.write_recovered",
        "storage.kept",
    }
)

# The ids a line may carry; the first three are passed per call, the correlation id is bound per request.
ID_FIELDS: Final = ("trace_id", "span_id", "evaluation_id", "correlation_id")
_correlation: contextvars.ContextVar[str | None] = contextvars.ContextVar("otel_judge_correlation_id", default=None)


class _Options:
    correlation_header = "x-request-id"  # service.logs.correlation_header, set by configure_logging


_options = _Options()


def ids(
    trace_id: bytes | str | None = None, span_id: bytes | str | None = None, evaluation_id: str | None = None
) -> dict[str, str]:
    """``extra=`` for a log call about one span or judgment: the ids as hex / text."""
    out: dict[str, str] = {}
    for key, value in (("trace_id", trace_id), ("span_id", span_id), ("evaluation_id", evaluation_id)):
        if value:
            out[key] = value.hex() if isinstance(value, bytes) else value
    return out


def event(name: str, **ids_: str) -> dict[str, str]:
    """``extra=`` for a state change: its stable name (one of :data:`EVENTS`) and optional ids."""
    if name not in EVENTS:
        raise KeyError(f"undeclared log event {name!r}: add it to logs.EVENTS")
    return {"event": name, **ids_}


# --------------------------------------------------------------------------- correlation


def _clean(value: str | bytes | None) -> str | None:
    """A header value fit for a log line: printable ASCII, at most :data:`MAX_CORRELATION_CHARS`."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    text = "".join(c for c in value[:MAX_CORRELATION_CHARS] if " " <= c <= "~").strip()
    return text or None


def correlation_from_headers(headers: Mapping[str, str]) -> str | None:
    """The correlation id of an HTTP request (``headers`` case-insensitive, as aiohttp's)."""
    return _clean(headers.get(_options.correlation_header))


def correlation_from_metadata(metadata: Iterable[tuple[str, Any]] | None) -> str | None:
    """The correlation id of a gRPC call (metadata keys are lower-case)."""
    for key, value in metadata or ():
        if key == _options.correlation_header:
            return _clean(value)
    return None


@contextmanager
def bind_correlation(value: str | None) -> Iterator[None]:
    """Log ``correlation_id=value`` on every line written while the block runs (one request)."""
    if value is None:
        yield
        return
    token = _correlation.set(value)
    try:
        yield
    finally:
        _correlation.reset(token)


def correlated_grpc(handler: Callable[[bytes, Any], Awaitable[bytes]]) -> Callable[[bytes, Any], Awaitable[bytes]]:
    """A gRPC unary handler that logs with the call's correlation id (from its metadata)."""

    async def handle(raw: bytes, context: Any) -> bytes:
        with bind_correlation(correlation_from_metadata(context.invocation_metadata())):
            return await handler(raw, context)

    return handle


def correlated_http(handler: Callable[[Any], Awaitable[Any]]) -> Callable[[Any], Awaitable[Any]]:
    """An aiohttp handler that logs with the request's correlation id (from its headers)."""

    async def handle(request: Any) -> Any:
        with bind_correlation(correlation_from_headers(request.headers)):
            return await handler(request)

    return handle


# --------------------------------------------------------------------------- formatting


class _ContextFilter(logging.Filter):
    """Adds the bound correlation id to records that do not carry one."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "correlation_id", None) is None:
            correlation = _correlation.get()
            if correlation is not None:
                record.correlation_id = correlation
        return True


class _Redactor:
    """Replaces each known secret by :data:`REDACTED` (longest first, so no part of one survives)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text


def _timestamp(record: logging.LogRecord) -> str:
    when = datetime.datetime.fromtimestamp(record.created, tz=datetime.UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _fields(record: logging.LogRecord) -> dict[str, str]:
    out = {}
    for key in ("event", *ID_FIELDS):
        value = getattr(record, key, None)
        if value is not None:
            out[key] = str(value)
    return out


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time``, ``level``, ``logger``, ``message``, then ``event`` and the
    ids when known, then ``exception`` (the traceback) when there is one."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._redact = _Redactor(secrets)

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **_fields(record),
        }
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            data["exception"] = record.exc_text
        return self._redact(json.dumps(data, ensure_ascii=False, default=str))


class TextFormatter(logging.Formatter):
    """``TIME LEVEL LOGGER: message key=value ...`` for people reading a terminal."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._redact = _Redactor(secrets)

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_timestamp(record)} {record.levelname} {record.name}: {record.getMessage()}"
        extra = " ".join(f"{k}={v}" for k, v in _fields(record).items())
        if extra:
            line += " " + extra
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return self._redact(line)


# --------------------------------------------------------------------------- set-up


def resolve_level(config: LoggingConfig, env: Mapping[str, str] | None = None) -> int:
    """The level: ``OTEL_JUDGE_LOG_LEVEL`` when set, else ``service.logs.level``."""
    env = os.environ if env is None else env
    name = (env.get(LEVEL_ENV) or config.level).strip().lower()
    if name == "warn":
        name = "warning"
    if name not in LEVELS:
        raise ConfigError([f"{LEVEL_ENV}: {name!r} is not a log level (use one of {', '.join(LEVELS)})"])
    return int(logging.getLevelName(name.upper()))


def config_secrets(config: Config, env: Mapping[str, str] | None = None) -> list[str]:
    """Every secret the config names: judge API keys, exporter and alert header values, and the
    values of the environment variables that hold the receivers' API keys."""
    env = os.environ if env is None else env
    found: list[str] = []
    judge = config.judge
    for key in [judge.api_key, *(f.api_key for f in judge.fallbacks)]:
        if key is not None:
            found.append(key.get_secret_value())
    for exporter in (config.exporters.otlp, config.exporters.otlphttp):
        if exporter is not None:
            found += _header_secrets(exporter.headers)
    for alert in config.quality.alerts:
        found += _header_secrets(getattr(alert, "headers", None) or {})
    auth = config.receivers.otlp.auth
    if auth is not None:
        found += [env[name] for name in auth.keys_env if env.get(name)]
    return found


def _header_secrets(headers: Mapping[str, str]) -> list[str]:
    """Header values, and for ``Bearer X`` / ``Basic X`` also the credential ``X`` alone."""
    out = []
    for value in headers.values():
        out.append(value)
        scheme, _, credential = value.partition(" ")
        if credential and scheme.isalpha():
            out.append(credential.strip())
    return out


def configure_logging(
    config: LoggingConfig,
    *,
    env: Mapping[str, str] | None = None,
    stream: IO[str] | None = None,
    secrets: Iterable[str] = (),
) -> logging.Logger:
    """Send every log line (otel-judge's and its libraries') through one handler on ``stream``
    (stderr), formatted as configured; otel-judge logs at the configured level, libraries at
    WARNING and above. Returns the ``otel_judge`` logger. Idempotent: replaces its own handler."""
    level = resolve_level(config, env)
    _options.correlation_header = config.correlation_header.lower()
    formatter: logging.Formatter = JsonFormatter(secrets) if config.format == "json" else TextFormatter(secrets)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name("otel_judge")
    handler.setFormatter(formatter)
    handler.addFilter(_ContextFilter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "otel_judge"]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logger = logging.getLogger("otel_judge")
    logger.setLevel(level)
    return logger


# --------------------------------------------------------------------------- rate and state


class Throttle:
    """At most one line per ``interval`` seconds per key; :meth:`allow` says how many were held back."""

    def __init__(self, settings: Settings, interval: float = 60.0) -> None:
        self._clock = settings.clock
        self._interval = interval
        self._seen: dict[Any, tuple[int, float]] = {}

    def allow(self, key: Any) -> int | None:
        """``None`` to stay quiet; else the number of occurrences suppressed since the last line."""
        now = self._clock.monotonic()
        count, last = self._seen.get(key, (0, -self._interval))
        if now - last < self._interval:
            self._seen[key] = (count + 1, last)
            return None
        if len(self._seen) > 1000:  # keys are kinds of problems, not spans; bound it anyway
            self._seen.clear()
        self._seen[key] = (0, now)
        return count


class StateWatcher:
    """Logs the state changes that are visible only in the gauges: a judge model's circuit breaker
    (``otel_judge.judge.breaker.open``) and the judge queue (``otel_judge.judge.queue.depth`` at
    ``judge.queue_size``). :meth:`check` is called periodically (the pipeline's tick): one line per
    change seen, none while nothing changes."""

    def __init__(self, settings: Settings, judge_queue_size: int | None = None) -> None:
        self._settings = settings
        self._queue_size = judge_queue_size
        self._breakers: dict[str, bool] = {}
        self._queue_full = False

    def check(self) -> None:
        telemetry = self._settings.telemetry
        log = self._settings.logger
        for key, value in telemetry.series("otel_judge.judge.breaker.open").items():
            model = dict(key).get("model", "?")
            is_open = value > 0
            if is_open == self._breakers.get(model, False):
                continue
            self._breakers[model] = is_open
            if is_open:
                log.warning(
                    "judge %s: circuit open after repeated failures; its spans go out with status judge_error "
                    "(or to a fallback) until it answers again",
                    model,
                    extra=event("judge.circuit_open"),
                )
            else:
                log.info("judge %s: circuit closed, judging again", model, extra=event("judge.circuit_closed"))
        if self._queue_size:
            full = telemetry.value("otel_judge.judge.queue.depth") >= self._queue_size
            if full != self._queue_full:
                self._queue_full = full
                if full:
                    log.warning(
                        "judge queue full (%d judgments waiting): new spans go out with status skipped_overload",
                        self._queue_size,
                        extra=event("judge.queue_full"),
                    )
                else:
                    log.info("judge queue has room again", extra=event("judge.queue_recovered"))
