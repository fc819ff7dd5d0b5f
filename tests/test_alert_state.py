"""Alert state in the store: replicas sharing one store notify each transition once, and a restarted
detector neither re-fires an alert that still holds nor forgets one that cleared while it was down.

Real stores on both backends (a SQLite file, a PostgreSQL schema); replicas are separate
``QualityStore`` instances on the same database, each with its own detector."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from otel_judge.component import Settings
from otel_judge.config import StoreConfig
from otel_judge.quality.alerts import Alert, MetricAlertSink
from otel_judge.quality.detector import AlertState, MemoryRows, RegressionDetector, analyse
from otel_judge.quality.stats import Estimate
from otel_judge.quality.store import QualityStore
from tests.quality_data import HOUR, NOW, S, as_rows, stream
from tests.quality_support import BACKENDS, store_config
from tests.test_detector import RecordingSink, drop_records, quality_config

backends = pytest.mark.parametrize("backend", BACKENDS)
SLICES = {"model": "m1", "route": "/support"}
KEY = ("window", "quality", (("route", "/support"),))
LATER = NOW + HOUR + 60 * S  # a good hour after the drop


@asynccontextmanager
async def replicas(backend: str, tmp_path: Path, count: int) -> AsyncIterator[tuple[StoreConfig, list[QualityStore]]]:
    """``count`` started stores on one fresh database."""
    async with store_config(backend, tmp_path) as config:
        stores = [QualityStore(config, Settings()) for _ in range(count)]
        try:
            for store in stores:
                await store.start(retention_task=False)
            yield config, stores
        finally:
            for store in stores:
                await store.shutdown(0)


def state(n: int, started_ns: int = NOW - HOUR) -> dict[str, Any]:
    """An alert's stored state; ``n`` (its baseline n) and ``started_ns`` tell episodes apart."""
    est = Estimate(n, 60.0, 55.0, 65.0, 0.5, float(n), 10.0)
    return Alert(
        "window", "quality", "quality", {"route": "/support"}, est, est, 1e-5, 1e-4, 0.1, 10.0,
        started_ns, NOW, (NOW - 7 * HOUR, NOW - HOUR), (NOW - HOUR, NOW),
    ).to_state()  # fmt: skip


@backends
async def test_claims_are_compare_and_set_transitions(backend: str, tmp_path: Path) -> None:
    """claim_firing inserts or moves resolved -> firing, claim_resolved moves firing -> resolved of the
    same episode (alert id); a claim of a transition already made, or of another episode, is False.
    firing_alerts lists the firing conditions with the claimed alert."""
    first, second = state(1), state(2, started_ns=NOW)
    async with replicas(backend, tmp_path, 2) as (_, (a, b)):
        steps = [
            (a.claim_firing(KEY, first, NOW), True),
            (b.claim_firing(KEY, first, NOW + 1), False),  # already firing
            (b.claim_resolved(KEY, second, NOW + 2), False),  # another episode
            (b.claim_resolved(KEY, {**first, "status": "resolved"}, NOW + 3), True),
            (a.claim_resolved(KEY, first, NOW + 4), False),  # already resolved
            (a.claim_firing(KEY, second, NOW + 5), True),  # a new episode
        ]
        outcomes = [await claim for claim, _ in steps]
        firing = await b.firing_alerts()

    assert outcomes == [expected for _, expected in steps]
    assert list(firing) == [KEY]
    assert firing[KEY]["id"] == second["id"] and Alert.from_json(firing[KEY]).id == second["id"]


@backends
async def test_concurrent_claims_of_one_transition_have_one_winner(backend: str, tmp_path: Path) -> None:
    """Four replicas claim the same new condition at once, then its resolution at once: exactly one
    wins each."""
    alert = state(3)
    async with replicas(backend, tmp_path, 4) as (_, stores):
        fired = await asyncio.gather(*(s.claim_firing(KEY, alert, NOW) for s in stores))
        resolved = await asyncio.gather(*(s.claim_resolved(KEY, alert, NOW + S) for s in stores))

    assert sorted(fired) == [False, False, False, True]
    assert sorted(resolved) == [False, False, False, True]


def test_the_alert_state_round_trips_with_its_id() -> None:
    """Alert.from_json(alert.to_state()) is the same alert (same id, nanosecond times, estimates)."""
    rows = as_rows(drop_records(np.random.default_rng(5), 300, 70, 55, slices=SLICES))
    config = quality_config()
    alerts = [r.alert for r in analyse(rows, NOW, config.regression, list(config.slices)).results]

    assert alerts and all(Alert.from_json(a.to_state()) == a for a in alerts)
    assert all(Alert.from_json(a.resolved(NOW, "recovered").to_state()).id == a.id for a in alerts)


@backends
async def test_two_replicas_notify_each_firing_and_resolution_once(backend: str, tmp_path: Path) -> None:
    """Two detectors on one store (two replicas): a drop notifies firing once between them, and the
    recovery resolves once, with the same alert ids; both show the alert while it fires (the quality
    API's regression) and neither after; each replica's regression gauge follows the shared state."""
    rng = np.random.default_rng(31)
    async with replicas(backend, tmp_path, 2) as (_, (a, b)):
        await a.insert(drop_records(rng, 300, 70, 55, slices=SLICES))
        sinks, settings = [RecordingSink(), RecordingSink()], [Settings(), Settings()]
        detectors = [
            RegressionDetector(quality_config(), store, s, [sink, MetricAlertSink(s)])
            for store, s, sink in zip((a, b), settings, sinks, strict=True)
        ]
        first = await asyncio.gather(detectors[0].run_once(NOW), detectors[1].run_once(NOW))
        second = await asyncio.gather(detectors[0].run_once(NOW + 30 * S), detectors[1].run_once(NOW + 40 * S))
        while_firing = [d.regression_for("quality", {"route": "/support"}) for d in detectors]
        gauges_firing = [s.telemetry.value("otel_judge.quality.regression", **_labels()) for s in settings]
        await b.insert(stream(rng, 300, NOW + 60 * S, LATER, 70, slices=SLICES))
        resolved_b = await detectors[1].run_once(LATER)
        resolved_a = await detectors[0].run_once(LATER + 30 * S)
        gauges_after = [s.telemetry.value("otel_judge.quality.regression", **_labels()) for s in settings]

    fired = [x for run in first for x in run]
    delivered = [x for sink in sinks for x in sink.alerts]
    assert sorted(x.status for x in fired) == ["firing"] * 3
    assert second == [[], []]
    assert all(r is not None and r["status"] == "firing" for r in while_firing)
    assert gauges_firing == [1, 1]
    assert resolved_a == [] and sorted(x.resolution or "" for x in resolved_b) == ["recovered"] * 3
    assert sorted(x.status for x in delivered) == ["firing"] * 3 + ["resolved"] * 3
    assert {x.id for x in resolved_b} == {x.id for x in fired}
    assert all(d.open_alerts == [] for d in detectors)
    assert gauges_after == [0, 0]
    assert (
        sum(s.telemetry.value("otel_judge.quality.alerts", kind="window", status="firing") or 0 for s in settings) == 3
    )


def _labels() -> dict[str, str]:
    return {"gen_ai.evaluation.name": "quality", "route": "/support"}


@pytest.mark.parametrize(
    ("case", "after_restart", "expected"),
    [
        ("still-holds", NOW + 60 * S, []),
        ("recovered-while-down", LATER, ["recovered"] * 3),
        ("went-quiet-while-down", NOW + 8 * HOUR, ["no_data"] * 3),
    ],
    ids=["still-holds", "recovered-while-down", "went-quiet-while-down"],
)
@backends
async def test_a_restarted_detector_keeps_the_alert_state(
    backend: str, tmp_path: Path, case: str, after_restart: int, expected: list[str]
) -> None:
    """A detector fires, its process stops; a new one on the same store does not fire again while the
    drop holds (it shows the alert, with the id that was notified), and resolves it once when it
    recovered, or its slice went quiet, while it was down."""
    rng = np.random.default_rng(37)
    async with store_config(backend, tmp_path) as config:
        before = QualityStore(config, Settings())
        await before.start(retention_task=False)
        await before.insert(drop_records(rng, 300, 70, 55, slices=SLICES))
        if case == "recovered-while-down":
            await before.insert(stream(rng, 300, NOW + 60 * S, LATER, 70, slices=SLICES))
        fired = await RegressionDetector(quality_config(), before, Settings()).run_once(NOW)
        await before.shutdown(0)

        after = QualityStore(config, Settings())
        await after.start(retention_task=False)
        try:
            sink = RecordingSink()
            restarted = RegressionDetector(quality_config(), after, Settings(), [sink])
            notified = await restarted.run_once(after_restart)
            again = await restarted.run_once(after_restart + 30 * S)
            answer = restarted.regression_for("quality", {"route": "/support"})
            firing_left = await after.firing_alerts()
        finally:
            await after.shutdown(0)

    assert len(fired) == 3
    assert sorted(a.resolution or "" for a in notified) == expected and again == []
    assert sink.alerts == notified
    if expected:
        assert {a.id for a in notified} == {a.id for a in fired}
        assert answer is None and firing_left == {}
    else:
        assert answer is not None and answer["status"] == "firing"
        assert answer["id"] in {a.id for a in fired}
        assert len(firing_left) == 3


async def test_rows_in_memory_keep_the_state_in_memory() -> None:
    """The report's detector reads MemoryRows, which keep no alert state: it notifies as before."""
    rows = as_rows(drop_records(np.random.default_rng(41), 300, 70, 55, slices=SLICES))
    detector = RegressionDetector(quality_config(), MemoryRows(rows), Settings())

    fired = await detector.run_once(NOW)

    assert not isinstance(MemoryRows(rows), AlertState)
    assert len(fired) == 3
