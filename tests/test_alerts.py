"""Alert sinks: webhook (JSON and Slack) against a local HTTP server, log line, OTLP log record, metric."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from aiohttp import web

from otel_judge import semconv
from otel_judge.component import Settings
from otel_judge.config import OtlpExporterConfig, WebhookAlertConfig, validate_config
from otel_judge.exporter import OtlpGrpcExporter
from otel_judge.otlp import any_value_to_py, attributes_to_dict
from otel_judge.quality.alerts import (
    QUEUE_SIZE,
    Alert,
    LogAlertSink,
    MetricAlertSink,
    OtlpAlertSink,
    WebhookAlertSink,
    build_alert_sinks,
)
from otel_judge.quality.stats import estimate
from otel_judge.testing import SpanSink
from tests.quality_data import HOUR, NOW

RETRY_FAST = {"initial_interval": "10ms", "max_interval": "20ms", "max_elapsed_time": "5s"}


def make_alert(**changes: Any) -> Alert:
    """A firing window alert: quality on route /support dropped from about 70 to 60."""
    alert = Alert(
        kind="window",
        evaluator="quality",
        score_key="quality",
        slice={"route": "/support"},
        baseline=estimate([70.0, 72.0, 68.0, 71.0]),
        current=estimate([60.0, 61.0, 59.0, 58.0]),
        p_value=0.0004,
        p_adjusted=0.0012,
        effect=0.1,
        drop=10.0,
        started_at_ns=NOW - HOUR,
        detected_at_ns=NOW,
        baseline_window=(NOW - 7 * HOUR, NOW - HOUR),
        current_window=(NOW - HOUR, NOW),
        low=1.0,
        high=100.0,
    )
    return replace(alert, **changes)


@dataclass
class Hook:
    """A webhook receiver on 127.0.0.1: records each request; answers the scripted statuses in order
    (then 200); ``hold`` keeps requests open until released."""

    statuses: list[int] = field(default_factory=list)
    headers: dict[int, dict[str, str]] = field(default_factory=dict)
    hold: bool = False
    requests: list[tuple[dict[str, str], Any]] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((dict(request.headers), await request.json()))
        self.arrived.set()
        if self.hold:
            await self.release.wait()
        index = len(self.requests) - 1
        status = self.statuses[index] if index < len(self.statuses) else 200
        return web.Response(status=status, text="x", headers=self.headers.get(index, {}))


@pytest.fixture
async def hook() -> AsyncIterator[Hook]:
    receiver = Hook()
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    receiver.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield receiver
    receiver.release.set()
    await runner.cleanup()


def webhook(hook: Hook, settings: Settings, **config: Any) -> WebhookAlertSink:
    data = {"type": "webhook", "url": hook.url, "retry_on_failure": RETRY_FAST, **config}
    return WebhookAlertSink(WebhookAlertConfig.model_validate(data), settings)


async def test_webhook_posts_the_json_alert_and_retries_after_a_500(hook: Hook) -> None:
    """A 500 is retried; the delivered body has the documented fields: evaluator, slice, baseline and
    current (n, mean, ci_low, ci_high), p_value, started_at, status, kind, effect, score_key."""
    hook.statuses = [500]
    settings = Settings()
    sink = webhook(hook, settings, headers={"Authorization": "Bearer t0ken"})
    await sink.start()

    sink.deliver(make_alert())
    await asyncio.wait_for(sink.drained(), 10)
    await sink.shutdown(settings.clock.monotonic() + 1)

    assert len(hook.requests) == 2 and hook.requests[0][1] == hook.requests[1][1]
    headers, body = hook.requests[1]
    assert headers["Authorization"] == "Bearer t0ken" and headers["Content-Type"] == "application/json"
    assert body["evaluator"] == "quality" and body["score_key"] == "quality"
    assert body["slice"] == {"route": "/support"}
    assert (body["status"], body["kind"], body["effect"], body["p_value"]) == ("firing", "window", 0.1, 0.0004)
    for window, mean in (("baseline", 70.25), ("current", 59.5)):
        assert body[window]["n"] == 4 and body[window]["mean"] == pytest.approx(mean)
        assert body[window]["ci_low"] < mean < body[window]["ci_high"]
    assert body["started_at"] == "2023-11-14T21:30:00.000Z"
    assert body["change"] is None and body["resolved_at"] is None
    assert settings.telemetry.value("otel_judge.quality.alert.deliveries", sink="webhook", outcome="retried") == 1
    assert settings.telemetry.value("otel_judge.quality.alert.deliveries", sink="webhook", outcome="delivered") == 1


async def test_webhook_slack_format_has_text_and_blocks(hook: Hook) -> None:
    """format: slack sends {text, blocks}: the summary line as text; blocks name the slice, the change,
    both windows' estimates and the p-value."""
    settings = Settings()
    sink = webhook(hook, settings, format="slack")
    await sink.start()
    alert = make_alert(
        kind="change",
        slice={"route": "/support", "prompt_version": "v2"},
        change={"slice": "prompt_version", "from": "v1", "to": "v2"},
    )

    sink.deliver(alert)
    await asyncio.wait_for(sink.drained(), 10)
    await sink.shutdown(settings.clock.monotonic() + 1)

    (_, body), *_ = hook.requests
    assert set(body) == {"text", "blocks"}
    assert body["text"].startswith("[FIRING] quality on prompt_version=v2, route=/support after prompt_version")
    rendered = json.dumps(body["blocks"])
    for expected in ("`v1` \\u2192 `v2`", "*Baseline*", "n=4", "*Current*", "p-value", "change alert"):
        assert expected in rendered


@pytest.mark.parametrize(
    ("statuses", "headers", "requests", "outcome"),
    [
        ([503, 503], {0: {"Retry-After": "0"}}, 3, "delivered"),
        ([429], {}, 2, "delivered"),
        ([400], {}, 1, "failed"),
        ([404, 500], {}, 1, "failed"),
    ],
    ids=["503-retry-after", "429", "400-not-retried", "404-not-retried"],
)
async def test_webhook_retries_only_retryable_statuses(
    hook: Hook, statuses: list[int], headers: dict[int, dict[str, str]], requests: int, outcome: str
) -> None:
    """429 and 5xx are retried (a Retry-After hint is honoured); other 4xx are given up at once."""
    hook.statuses, hook.headers = statuses, headers
    settings = Settings()
    sink = webhook(hook, settings)
    await sink.start()

    sink.deliver(make_alert())
    await asyncio.wait_for(sink.drained(), 10)
    await sink.shutdown(settings.clock.monotonic() + 1)

    assert len(hook.requests) == requests
    assert settings.telemetry.value("otel_judge.quality.alert.deliveries", sink="webhook", outcome=outcome) == 1


async def test_webhook_never_blocks_the_caller_and_bounds_its_queue(hook: Hook) -> None:
    """While the receiver hangs, deliver() still returns at once; past QUEUE_SIZE waiting alerts the
    rest are dropped and counted; shutdown gives up on the queue by its deadline."""
    hook.hold = True
    settings = Settings()
    sink = webhook(hook, settings, timeout="30s")
    await sink.start()
    sink.deliver(make_alert())
    await asyncio.wait_for(hook.arrived.wait(), 10)  # the first alert is in flight, held by the receiver

    for i in range(QUEUE_SIZE + 5):
        sink.deliver(make_alert(started_at_ns=NOW + i))
    dropped = settings.telemetry.value("otel_judge.quality.alert.deliveries", sink="webhook", outcome="dropped")
    await asyncio.wait_for(sink.shutdown(settings.clock.monotonic() + 0.2), 5)

    assert dropped == 5
    total = settings.telemetry.value("otel_judge.quality.alert.deliveries", sink="webhook", outcome="dropped")
    assert total == 5 + QUEUE_SIZE


def test_log_sink_writes_one_structured_line(caplog: pytest.LogCaptureFixture) -> None:
    """One WARNING line per firing alert (INFO when resolved) with the summary and the alert as JSON;
    the alert object is on the record too."""
    settings = Settings(logger=logging.getLogger("otel_judge.test_alerts"))
    sink = LogAlertSink(settings)

    with caplog.at_level(logging.INFO, logger="otel_judge.test_alerts"):
        sink.deliver(make_alert())
        sink.deliver(make_alert().resolved(NOW + HOUR, "recovered"))

    firing, resolved = caplog.records
    assert (firing.levelno, resolved.levelno) == (logging.WARNING, logging.INFO)
    assert "[FIRING] quality on route=/support: dropped from 70.2 (n=4) to 59.5 (n=4)" in firing.getMessage()
    message = firing.getMessage()
    payload = json.loads(message[message.index(" {") + 1 :])
    assert payload["slice"] == {"route": "/support"}
    assert resolved.alert["status"] == "resolved" and resolved.alert["resolution"] == "recovered"  # type: ignore[attr-defined]


async def test_otlp_sink_exports_an_alert_log_record_through_the_exporter(sink: SpanSink) -> None:
    """The otlp sink hands a log record (event otel_judge.quality.alert) to the exporter's consume_logs;
    it reaches the downstream with the alert as body and filterable attributes."""
    settings = Settings()
    exporter = OtlpGrpcExporter(
        OtlpExporterConfig.model_validate({"endpoint": sink.endpoint, "tls": {"insecure": True}}), settings
    )
    await exporter.start()
    alerts = OtlpAlertSink(exporter.consume_logs, settings)
    await alerts.start()

    alerts.deliver(make_alert())
    await asyncio.wait_for(alerts.drained(), 10)
    await sink.wait_for(lambda: bool(sink.log_records()))
    await alerts.shutdown(settings.clock.monotonic() + 1)
    await exporter.shutdown(settings.clock.monotonic() + 1)

    (record,) = sink.log_records()
    attrs = attributes_to_dict(record.attributes)
    body = any_value_to_py(record.body)
    assert record.event_name == semconv.EVENT_QUALITY_ALERT
    assert record.severity_text == "WARN" and record.time_unix_nano == NOW
    assert attrs[semconv.GEN_AI_EVALUATION_NAME] == "quality"
    assert attrs["otel_judge.alert.status"] == "firing" and attrs["otel_judge.slice.route"] == "/support"
    assert body["slice"] == {"route": "/support"} and body["current"]["n"] == 4


def test_metric_sink_sets_the_regression_gauge_per_evaluator_and_slice() -> None:
    """1 while an alert of (evaluator, slice) fires; a window and a change alert on one slice keep it
    at 1 until both resolved; labels are gen_ai.evaluation.name plus the slice."""
    settings = Settings()
    sink = MetricAlertSink(settings)
    labels = {"gen_ai.evaluation.name": "quality", "route": "/support"}
    window, change = make_alert(), make_alert(kind="change")

    sink.deliver(window)
    sink.deliver(change)
    both = settings.telemetry.value("otel_judge.quality.regression", **labels)
    sink.deliver(window.resolved(NOW, "recovered"))
    one = settings.telemetry.value("otel_judge.quality.regression", **labels)
    sink.deliver(change.resolved(NOW, "recovered"))
    none = settings.telemetry.value("otel_judge.quality.regression", **labels)

    assert (both, one, none) == (1, 1, 0)


def test_sinks_are_built_from_the_config() -> None:
    """quality.alerts builds one sink per entry; otlp needs the exporter's consume_logs."""
    config = validate_config(
        {
            "exporters": {"debug": {}},
            "quality": {"alerts": [{"type": "webhook", "url": "http://127.0.0.1:9/x"}, {"type": "log"}]},
        }
    )
    with_otlp = validate_config({"exporters": {"debug": {}}, "quality": {"alerts": [{"type": "otlp"}]}})

    sinks = build_alert_sinks(config.quality.alerts, Settings())

    assert [s.name for s in sinks] == ["webhook", "log"]
    with pytest.raises(ValueError, match="consume_logs"):
        build_alert_sinks(with_otlp.quality.alerts, Settings())
