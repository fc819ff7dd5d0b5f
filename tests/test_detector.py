"""The regression detector on synthetic score streams: drops, null changes, slice-value changes, alert state."""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from scipy import stats

from otel_judge.component import FakeClock, Settings
from otel_judge.config import QualityConfig, StoreConfig
from otel_judge.otlp import attributes_to_dict
from otel_judge.quality.alerts import Alert, MetricAlertSink
from otel_judge.quality.detector import RegressionDetector, analyse
from otel_judge.quality.model import StoredEvaluation
from otel_judge.quality.stats import estimate, estimate_arrays
from otel_judge.quality.store import QualityStore
from otel_judge.testing import SpanSink
from tests.conftest import pipeline_config, running
from tests.quality_data import HOUR, NOW, S, as_rows, quality_store, stream

__all__ = ["quality_store"]  # the fixture, imported for pytest

SLICES = {"model": "gen_ai.response.model", "route": "root.http.route", "prompt_version": "gen_ai.prompt.version"}


def quality_config(**regression: Any) -> QualityConfig:
    """Windows short enough to build in a test: the last hour against the six before it."""
    settings = {"current_window": "1h", "baseline_window": "6h", "min_n": 30, **regression}
    return QualityConfig.model_validate({"slices": SLICES, "regression": settings})


def drop_records(rng: np.random.Generator, n: int, before: float, after: float, **kw: Any) -> list[Any]:
    """``n`` scores in the baseline window around ``before`` and ``n`` in the current one around ``after``."""
    return stream(rng, n, NOW - 7 * HOUR, NOW - HOUR, before, **kw) + stream(rng, n, NOW - HOUR, NOW, after, **kw)


def by_slice(alerts: list[Alert]) -> dict[tuple[str, tuple[tuple[str, str], ...]], Alert]:
    return {(a.kind, tuple(sorted(a.slice.items()))): a for a in alerts}


@pytest.mark.parametrize(
    ("test", "probability"),
    [("welch", None), ("mannwhitney", None), ("welch", 0.25)],
    ids=["welch", "mann-whitney", "welch-sampled-25pct"],
)
async def test_a_true_drop_of_ten_points_at_n300_is_detected(
    quality_store: QualityStore, test: str, probability: float | None
) -> None:
    """70 -> 60 on a 1..100 scale, 300 scores per window: an alert for all traffic and for each slice
    alone, with n, weighted means and CIs of both windows, an effect of about 10% and a small p."""
    rng = np.random.default_rng(7)
    slices = {"model": "m1", "route": "/support"}
    await quality_store.insert(drop_records(rng, 300, 70, 60, slices=slices, probability=probability))
    detector = RegressionDetector(quality_config(test=test), quality_store, Settings())

    alerts = await detector.run_once(NOW)

    found = by_slice(alerts)
    assert set(found) == {
        ("window", ()),
        ("window", (("model", "m1"),)),
        ("window", (("route", "/support"),)),
    }
    overall = found[("window", ())]
    assert (overall.status, overall.evaluator, overall.score_key) == ("firing", "quality", "quality")
    assert (overall.baseline.n, overall.current.n) == (300, 300)
    assert overall.baseline.mean == pytest.approx(70, abs=2.5)
    assert overall.current.mean == pytest.approx(60, abs=2.5)
    assert overall.current.ci_low is not None and overall.current.ci_high is not None
    assert overall.current.ci_low < overall.current.mean < overall.current.ci_high
    assert overall.effect == pytest.approx(10 / 99, abs=0.035)
    assert overall.p_adjusted <= 0.01 and overall.p_value <= overall.p_adjusted
    assert overall.tests == 3 and overall.test == test
    assert overall.started_at_ns == NOW - HOUR


@pytest.mark.parametrize(
    ("before", "after", "n", "min_effect", "expected"),
    [
        (70, 60, 300, 0.05, True),
        (70, 70, 300, 0.05, False),
        (70, 67, 3000, 0.05, False),  # significant, but smaller than min_effect
        (70, 67, 3000, 0.02, True),
        (70, 64, 20, 0.05, False),  # below min_n
        (60, 70, 300, 0.0, False),  # an improvement is no regression
    ],
    ids=["drop", "null", "tiny-drop-gated", "tiny-drop-allowed", "too-few", "improvement"],
)
def test_alerting_needs_n_effect_and_significance(
    before: float, after: float, n: int, min_effect: float, expected: bool
) -> None:
    """An alert needs min_n on both sides, a drop of at least min_effect of the scale, and significance."""
    rng = np.random.default_rng(11)
    rows = as_rows(drop_records(rng, n, before, after, sd=10))
    config = quality_config(min_effect=min_effect, min_n=30)

    analysis = analyse(rows, NOW, config.regression, list(config.slices))

    assert any(r.regressed for r in analysis.results) is expected


@functools.cache
def null_streams(streams: int = 200, n: int = 300) -> list[list[StoredEvaluation]]:
    """``streams`` independent null streams (seeded): no change, two models on two routes, ``n`` scores
    per window, half of them sampled at 20% (weight 5). Generated with numpy, built once per session."""
    rng = np.random.default_rng(2026)
    shape = (streams, 2 * n)
    values = np.clip(rng.normal(70, 15, shape), 1, 100)
    times = np.concatenate(
        [rng.integers(NOW - 7 * HOUR, NOW - HOUR, (streams, n)), rng.integers(NOW - HOUR, NOW, (streams, n))], axis=1
    )
    combo = rng.integers(0, 4, shape)
    probability = np.where(rng.random(shape) < 0.5, 0.2, 1.0)
    slices = [{"model": f"m{c % 2}", "route": f"/r{c // 2}"} for c in range(4)]
    return [
        [
            StoredEvaluation(
                f"s{s}-{i}", "quality", "quality", int(times[s, i]), "", "", "evaluated", float(values[s, i]),
                None, None, 1.0, 100.0, float(probability[s, i]), slices[combo[s, i]],
            )
            for i in range(2 * n)
        ]
        for s in range(streams)
    ]  # fmt: skip


def false_alarm_rate(config: QualityConfig) -> float:
    """The share of the null streams on which a run at NOW alerts on anything."""
    streams = null_streams()
    alarms = sum(
        any(r.regressed for r in analyse(rows, NOW, config.regression, list(config.slices)).results) for rows in streams
    )
    return alarms / len(streams)


def test_null_streams_false_alarm_rate_is_below_alpha() -> None:
    """200 seeded null streams of 300 scores per window, tested as all traffic with the default alpha
    (0.01) and min_effect (0.05): the false-alarm rate is below alpha."""
    config = quality_config(slice_sets=[[]])

    rate = false_alarm_rate(config)

    assert rate < config.regression.alpha


def test_the_correction_keeps_the_family_wise_false_alarm_rate_at_alpha() -> None:
    """Without the effect gate (min_effect 0) only the test guards. Per stream the detector runs 9
    tests (all traffic, 2 models, 2 routes, 4 combinations): uncorrected, the null streams alert far
    more often than alpha; with Holm's correction the rate stays within what alpha allows (binomial
    99.9% bound over 200 streams)."""
    alpha = 0.05

    holm = false_alarm_rate(quality_config(alpha=alpha, min_effect=0.0, correction="holm"))
    uncorrected = false_alarm_rate(quality_config(alpha=alpha, min_effect=0.0, correction="none"))

    assert holm <= stats.binom.ppf(0.999, 200, alpha) / 200
    assert uncorrected > 2 * alpha > holm / 2


async def test_a_prompt_version_change_on_a_route_is_compared_before_and_after(quality_store: QualityStore) -> None:
    """v1 runs on /support for hours; v2 takes over 40 minutes ago and scores lower. A change alert
    names the route and the new version, says it changed from v1, and started when v2 first appeared.
    Another route on v1 throughout, and a v1->v2 change without a drop on a third route, do not alert."""
    rng = np.random.default_rng(3)
    t0 = NOW - 40 * 60 * S
    records = stream(rng, 400, NOW - 12 * HOUR, t0, 75, slices={"route": "/support", "prompt_version": "v1"})
    records += stream(rng, 120, t0, NOW, 62, slices={"route": "/support", "prompt_version": "v2"})
    records += stream(rng, 400, NOW - 12 * HOUR, NOW, 75, slices={"route": "/other", "prompt_version": "v1"})
    records += stream(rng, 300, NOW - 12 * HOUR, t0, 75, slices={"route": "/fine", "prompt_version": "v1"})
    records += stream(rng, 120, t0, NOW, 75, slices={"route": "/fine", "prompt_version": "v2"})
    first_v2 = min(r.time_ns for r in records if dict(r.slices) == {"route": "/support", "prompt_version": "v2"})
    await quality_store.insert(records)
    detector = RegressionDetector(quality_config(), quality_store, Settings())

    alerts = await detector.run_once(NOW)

    changes = [a for a in alerts if a.kind == "change"]
    assert len(changes) == 1
    change = changes[0]
    assert dict(change.slice) == {"route": "/support", "prompt_version": "v2"}
    assert change.change == {"slice": "prompt_version", "from": "v1", "to": "v2"}
    assert change.started_at_ns == first_v2
    assert change.current.n == 120 and change.baseline.n >= 30
    assert change.baseline.mean is not None and change.current.mean is not None
    assert change.baseline.mean - change.current.mean == pytest.approx(13, abs=4)
    assert change.to_json()["started_at"].startswith("2023-11-14T")


async def test_values_present_from_the_start_are_not_changes(quality_store: QualityStore) -> None:
    """Two models serving one route side by side for the whole history differ in quality, but neither
    is new: no change alert (the window comparison has nothing to say either)."""
    rng = np.random.default_rng(5)
    records = stream(rng, 500, NOW - 14 * HOUR, NOW, 80, slices={"route": "/a", "model": "big"})
    records += stream(rng, 500, NOW - 14 * HOUR, NOW, 60, slices={"route": "/a", "model": "small"})
    await quality_store.insert(records)
    detector = RegressionDetector(quality_config(), quality_store, Settings())

    alerts = await detector.run_once(NOW)

    assert alerts == []


async def test_alerts_fire_once_while_the_drop_persists_and_resolve_when_it_clears(
    quality_store: QualityStore,
) -> None:
    """First run: firing. Runs while the data still shows the drop: no new notification, the alert
    stays open and the metric at 1. Once a good hour has passed: one resolved notification per alert
    (resolution recovered, with the recovered numbers), the metric at 0, and regression_for answers None."""
    rng = np.random.default_rng(9)
    slices = {"model": "m1", "route": "/support"}
    await quality_store.insert(drop_records(rng, 300, 70, 58, slices=slices))
    settings = Settings()
    detector = RegressionDetector(quality_config(), quality_store, settings, [MetricAlertSink(settings)])

    fired = await detector.run_once(NOW)
    again = await detector.run_once(NOW + 30 * S)
    still = await detector.run_once(NOW + 60 * S)
    open_after = {tuple(sorted(a.slice.items())) for a in detector.open_alerts}
    answer = detector.regression_for("quality", {"route": "/support"})
    gauge_firing = settings.telemetry.value(
        "otel_judge.quality.regression", **{"gen_ai.evaluation.name": "quality", "route": "/support"}
    )
    later = NOW + HOUR + 60 * S
    await quality_store.insert(stream(rng, 300, NOW + 60 * S, later, 70, slices=slices))
    resolved = await detector.run_once(later)

    assert len(fired) == 3 and all(a.status == "firing" for a in fired)
    assert again == [] and still == []
    assert open_after == {(), (("model", "m1"),), (("route", "/support"),)}
    assert answer is not None and answer["slice"] == {"route": "/support"} and answer["status"] == "firing"
    assert gauge_firing == 1
    assert sorted(a.status for a in resolved) == ["resolved"] * 3
    assert {a.resolution for a in resolved} == {"recovered"}
    assert all(a.current.mean is not None and a.current.mean > 65 for a in resolved)  # the numbers that cleared it
    assert {a.id for a in resolved} == {a.id for a in fired}
    assert detector.open_alerts == [] and detector.regression_for("quality", {"route": "/support"}) is None
    assert (
        settings.telemetry.value(
            "otel_judge.quality.regression", **{"gen_ai.evaluation.name": "quality", "route": "/support"}
        )
        == 0
    )


async def test_an_open_alert_resolves_as_no_data_when_its_slice_goes_quiet(quality_store: QualityStore) -> None:
    """A firing slice whose traffic stops keeps its alert while there are scores in the windows
    (too few to test), and resolves with resolution no_data once none are left."""
    rng = np.random.default_rng(13)
    await quality_store.insert(drop_records(rng, 300, 70, 55, slices={"model": "m1"}))
    detector = RegressionDetector(quality_config(), quality_store, Settings())
    await detector.run_once(NOW)

    quiet = await detector.run_once(NOW + HOUR)  # current window empty: untested, kept
    gone = await detector.run_once(NOW + 8 * HOUR)

    assert quiet == []
    assert {a.resolution for a in gone} == {"no_data"} and len(gone) == 2


def test_regression_for_answers_the_exact_slice_else_a_narrower_one_within_it() -> None:
    """The quality API's lookup: the alert of exactly the queried slice; else the open alert of a
    narrower slice within the query; never an alert of broader traffic, another slice or evaluator."""
    rng = np.random.default_rng(17)
    config = quality_config(slice_sets=[["model"], ["model", "route"]])
    detector = RegressionDetector(config, _NoRows(), Settings())
    rows = as_rows(drop_records(rng, 300, 70, 55, slices={"model": "m1", "route": "/a"}))
    for result in analyse(rows, NOW, config.regression, list(config.slices)).results:
        detector._open[result.alert.key] = result.alert

    exact = detector.regression_for("quality", {"model": "m1"})
    narrower = detector.regression_for("quality", {"route": "/a"})
    everything = detector.regression_for("quality", {})
    broader_only = detector.regression_for("quality", {"model": "m1", "route": "/a", "prompt_version": "v9"})
    other = detector.regression_for("other", {"model": "m1"})
    unrelated = detector.regression_for("quality", {"model": "m2"})

    assert exact is not None and exact["slice"] == {"model": "m1"}
    assert narrower is not None and narrower["slice"] == {"model": "m1", "route": "/a"}
    assert everything is not None
    assert broader_only is None and other is None and unrelated is None


class _NoRows:
    async def rows(self, **kwargs: Any) -> list[Any]:
        return []


class RecordingSink:
    """An alert sink that records what it gets and lets a test await it."""

    name = "recording"

    def __init__(self) -> None:
        self.alerts: list[Alert] = []
        self.arrived = asyncio.Event()

    def deliver(self, alert: Alert) -> None:
        self.alerts.append(alert)
        self.arrived.set()

    async def start(self) -> None:
        return None

    async def shutdown(self, deadline: float) -> None:
        return None


async def test_the_scheduled_detector_runs_at_start_and_stops_promptly(quality_store: QualityStore) -> None:
    """start() runs the detector at once (with the injected clock's time) and then every interval;
    shutdown ends the schedule without waiting for the interval."""
    clock = FakeClock()
    rng = np.random.default_rng(19)
    now = clock.time_ns()
    records = stream(rng, 300, now - 7 * HOUR, now - HOUR, 70) + stream(rng, 300, now - HOUR, now, 55)
    await quality_store.insert(records)
    settings = Settings(clock=clock)
    sink = RecordingSink()
    detector = RegressionDetector(quality_config(interval="1h"), quality_store, settings, [sink])

    await detector.start()
    await asyncio.wait_for(sink.arrived.wait(), 10)
    await asyncio.wait_for(detector.shutdown(clock.monotonic() + 1), 5)

    assert [a.status for a in sink.alerts] == ["firing"]
    assert settings.telemetry.value("otel_judge.quality.detector.runs", outcome="ok") == 1


async def test_rows_are_read_incrementally_and_late_rows_at_the_next_full_refresh(
    quality_store: QualityStore,
) -> None:
    """Each run asks the store only for rows newer than the previous run (minus an overlap), so rows
    arriving between runs are counted once; rows inserted with old timestamps (a replay, a backfill)
    are seen when the detector next reads its whole lookback (``full_refresh``)."""
    rng = np.random.default_rng(23)
    await quality_store.insert(stream(rng, 300, NOW - 6 * HOUR, NOW - 2 * HOUR, 70))
    detector = RegressionDetector(quality_config(), quality_store, Settings(), full_refresh=60.0)
    quiet = await detector.run_once(NOW - 50 * 60 * S)
    await quality_store.insert(stream(rng, 300, NOW - 50 * 60 * S, NOW, 55))
    fired = await detector.run_once(NOW)
    await quality_store.insert(stream(rng, 100, NOW - 5 * HOUR, NOW - 3 * HOUR, 70))  # backdated

    incremental = await detector.run_once(NOW + 30 * S)
    before_refresh = [a.baseline.n for a in detector.open_alerts]
    refreshed = await detector.run_once(NOW + 90 * S)

    assert quiet == [] and len(fired) == 1
    assert (fired[0].baseline.n, fired[0].current.n) == (300, 300)
    assert detector.last_analysis is not None
    assert incremental == [] and refreshed == []
    assert before_refresh == [300]
    assert [a.baseline.n for a in detector.open_alerts] == [400]


async def test_the_pipeline_runs_the_detector_and_sends_alerts_as_otlp_logs_metrics_and_api_state(
    sink: SpanSink, tmp_path: Path
) -> None:
    """With a store configured, serve runs the detector at start: a drop already in the store becomes
    an otel_judge.quality.alert log record through the configured exporter, the regression gauge, and
    the quality API's regression of that slice."""
    clock = FakeClock()
    rng = np.random.default_rng(29)
    db = tmp_path / "quality.db"
    seed = QualityStore(StoreConfig(url=f"sqlite:///{db}"), Settings())
    await seed.start(retention_task=False)
    await seed.insert(drop_records(rng, 300, 70, 55, slices={"route": "/support"}))
    await seed.shutdown(clock.monotonic() + 5)
    config = pipeline_config(
        sink,
        None,
        store={"url": f"sqlite:///{db}"},
        quality={
            "slices": {"route": "root.http.route"},
            "api": {"endpoint": "127.0.0.1:0"},
            "regression": {"current_window": "1h", "baseline_window": "6h"},
            "alerts": [{"type": "otlp"}, {"type": "metric"}],
        },
    )
    settings = Settings(clock=clock)

    async with running(config, settings, tick=None) as pipeline:
        await sink.wait_for(lambda: len(sink.log_records()) >= 2)
        assert pipeline.quality_api is not None
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                f"http://127.0.0.1:{pipeline.quality_api.port}/v1/quality",
                params={"evaluator": "quality", "route": "/support", "window": "1h"},
            ) as resp,
        ):
            body = await resp.json()

    events = {attributes_to_dict(r.attributes)["otel_judge.alert.id"]: r for r in sink.log_records()}
    assert {r.event_name for r in events.values()} == {"otel_judge.quality.alert"}
    slices = sorted(str(attributes_to_dict(r.attributes).get("otel_judge.slice.route")) for r in events.values())
    assert slices == ["/support", "None"]
    labels = {"gen_ai.evaluation.name": "quality", "route": "/support"}
    assert settings.telemetry.value("otel_judge.quality.regression", **labels) == 1
    assert body["regression"]["slice"] == {"route": "/support"} and body["regression"]["status"] == "firing"


@pytest.mark.parametrize("n", [0, 1, 2, 57], ids=["empty", "one", "two", "many"])
def test_the_vectorised_estimate_gives_the_reference_numbers(n: int) -> None:
    """The detector's numpy estimate equals stats.estimate (weighted mean, Kish CI, weighted pass rate)."""
    rng = np.random.default_rng(n)
    values = rng.uniform(1, 100, n)
    weights = 1 / rng.choice([0.1, 0.5, 1.0], n)
    passed = [None if i % 3 == 0 else bool(v >= 50) for i, v in enumerate(values)]
    as_float = np.array([np.nan if p is None else float(p) for p in passed])

    reference = estimate(list(values), list(weights), passed)
    fast = estimate_arrays(values, weights, as_float)

    for field in ("n", "mean", "ci_low", "ci_high", "pass_rate", "n_effective", "std"):
        expected = getattr(reference, field)
        assert getattr(fast, field) == (expected if expected is None else pytest.approx(expected)), field
