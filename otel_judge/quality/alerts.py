"""Regression alerts and where they go: a webhook (JSON or Slack), a log line, an OTLP log record, a metric.

An :class:`Alert` is what the detector says about one (score key, slice): the baseline and current
estimates with their n and confidence intervals, the p-value before and after the correction, the
effect, and when the change started. Every sink sees each *notification* once: ``firing`` when a
condition starts, ``resolved`` when it clears (the detector deduplicates in between).

A sink's ``deliver`` is called on the detector's path and never blocks or raises: the webhook and
OTLP sinks queue (bounded, :data:`QUEUE_SIZE`) and send from their own task, with retries for the
webhook. What cannot be delivered is counted in ``otel_judge.quality.alert.deliveries``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import json
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Protocol

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.logs.v1.logs_pb2 import SeverityNumber

from otel_judge import semconv
from otel_judge.component import Settings
from otel_judge.config import (
    AlertConfig,
    LogAlertConfig,
    MetricAlertConfig,
    OtlpAlertConfig,
    WebhookAlertConfig,
)
from otel_judge.otlp import LogsBatch, py_to_any_value, set_attribute
from otel_judge.quality.stats import Estimate

__all__ = [
    "QUEUE_SIZE",
    "Alert",
    "AlertSink",
    "LogAlertSink",
    "MetricAlertSink",
    "OtlpAlertSink",
    "WebhookAlertSink",
    "build_alert_sinks",
    "slack_payload",
]

#: Notifications a queued sink holds while its destination is slow or down; beyond it they are dropped.
QUEUE_SIZE = 100

ConsumeLogs = Callable[[LogsBatch], Awaitable[None]]


def iso(time_ns: int | None) -> str | None:
    """``2026-11-22T17:53:34.000Z`` (UTC, milliseconds) or None."""
    if time_ns is None:
        return None
    when = datetime.datetime.fromtimestamp(time_ns / 1e9, tz=datetime.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


@dataclass(frozen=True, slots=True)
class Alert:
    """One regression of one score key on one slice, as the detector found it.

    ``kind`` is ``window`` (the current window against the baseline window before it) or ``change``
    (a slice value changed on a route: the old value's scores before the change point against the new
    value's since). ``effect`` is the drop of the weighted mean as a fraction of the score scale,
    positive when quality got worse; ``drop`` the same in score units. ``p_value`` is the one-sided
    test's, ``p_adjusted`` after the correction over ``tests`` tests of the run."""

    kind: str
    evaluator: str
    score_key: str
    slice: Mapping[str, str]
    baseline: Estimate
    current: Estimate
    p_value: float
    p_adjusted: float
    effect: float
    drop: float
    started_at_ns: int
    detected_at_ns: int
    baseline_window: tuple[int, int]
    current_window: tuple[int, int]
    test: str = "welch"
    correction: str = "holm"
    alpha: float = 0.01
    tests: int = 1
    low: float | None = None
    high: float | None = None
    higher_is_better: bool = True
    change: Mapping[str, str] | None = None  # {"slice": name, "from": old value, "to": new value}
    status: str = "firing"
    resolved_at_ns: int | None = None
    resolution: str | None = None  # recovered | no_data | expired
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, tuple[tuple[str, str], ...]]:
        """What deduplication is keyed on: kind, score key, slice."""
        return self.kind, self.score_key, tuple(sorted(self.slice.items()))

    @property
    def id(self) -> str:
        """A stable id of the condition (the same for its firing and its resolved notification)."""
        raw = json.dumps([self.kind, self.score_key, sorted(self.slice.items()), self.started_at_ns])
        return hashlib.sha256(raw.encode()).hexdigest()[:16]

    def to_state(self) -> dict[str, Any]:
        """Every field as plain JSON, losslessly (nanosecond times, full estimates): what the store's
        alert state keeps so that another replica, or this one after a restart, rebuilds the same
        alert with :meth:`from_json` (same ``id``). Not the notification payload (:meth:`to_json`)."""
        return {
            "id": self.id,
            **{
                f.name: getattr(self, f.name)
                for f in fields(self)
                if f.name not in {"baseline", "current", "slice", "change", "extra"}
            },
            "slice": dict(self.slice),
            "change": dict(self.change) if self.change else None,
            "baseline": asdict(self.baseline),
            "current": asdict(self.current),
            "baseline_window": list(self.baseline_window),
            "current_window": list(self.current_window),
            "extra": dict(self.extra),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Alert:
        """The alert of a :meth:`to_state` dict (read back from the store's alert state)."""
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        values["baseline"] = Estimate(**data["baseline"])
        values["current"] = Estimate(**data["current"])
        values["baseline_window"] = tuple(data["baseline_window"])
        values["current_window"] = tuple(data["current_window"])
        values["slice"] = {str(k): str(v) for k, v in data["slice"].items()}
        values["extra"] = dict(data.get("extra") or {})
        return cls(**values)

    def resolved(self, now_ns: int, resolution: str) -> Alert:
        return replace(self, status="resolved", resolved_at_ns=now_ns, resolution=resolution)

    def slice_text(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in sorted(self.slice.items())) or "all traffic"

    def summary(self) -> str:
        """One human line: what dropped, by how much, with which evidence."""

        def fmt(e: Estimate) -> str:
            mean = "-" if e.mean is None else f"{e.mean:.3g}"
            return f"{mean} (n={e.n})"

        what = f"{self.score_key} on {self.slice_text()}"
        if self.change:
            what += f" after {self.change['slice']} changed {self.change['from']} -> {self.change['to']}"
        evidence = f"p={self.p_value:.2g} ({self.correction}: {self.p_adjusted:.2g})"
        if self.status == "firing":
            return (
                f"[FIRING] {what}: dropped from {fmt(self.baseline)} to {fmt(self.current)}, "
                f"effect {self.effect:.1%} of the scale, {evidence}"
            )
        return (
            f"[RESOLVED] {what}: {self.resolution}; last {fmt(self.current)} against {fmt(self.baseline)}, "
            f"effect {self.effect:.1%} of the scale, {evidence}"
        )

    def to_json(self) -> dict[str, Any]:
        """The webhook payload (format json), the OTLP record's body and the quality API's ``regression``."""

        def window(e: Estimate, bounds: tuple[int, int]) -> dict[str, Any]:
            return {**e.to_json(), "start": iso(bounds[0]), "end": iso(bounds[1])}

        return {
            "id": self.id,
            "status": self.status,
            "kind": self.kind,
            "evaluator": self.evaluator,
            "score_key": self.score_key,
            "slice": dict(self.slice),
            "change": dict(self.change) if self.change else None,
            "baseline": window(self.baseline, self.baseline_window),
            "current": window(self.current, self.current_window),
            "effect": self.effect,
            "drop": self.drop,
            "scale": {"low": self.low, "high": self.high, "higher_is_better": self.higher_is_better},
            "p_value": self.p_value,
            "p_adjusted": self.p_adjusted,
            "test": self.test,
            "correction": self.correction,
            "alpha": self.alpha,
            "tests": self.tests,
            "started_at": iso(self.started_at_ns),
            "detected_at": iso(self.detected_at_ns),
            "resolved_at": iso(self.resolved_at_ns),
            "resolution": self.resolution,
            "summary": self.summary(),
        }


def slack_payload(alert: Alert) -> dict[str, Any]:
    """A Slack incoming-webhook body: ``text`` (the fallback/notification line) and ``blocks``."""

    def fmt(e: Estimate) -> str:
        if e.mean is None:
            return f"n={e.n}"
        ci = "" if e.ci_low is None or e.ci_high is None else f" [{e.ci_low:.3g}, {e.ci_high:.3g}]"
        return f"{e.mean:.3g}{ci}, n={e.n}"

    emoji = ":red_circle:" if alert.status == "firing" else ":large_green_circle:"
    title = f"{emoji} *{alert.status.upper()}*: `{alert.score_key}` on {alert.slice_text()}"
    if alert.change:
        title += f" after `{alert.change['slice']}` changed `{alert.change['from']}` → `{alert.change['to']}`"
    fields = [
        {"type": "mrkdwn", "text": f"*Baseline*\n{fmt(alert.baseline)}"},
        {"type": "mrkdwn", "text": f"*Current*\n{fmt(alert.current)}"},
        {"type": "mrkdwn", "text": f"*Effect*\n{alert.effect:.1%} of the scale"},
        {"type": "mrkdwn", "text": f"*p-value*\n{alert.p_value:.2g} ({alert.correction} {alert.p_adjusted:.2g})"},
    ]
    context = f"{alert.kind} alert · started {iso(alert.started_at_ns)}"
    if alert.resolved_at_ns is not None:
        context += f" · resolved {iso(alert.resolved_at_ns)} ({alert.resolution})"
    return {
        "text": alert.summary(),
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": title}},
            {"type": "section", "fields": fields},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": context}]},
        ],
    }


class AlertSink(Protocol):
    """Where notifications go. ``deliver`` must not block or raise; I/O happens in the sink's own task."""

    name: str

    def deliver(self, alert: Alert) -> None: ...

    async def start(self) -> None: ...

    async def shutdown(self, deadline: float) -> None: ...


class _QueuedSink:
    """A bounded queue drained by one task; ``_send`` does the I/O of one alert."""

    name = "queued"

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._queue: deque[Alert] = deque()
        self._wakeup = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()

    def _count(self, outcome: str) -> None:
        self._settings.telemetry.add("otel_judge.quality.alert.deliveries", sink=self.name, outcome=outcome)

    def deliver(self, alert: Alert) -> None:
        if len(self._queue) >= QUEUE_SIZE or self._stop.is_set():
            self._count("dropped")
            return
        self._queue.append(alert)
        self._idle.clear()
        self._wakeup.set()

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"alert-sink-{self.name}")

    async def drained(self) -> None:
        """Wait until everything queued so far was delivered or given up (tests, shutdown)."""
        await self._idle.wait()

    async def _run(self) -> None:
        while True:
            while not self._queue:
                self._idle.set()
                if self._stop.is_set():
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
            alert = self._queue.popleft()
            try:
                await self._send(alert)
            except Exception:  # a sink's bug must not stop the others or the detector
                self._count("failed")
                self._settings.logger.exception("alert sink %s failed", self.name)

    async def _send(self, alert: Alert) -> None:
        raise NotImplementedError

    async def _close(self) -> None:
        """Release what the sink opened (after the task ended)."""

    async def shutdown(self, deadline: float) -> None:
        """Deliver what is queued until ``deadline``, then give up (counted as dropped)."""
        self._stop.set()
        self._wakeup.set()
        task, self._task = self._task, None
        if task is not None:
            remaining = deadline - self._settings.clock.monotonic()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(remaining, 0.0)):
                    await asyncio.shield(task)
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for _ in self._queue:
            self._count("dropped")
        self._queue.clear()
        self._idle.set()
        await self._close()


class WebhookAlertSink(_QueuedSink):
    """POSTs each notification as JSON (:meth:`Alert.to_json`) or as a Slack ``{text, blocks}`` body.

    A connection error, a timeout, 429 or 5xx is retried with capped exponential backoff and jitter
    (``retry_on_failure``; a ``Retry-After`` header wins) until ``max_elapsed_time``; other statuses
    are not retried. Shutdown interrupts the wait."""

    name = "webhook"

    def __init__(self, config: WebhookAlertConfig, settings: Settings, *, rng: random.Random | None = None) -> None:
        super().__init__(settings)
        self.config = config
        self._rng = rng or random.Random()
        self._session: Any = None
        self.attempts = 0

    def payload(self, alert: Alert) -> dict[str, Any]:
        return slack_payload(alert) if self.config.format == "slack" else alert.to_json()

    async def _post(self, body: bytes) -> tuple[int | None, str | None, str]:
        """One attempt: (status or None on a connection error/timeout, Retry-After, error text)."""
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession()
        headers = {"Content-Type": "application/json", "User-Agent": "otel-judge", **self.config.headers}
        self.attempts += 1
        try:
            async with self._session.post(
                self.config.url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=self.config.timeout)
            ) as resp:
                await resp.read()
                return resp.status, resp.headers.get("Retry-After"), f"HTTP {resp.status}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            return None, None, f"{type(exc).__name__}: {exc}"

    async def _send(self, alert: Alert) -> None:
        from otel_judge.exporter import parse_retry_after

        body = json.dumps(self.payload(alert)).encode()
        retry = self.config.retry_on_failure
        clock = self._settings.clock
        started = clock.monotonic()
        interval = retry.initial_interval
        while True:
            status, retry_after, error = await self._post(body)
            if status is not None and 200 <= status < 300:
                self._count("delivered")
                return
            retryable = status is None or status == 429 or status >= 500
            wait = interval * (1 + retry.randomization_factor * (2 * self._rng.random() - 1))
            hint = parse_retry_after(retry_after, clock.time_ns() / 1e9)
            if hint is not None:
                wait = hint
            elapsed = clock.monotonic() - started
            limit = retry.max_elapsed_time
            if not retryable or not retry.enabled or (limit and elapsed + wait > limit) or self._stop.is_set():
                self._count("failed")
                self._settings.logger.warning(
                    "alert webhook %s: giving up on alert %s: %s", self.config.url, alert.id, error
                )
                return
            self._count("retried")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._stop.wait()
            interval = min(interval * retry.multiplier, retry.max_interval)

    async def _close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class OtlpAlertSink(_QueuedSink):
    """Each notification as an OTLP log record (event ``otel_judge.quality.alert``), handed to
    ``consume_logs`` (the pipeline passes its exporter's): body = the alert object, attributes = the
    fields one filters on (status, kind, p-value, effect, gen_ai.evaluation.name, one per slice)."""

    name = "otlp"

    def __init__(self, consume_logs: ConsumeLogs, settings: Settings) -> None:
        super().__init__(settings)
        self._consume_logs = consume_logs

    @staticmethod
    def request(alert: Alert, now_ns: int) -> ExportLogsServiceRequest:
        request = ExportLogsServiceRequest()
        resource_logs = request.resource_logs.add()
        set_attribute(resource_logs.resource.attributes, semconv.SERVICE_NAME, "otel-judge")
        scope_logs = resource_logs.scope_logs.add()
        scope_logs.scope.name = semconv.SCOPE_NAME
        record = scope_logs.log_records.add()
        record.time_unix_nano = alert.resolved_at_ns or alert.detected_at_ns
        record.observed_time_unix_nano = now_ns
        record.event_name = semconv.EVENT_QUALITY_ALERT
        firing = alert.status == "firing"
        record.severity_number = SeverityNumber.SEVERITY_NUMBER_WARN if firing else SeverityNumber.SEVERITY_NUMBER_INFO
        record.severity_text = "WARN" if firing else "INFO"
        py_to_any_value(alert.to_json(), record.body)
        attrs = record.attributes
        set_attribute(attrs, semconv.GEN_AI_EVALUATION_NAME, alert.score_key)
        set_attribute(attrs, semconv.OTEL_JUDGE_ALERT_ID, alert.id)
        set_attribute(attrs, semconv.OTEL_JUDGE_ALERT_STATUS, alert.status)
        set_attribute(attrs, semconv.OTEL_JUDGE_ALERT_KIND, alert.kind)
        set_attribute(attrs, semconv.OTEL_JUDGE_ALERT_P_VALUE, float(alert.p_value))
        set_attribute(attrs, semconv.OTEL_JUDGE_ALERT_EFFECT, float(alert.effect))
        for name, value in sorted(alert.slice.items()):
            set_attribute(attrs, semconv.OTEL_JUDGE_SLICE_PREFIX + name, value)
        return request

    async def _send(self, alert: Alert) -> None:
        batch = LogsBatch(self.request(alert, self._settings.clock.time_ns()))
        try:
            await self._consume_logs(batch)
        except Exception as exc:  # the exporter pushes back or is shutting down: the alert is lost, counted
            self._count("failed")
            self._settings.logger.warning("alert %s: OTLP log record not accepted: %s", alert.id, exc)
            return
        self._count("delivered")


class LogAlertSink:
    """One structured log line per notification: WARNING when firing, INFO when resolved. The message
    is the summary followed by the alert as JSON; the alert object is also in ``extra["alert"]``."""

    name = "log"

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def deliver(self, alert: Alert) -> None:
        payload = alert.to_json()
        level = logging.WARNING if alert.status == "firing" else logging.INFO
        self._settings.logger.log(
            level,
            "quality alert %s %s",
            alert.summary(),
            json.dumps(payload, sort_keys=True),
            extra={"alert": payload, "alert_id": alert.id},
        )
        self._settings.telemetry.add("otel_judge.quality.alert.deliveries", sink=self.name, outcome="delivered")

    async def start(self) -> None:
        return None

    async def shutdown(self, deadline: float) -> None:
        return None


class MetricAlertSink:
    """The gauge ``otel_judge.quality.regression``: 1 while any alert of (score key, slice) fires, else 0.
    Labels: ``gen_ai.evaluation.name`` and one label per slice of the alert."""

    name = "metric"

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._firing: dict[tuple[tuple[str, str], ...], set[str]] = {}

    @staticmethod
    def labels(alert: Alert) -> dict[str, str]:
        return {semconv.GEN_AI_EVALUATION_NAME: alert.score_key, **dict(alert.slice)}

    def deliver(self, alert: Alert) -> None:
        self.follow(alert)
        self._settings.telemetry.add("otel_judge.quality.alert.deliveries", sink=self.name, outcome="delivered")

    def follow(self, alert: Alert) -> None:
        """Set the gauge for a state change this replica did not notify (another replica did, or one
        before a restart): the detector calls ``follow`` on the sinks that have it, so every replica's
        gauge shows the shared state."""
        labels = self.labels(alert)
        key = tuple(sorted(labels.items()))
        kinds = self._firing.setdefault(key, set())  # a window and a change alert may share a slice
        if alert.status == "firing":
            kinds.add(alert.kind)
        else:
            kinds.discard(alert.kind)
        self._settings.telemetry.set("otel_judge.quality.regression", 1.0 if kinds else 0.0, **labels)

    async def start(self) -> None:
        return None

    async def shutdown(self, deadline: float) -> None:
        return None


def build_alert_sinks(
    configs: Sequence[AlertConfig], settings: Settings, consume_logs: ConsumeLogs | None = None
) -> list[AlertSink]:
    """The sinks of ``quality.alerts``. An ``otlp`` sink needs ``consume_logs`` (the pipeline's exporter)."""
    sinks: list[AlertSink] = []
    for config in configs:
        if isinstance(config, WebhookAlertConfig):
            sinks.append(WebhookAlertSink(config, settings))
        elif isinstance(config, LogAlertConfig):
            sinks.append(LogAlertSink(settings))
        elif isinstance(config, OtlpAlertConfig):
            if consume_logs is None:
                raise ValueError("an otlp alert sink needs the pipeline's exporter (consume_logs)")
            sinks.append(OtlpAlertSink(consume_logs, settings))
        elif isinstance(config, MetricAlertConfig):
            sinks.append(MetricAlertSink(settings))
    return sinks
