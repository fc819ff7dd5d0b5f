"""Regression detection: significance-aware comparisons of judge scores per score key and slice.

Every ``quality.regression.interval`` the detector reads the stored scores and runs two kinds of
one-sided two-sample tests, then corrects for how many it ran:

* **window**: per score key and slice combination (``regression.slice_sets``; default: all traffic,
  each slice alone, all slices together), the current window ``[now - current_window, now)``
  against the baseline window ``[now - current_window - baseline_window, now - current_window)``.
* **change**: per route (``regression.route_slice``) and change slice (``regression.change_slices``,
  e.g. model, prompt_version): a value is *new* on the route when it first appears at ``t0`` after a
  whole ``baseline_window`` without it; the old value (the route's most frequent other value in
  ``[t0 - baseline_window, t0)``) before ``t0`` is compared with the new value's scores since
  ``max(t0, now - current_window)``. A change point is tracked while ``t0`` is within
  ``current_window + baseline_window`` of now; then its alert resolves as ``expired``.

A test runs only with at least ``min_n`` scores on each side. It alerts when the drop of the
weighted mean is at least ``min_effect`` of the score scale *and* its p-value, adjusted over all tests
of the run (Holm or Bonferroni), is at most ``alpha``. Welch's test uses the weighted estimates
(inverse sampling probability, Kish effective n); Mann-Whitney U tests the unweighted scores.

Alerts are deduplicated: a condition fires once and stays open (its numbers refreshed) until a run
tests it and finds no regression (``resolved``, resolution ``recovered``), its slice has no scores in
the windows any more (``no_data``) or its change point aged out (``expired``).

With a store that keeps alert state (:class:`AlertState`: the :class:`~otel_judge.quality.store.QualityStore`)
the store is the source of truth, shared by replicas and kept over restarts: a condition is notified
as firing only by the detector whose ``claim_firing`` made the transition, and as resolved only by the
one whose ``claim_resolved`` did; every run first takes over the conditions the store says are firing
(from another replica, or from before a restart), so that they show in :meth:`RegressionDetector.regression_for`
and resolve when they clear. Over rows without such state (:class:`MemoryRows`: the report) the state
is in memory only.
"""

from __future__ import annotations

import asyncio
import contextlib
from bisect import bisect_left
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, runtime_checkable

from otel_judge.component import Settings
from otel_judge.config import Config, QualityConfig, RegressionConfig
from otel_judge.quality.alerts import Alert, AlertSink, ConsumeLogs, build_alert_sinks
from otel_judge.quality.model import StoredEvaluation
from otel_judge.quality.stats import Estimate, adjust_p_values, estimate_arrays, mann_whitney_drop, welch_drop

__all__ = [
    "AlertState",
    "Analysis",
    "MemoryRows",
    "RegressionDetector",
    "RegressionLookup",
    "RowSource",
    "TestResult",
    "analyse",
    "build_quality",
    "default_slice_sets",
    "score_scale",
]

NS = 1_000_000_000
AlertKey = tuple[str, str, tuple[tuple[str, str], ...]]
SliceKey = tuple[tuple[str, str], ...]


class RowSource(Protocol):
    """What the detector reads: the store's ``rows`` (:class:`otel_judge.quality.store.QualityStore`)."""

    async def rows(
        self,
        *,
        evaluator: str | None = None,
        since_ns: int | None = None,
        until_ns: int | None = None,
        slices: Mapping[str, str] | None = None,
        statuses: Collection[str] | None = ("evaluated",),
    ) -> list[StoredEvaluation]: ...


@runtime_checkable
class AlertState(Protocol):
    """Alert state shared by replicas and kept over restarts (the store's; see the module docstring).
    Each claim is a compare-and-set: True only for the caller that made the transition."""

    async def claim_firing(self, key: AlertKey, alert: Mapping[str, Any], now_ns: int) -> bool: ...

    async def claim_resolved(self, key: AlertKey, alert: Mapping[str, Any], now_ns: int) -> bool: ...

    async def firing_alerts(self) -> dict[AlertKey, dict[str, Any]]: ...


class MemoryRows:
    """Rows held in memory behind the store's ``rows`` signature: the report runs the detector over
    what it read once, at many points in time, without asking the store again."""

    def __init__(self, rows: Iterable[StoredEvaluation]) -> None:
        self._rows = sorted(rows, key=lambda r: r.time_ns)
        self._times = [r.time_ns for r in self._rows]

    async def rows(
        self,
        *,
        evaluator: str | None = None,
        since_ns: int | None = None,
        until_ns: int | None = None,
        slices: Mapping[str, str] | None = None,
        statuses: Collection[str] | None = ("evaluated",),
    ) -> list[StoredEvaluation]:
        lo = 0 if since_ns is None else bisect_left(self._times, since_ns)
        hi = len(self._rows) if until_ns is None else bisect_left(self._times, until_ns)
        return [
            r
            for r in self._rows[lo:hi]
            if (evaluator is None or r.evaluator == evaluator)
            and (statuses is None or r.status in statuses)
            and (not slices or all(r.slices.get(k) == v for k, v in slices.items()))
        ]


def default_slice_sets(slice_names: Sequence[str]) -> list[tuple[str, ...]]:
    """All traffic, each slice alone, all slices together."""
    sets: list[tuple[str, ...]] = [(), *((name,) for name in slice_names)]
    if len(slice_names) > 1:
        sets.append(tuple(sorted(slice_names)))
    return sets


@dataclass(frozen=True, slots=True)
class Scale:
    low: float | None
    high: float | None
    higher_is_better: bool
    width: float  # |high - low|, or 1 when the scale is unknown


def score_scale(rows: Sequence[StoredEvaluation]) -> Scale:
    """The scale of a score key from its newest row that has one: its direction is the row's
    ``higher_is_better``, reversed if the row says ``low > high``; without a scale, higher is better
    and effects are in score units (width 1)."""
    newest: StoredEvaluation | None = None
    scaled: StoredEvaluation | None = None
    for row in rows:
        if newest is None or row.time_ns > newest.time_ns:
            newest = row
        has_scale = row.low is not None and row.high is not None and row.low != row.high
        if has_scale and (scaled is None or row.time_ns > scaled.time_ns):
            scaled = row
    if scaled is not None and scaled.low is not None and scaled.high is not None:
        better = scaled.higher_is_better != (scaled.low > scaled.high)
        return Scale(scaled.low, scaled.high, better, abs(scaled.high - scaled.low))
    return Scale(None, None, newest.higher_is_better if newest is not None else True, 1.0)


@dataclass(frozen=True, slots=True)
class TestResult:
    """One test of the run: the alert it would be (status firing) and whether it is a regression."""

    alert: Alert
    regressed: bool


@dataclass(slots=True)
class Analysis:
    results: list[TestResult] = field(default_factory=list)
    present: set[AlertKey] = field(default_factory=set)  # every group with scores, tested or not


@dataclass(slots=True)
class _Candidate:
    """One comparison: the rows of each side as index arrays into the run's rows (window groups share
    the arrays of the buckets they are made of)."""

    kind: str
    score_key: str
    slice: SliceKey
    started_ns: int
    baseline_window: tuple[int, int]
    current_window: tuple[int, int]
    change: dict[str, str] | None = None
    baseline: list[Any] = field(default_factory=list)  # index arrays
    current: list[Any] = field(default_factory=list)

    @staticmethod
    def size(parts: list[Any]) -> int:
        return sum(len(p) for p in parts)


def _lookback_ns(regression: RegressionConfig, changes: bool) -> int:
    """How far back the detector reads: both windows, plus one baseline window of history before a
    change point when change detection is on."""
    span = regression.current_window + regression.baseline_window * (2 if changes else 1)
    return int(span * NS)


def _change_slices(regression: RegressionConfig, slice_names: Collection[str]) -> tuple[str | None, list[str]]:
    route = regression.route_slice if regression.route_slice in slice_names else None
    if route is None:
        return None, []
    return route, [k for k in regression.change_slices if k in slice_names and k != route]


def _window_candidates(
    rows: Sequence[StoredEvaluation], now_ns: int, regression: RegressionConfig, slice_names: Sequence[str]
) -> dict[tuple[str, SliceKey], _Candidate]:
    import numpy as np

    cw = int(regression.current_window * NS)
    bw = int(regression.baseline_window * NS)
    split, start = now_ns - cw, now_ns - cw - bw
    raw_sets = regression.slice_sets if regression.slice_sets is not None else default_slice_sets(slice_names)
    sets = sorted({tuple(sorted(set(s))) for s in raw_sets})
    # Rows sharing a score key, a slice signature and a side first, then each such bucket into the
    # groups it belongs to: a handful of distinct signatures, however many rows.
    buckets: dict[tuple[str, SliceKey, bool], list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        if row.value is not None and start <= row.time_ns < now_ns:
            # (unsorted: a different order of the same slices only makes another bucket of the same groups)
            buckets[(row.score_key, tuple(row.slices.items()), row.time_ns >= split)].append(i)
    groups: dict[tuple[str, SliceKey], _Candidate] = {}
    for (score_key, signature, is_current), indices in buckets.items():
        part = np.asarray(indices, dtype=np.intp)
        values = dict(signature)
        for names in sets:
            if not all(n in values for n in names):
                continue
            key = (score_key, tuple((n, values[n]) for n in names))
            group = groups.get(key)
            if group is None:
                group = groups[key] = _Candidate("window", score_key, key[1], split, (start, split), (split, now_ns))
            (group.current if is_current else group.baseline).append(part)
    return groups


def _change_candidates(
    rows: Sequence[StoredEvaluation], now_ns: int, regression: RegressionConfig, slice_names: Sequence[str]
) -> dict[tuple[str, SliceKey], _Candidate]:
    import numpy as np

    route, keys = _change_slices(regression, slice_names)
    if route is None or not keys:
        return {}
    cw = int(regression.current_window * NS)
    bw = int(regression.baseline_window * NS)
    earliest = now_ns - cw - bw  # change points before this have aged out
    # One pass: each route's rows, its first row, and the first appearance of each change-slice value.
    by_route: dict[str, list[int]] = defaultdict(list)
    route_first: dict[str, int] = {}
    first_seen: dict[tuple[str, str, str], int] = {}
    for i, row in enumerate(rows):
        if row.value is None or row.time_ns >= now_ns or route not in row.slices:
            continue
        route_value, t = row.slices[route], row.time_ns
        by_route[route_value].append(i)
        if t < route_first.get(route_value, t + 1):
            route_first[route_value] = t
        for key in keys:
            value = row.slices.get(key)
            if value is not None and t < first_seen.get((route_value, key, value), t + 1):
                first_seen[(route_value, key, value)] = t
    # New: first seen in the detection range, after a whole baseline window of the route's traffic
    # without it (a route younger than that has no history to compare with).
    changes = sorted(
        (route_value, key, value, t0)
        for (route_value, key, value), t0 in first_seen.items()
        if t0 >= earliest and route_first[route_value] <= t0 - bw
    )
    out: dict[tuple[str, SliceKey], _Candidate] = {}
    sorted_routes: dict[str, tuple[list[int], list[int]]] = {}
    for route_value, key, new, t0 in changes:
        if route_value not in sorted_routes:
            members = sorted(by_route[route_value], key=lambda i: rows[i].time_ns)
            sorted_routes[route_value] = members, [rows[i].time_ns for i in members]
        members, times = sorted_routes[route_value]
        history = members[bisect_left(times, t0 - bw) : bisect_left(times, t0)]
        before = [i for i in history if rows[i].slices.get(key) not in {None, new}]
        if not before:
            continue
        counts = Counter(rows[i].slices[key] for i in before)
        last = {rows[i].slices[key]: rows[i].time_ns for i in before}
        old = max(counts, key=lambda v: (counts[v], last[v]))
        current_start = max(t0, now_ns - cw)
        slice_key = tuple(sorted(((route, route_value), (key, new))))
        change = {"slice": key, "from": old, "to": new}
        after = members[bisect_left(times, current_start) :]
        sides: dict[tuple[str, bool], list[int]] = defaultdict(list)
        for i in before:
            if rows[i].slices[key] == old:
                sides[(rows[i].score_key, False)].append(i)
        for i in after:
            if rows[i].slices.get(key) == new:
                sides[(rows[i].score_key, True)].append(i)
        for (score_key, is_current), indices in sides.items():
            group = out.get((score_key, slice_key))
            if group is None:
                group = out[(score_key, slice_key)] = _Candidate(
                    "change", score_key, slice_key, t0, (t0 - bw, t0), (current_start, now_ns), change
                )
            (group.current if is_current else group.baseline).append(np.asarray(indices, dtype=np.intp))
    return out


def analyse(
    rows: Sequence[StoredEvaluation], now_ns: int, regression: RegressionConfig, slice_names: Sequence[str]
) -> Analysis:
    """Every test of one run at ``now_ns`` over ``rows`` (scores of status evaluated), corrected together.

    Pure: the detector, the report's alert markers and the simulations in the tests all call this.
    The row attributes are read once into numpy arrays; groups are index arrays into them."""
    import numpy as np

    candidates = list(_window_candidates(rows, now_ns, regression, slice_names).values())
    candidates += _change_candidates(rows, now_ns, regression, slice_names).values()
    analysis = Analysis()
    for c in candidates:
        analysis.present.add((c.kind, c.score_key, c.slice))
    candidates = [
        c for c in candidates if c.size(c.baseline) >= regression.min_n and c.size(c.current) >= regression.min_n
    ]
    if not candidates:
        return analysis
    count = len(rows)
    values = np.fromiter((r.value if r.value is not None else np.nan for r in rows), float, count)
    weights = np.fromiter((r.weight for r in rows), float, count)
    passed = np.fromiter((np.nan if r.passed is None else float(r.passed) for r in rows), float, count)
    by_key: dict[str, list[StoredEvaluation]] = defaultdict(list)
    for row in rows:
        by_key[row.score_key].append(row)
    scales = {key: score_scale(key_rows) for key, key_rows in by_key.items()}
    tested: list[tuple[_Candidate, Estimate, Estimate, float, float, int]] = []
    for c in candidates:
        scale = scales[c.score_key]
        b_idx, c_idx = np.concatenate(c.baseline), np.concatenate(c.current)
        base = estimate_arrays(values[b_idx], weights[b_idx], passed[b_idx])
        cur = estimate_arrays(values[c_idx], weights[c_idx], passed[c_idx])
        if regression.test == "welch":
            p = welch_drop(base, cur, higher_is_better=scale.higher_is_better)
        else:
            p = mann_whitney_drop(values[b_idx], values[c_idx], higher_is_better=scale.higher_is_better)
        assert base.mean is not None and cur.mean is not None
        drop = base.mean - cur.mean if scale.higher_is_better else cur.mean - base.mean
        tested.append((c, base, cur, p, drop, int(b_idx[0])))
    adjusted = adjust_p_values([t[3] for t in tested], regression.correction)
    for (c, base, cur, p, drop, first), p_adj in zip(tested, adjusted, strict=True):
        scale = scales[c.score_key]
        effect = drop / scale.width
        alert = Alert(
            kind=c.kind,
            evaluator=rows[first].evaluator,
            score_key=c.score_key,
            slice=dict(c.slice),
            baseline=base,
            current=cur,
            p_value=p,
            p_adjusted=p_adj,
            effect=effect,
            drop=drop,
            started_at_ns=c.started_ns,
            detected_at_ns=now_ns,
            baseline_window=c.baseline_window,
            current_window=c.current_window,
            test=regression.test,
            correction=regression.correction,
            alpha=regression.alpha,
            tests=len(tested),
            low=scale.low,
            high=scale.high,
            higher_is_better=scale.higher_is_better,
            change=c.change,
        )
        regressed = p_adj <= regression.alpha and effect > 0 and effect >= regression.min_effect
        analysis.results.append(TestResult(alert, regressed))
    return analysis


class _RowCache:
    """The rows of the lookback, read incrementally: each run asks the store only for what is newer
    than the previous run (minus an overlap, for rows that arrive a little late, e.g. from other
    replicas), and reads the whole lookback again every ``full_refresh`` (rows inserted late, a replay)."""

    def __init__(self, store: RowSource, *, overlap_ns: int, full_refresh_ns: int) -> None:
        self._store = store
        self._overlap = overlap_ns
        self._full_refresh = full_refresh_ns
        self._rows: dict[tuple[str, str], StoredEvaluation] | None = None
        self._since = self._until = self._full_at = 0

    async def get(self, since_ns: int, now_ns: int) -> list[StoredEvaluation]:
        full = (
            self._rows is None
            or now_ns - self._full_at >= self._full_refresh
            or since_ns < self._since
            or now_ns < self._until
        )
        if full:
            fetched = await self._store.rows(since_ns=since_ns, until_ns=now_ns)
            self._rows = {}
            self._full_at = now_ns
        else:
            fetched = await self._store.rows(since_ns=max(since_ns, self._until - self._overlap), until_ns=now_ns)
        assert self._rows is not None
        for row in fetched:
            self._rows[(row.evaluation_id, row.score_key)] = row
        if not full:
            self._rows = {k: r for k, r in self._rows.items() if r.time_ns >= since_ns}
        self._since, self._until = since_ns, now_ns
        return list(self._rows.values())


class RegressionDetector:
    """Runs :func:`analyse` on a schedule over the store and notifies ``sinks`` of alerts that start
    (``firing``) or clear (``resolved``), once each. ``run_once(now_ns)`` is one run (tests drive it
    with their own clock); :meth:`start` runs it every ``quality.regression.interval``."""

    def __init__(
        self,
        config: QualityConfig,
        store: RowSource,
        settings: Settings,
        sinks: Sequence[AlertSink] = (),
        *,
        full_refresh: float = 6 * 3600.0,
    ) -> None:
        self.config = config
        self.regression = config.regression
        self.store = store
        self.settings = settings
        self.sinks = list(sinks)
        self.slice_names = list(config.slices)
        route, changes = _change_slices(self.regression, self.slice_names)
        self._lookback = _lookback_ns(self.regression, bool(route and changes))
        overlap = max(10 * self.regression.interval, 600.0)
        self._cache = _RowCache(store, overlap_ns=int(overlap * NS), full_refresh_ns=int(full_refresh * NS))
        self._open: dict[AlertKey, Alert] = {}
        self._state: AlertState | None = store if isinstance(store, AlertState) else None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.last_analysis: Analysis | None = None

    @property
    def open_alerts(self) -> list[Alert]:
        """The alerts firing now (with shared state: also those another replica notified)."""
        return list(self._open.values())

    async def run_once(self, now_ns: int) -> list[Alert]:
        """One run at ``now_ns``: test, update the alert state, notify the sinks; returns the
        notifications sent (new ``firing`` and ``resolved`` alerts). With shared state, only the
        transitions this detector claimed in the store are notified."""
        rows = await self._cache.get(now_ns - self._lookback, now_ns)
        # In a thread: over a large lookback the statistics take long enough to delay the span path.
        analysis = await asyncio.to_thread(analyse, rows, now_ns, self.regression, self.slice_names)
        self.last_analysis = analysis
        followed = await self._sync(now_ns) if self._state is not None else []
        notifications: list[Alert] = []
        tested: set[AlertKey] = set()
        try:
            # _open changes only after a claim succeeded or lost: a claim that fails (the database is
            # away) leaves the condition as it was, for the next run to try again.
            for result in analysis.results:
                key = result.alert.key
                tested.add(key)
                opened = self._open.get(key)
                if result.regressed:
                    if opened is None:
                        # Lost: another replica notified it; tracked silently (the next run takes its start).
                        claimed = await self._claim(result.alert, now_ns)
                        (notifications if claimed else followed).append(result.alert)
                        self._open[key] = result.alert
                    else:  # still firing: fresh numbers, the same start
                        self._open[key] = replace(
                            result.alert, started_at_ns=opened.started_at_ns, detected_at_ns=opened.detected_at_ns
                        )
                elif opened is not None:  # cleared: the resolved notification has the numbers that show it
                    latest = replace(
                        result.alert, started_at_ns=opened.started_at_ns, detected_at_ns=opened.detected_at_ns
                    ).resolved(now_ns, "recovered")
                    (notifications if await self._claim(latest, now_ns) else followed).append(latest)
                    del self._open[key]
            for key in [k for k in self._open if k not in tested and k not in analysis.present]:
                gone = self._open[key].resolved(now_ns, "expired" if key[0] == "change" else "no_data")
                (notifications if await self._claim(gone, now_ns) else followed).append(gone)
                del self._open[key]
        finally:
            self._notify(notifications, followed)
        return notifications

    async def _sync(self, now_ns: int) -> list[Alert]:
        """Align the open alerts with the store's firing conditions: take over those this detector does
        not have open (another replica's, or from before a restart), drop those resolved elsewhere, and
        keep the stored start of an episode (so that its ``id`` is the one that was notified). Returns
        the changes, for the sinks that follow state (the regression gauge)."""
        assert self._state is not None
        firing = await self._state.firing_alerts()
        changed: list[Alert] = []
        for key in [k for k in self._open if k not in firing]:
            changed.append(self._open.pop(key).resolved(now_ns, "recovered"))
        for key, data in firing.items():
            try:
                stored = Alert.from_json(data)
            except (KeyError, TypeError, ValueError) as exc:
                self.settings.logger.warning("alert state of %s unreadable, ignored: %r", key, exc)
                continue
            mine = self._open.get(key)
            if mine is None:
                self._open[key] = stored
                changed.append(stored)
            elif mine.id != stored.id:
                self._open[key] = replace(
                    mine, started_at_ns=stored.started_at_ns, detected_at_ns=stored.detected_at_ns
                )
        return changed

    async def _claim(self, alert: Alert, now_ns: int) -> bool:
        """Whether this detector notifies ``alert`` (firing or resolved): always without shared state,
        else only if its transition in the store is this detector's."""
        if self._state is None:
            return True
        if alert.status == "firing":
            return await self._state.claim_firing(alert.key, alert.to_state(), now_ns)
        return await self._state.claim_resolved(alert.key, alert.to_state(), now_ns)

    def _notify(self, notifications: Sequence[Alert], followed: Sequence[Alert]) -> None:
        for alert in notifications:
            self.settings.telemetry.add("otel_judge.quality.alerts", kind=alert.kind, status=alert.status)
            for sink in self.sinks:
                try:
                    sink.deliver(alert)
                except Exception:  # deliver must not raise; if one does, the others still get the alert
                    self.settings.logger.exception("alert sink %s failed", sink.name)
        for alert in followed:  # state notified elsewhere: only sinks that show state follow it
            for sink in self.sinks:
                follow = getattr(sink, "follow", None)
                if follow is not None:
                    try:
                        follow(alert)
                    except Exception:
                        self.settings.logger.exception("alert sink %s failed", sink.name)

    def regression_for(self, evaluator: str, slices: Mapping[str, str] | None = None) -> dict[str, Any] | None:
        """The open alert of ``evaluator`` (a score key) for exactly ``slices``; else the most
        significant open alert of a narrower slice within it (``slices`` plus more slice values, e.g.
        one route of the queried model, or a change alert of the queried route); None when nothing
        fires there. The answer is :meth:`Alert.to_json`."""
        query = dict(slices or {})
        within = [
            a
            for a in self._open.values()
            if a.score_key == evaluator and all(a.slice.get(k) == v for k, v in query.items())
        ]
        if not within:
            return None
        best = min(within, key=lambda a: (dict(a.slice) != query, a.p_adjusted, len(a.slice)))
        return best.to_json()

    async def _run_logged(self) -> None:
        try:
            alerts = await self.run_once(self.settings.clock.time_ns())
        except Exception:
            self.settings.telemetry.add("otel_judge.quality.detector.runs", outcome="error")
            self.settings.logger.exception("regression detector run failed")
            return
        self.settings.telemetry.add("otel_judge.quality.detector.runs", outcome="ok")
        if alerts:
            self.settings.logger.debug("regression detector: %d notification(s)", len(alerts))

    async def _loop(self) -> None:
        while not self._stop.is_set():
            await self._run_logged()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.regression.interval):
                    await self._stop.wait()

    async def start(self) -> None:
        """Start the sinks, then run now and every ``regression.interval``."""
        for sink in self.sinks:
            await sink.start()
        if self._task is None:
            self._stop.clear()
            self._task = asyncio.create_task(self._loop(), name="regression-detector")

    async def shutdown(self, deadline: float) -> None:
        """Stop the schedule (a run in progress is cancelled), then let the sinks flush until ``deadline``."""
        self._stop.set()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for sink in self.sinks:
            await sink.shutdown(deadline)


def build_quality(
    config: Config,
    settings: Settings,
    store: RowSource,
    exporter: Any = None,
) -> RegressionDetector:
    """The detector the pipeline runs when ``store`` is configured, with the sinks of
    ``quality.alerts``; an ``otlp`` sink hands its records to ``exporter.consume_logs``. Pass
    ``detector.regression_for`` to the quality API. The caller starts and shuts it down."""
    consume_logs: ConsumeLogs | None = getattr(exporter, "consume_logs", None)
    sinks = build_alert_sinks(config.quality.alerts, settings, consume_logs)
    return RegressionDetector(config.quality, store, settings, sinks)


RegressionLookup = Callable[[str, Mapping[str, str]], "dict[str, Any] | None"]
