"""otel-judge's own telemetry, declared in one table.

Every counter, gauge and histogram otel-judge records is listed in :data:`INSTRUMENTS` with its
unit, kind and description; recording an undeclared name is a programming error. Values live in
memory (cheap: a dict update per call, never per-span logging) and are read by exporters of
self-telemetry (:meth:`Telemetry.render_prometheus`, served at ``/metrics``) and by tests.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_left
from collections import defaultdict
from dataclasses import dataclass
from typing import Final, Literal

Kind = Literal["counter", "gauge", "histogram"]


@dataclass(frozen=True)
class Instrument:
    name: str
    unit: str
    kind: Kind
    description: str


_CORE_INSTRUMENTS: Final[tuple[Instrument, ...]] = (
    Instrument(
        "otel_judge.receiver.requests",
        "{request}",
        "counter",
        "Export requests received, by transport (grpc, http), signal and outcome (accepted, malformed, "
        "refused, unauthenticated, too_large, unsupported_media_type).",
    ),
    Instrument("otel_judge.receiver.spans", "{span}", "counter", "Spans accepted by the receivers."),
    Instrument("otel_judge.receiver.log_records", "{record}", "counter", "Log records accepted by the receivers."),
    Instrument(
        "otel_judge.evaluation.status", "{span}", "counter", "GenAI spans considered, by otel_judge.evaluation.status."
    ),
    Instrument("otel_judge.held.spans", "{span}", "gauge", "GenAI spans held awaiting their judgment."),
    Instrument(
        "otel_judge.late_results",
        "{result}",
        "counter",
        "Judgments that finished after their span had been exported (max_hold expired).",
    ),
    Instrument(
        "otel_judge.outputs.dropped",
        "{evaluation}",
        "counter",
        "Evaluation records an output could not take, by output (log_records, late_results, metrics, or an "
        "evaluation sink's name) and reason (error, full, stopped); spans are not affected.",
    ),
    Instrument("otel_judge.judge.calls", "{call}", "counter", "Calls to the judge model, by outcome (ok, error kind)."),
    Instrument("otel_judge.judge.duration", "s", "histogram", "Duration of judge model calls."),
    Instrument(
        "otel_judge.evaluation.same_family",
        "{span}",
        "counter",
        "Spans whose model shares the judge's family, by action (mark, alternative).",
    ),
    Instrument(
        "otel_judge.judge.breaker.open",
        "1",
        "gauge",
        "1 while a judge model's circuit breaker is open or half-open, 0 when closed.",
    ),
    Instrument("otel_judge.judge.retries", "{call}", "counter", "Judge calls retried after a retryable error."),
    Instrument(
        "otel_judge.judge.cache.hits",
        "{judgment}",
        "counter",
        "Judgments reused from the cache, by kind (evaluation_id, content, store: made before a restart).",
    ),
    Instrument("otel_judge.judge.tokens", "{token}", "counter", "Judge tokens, by type (input, output)."),
    Instrument("otel_judge.judge.cost", "USD", "counter", "Judge spend according to litellm's prices."),
    Instrument("otel_judge.judge.queue.depth", "{job}", "gauge", "Judgments waiting for a worker."),
    Instrument(
        "otel_judge.exporter.sent",
        "{item}",
        "counter",
        "Spans / log records / metric data points accepted downstream, by exporter and signal.",
    ),
    Instrument(
        "otel_judge.exporter.failed",
        "{item}",
        "counter",
        "Spans / log records / metric data points given up on after retries, by exporter and signal.",
    ),
    Instrument("otel_judge.exporter.retries", "{request}", "counter", "Export attempts retried."),
    Instrument("otel_judge.exporter.queue.size", "{item}", "gauge", "Items waiting in an exporter queue."),
    Instrument("otel_judge.traces.pending", "{trace}", "gauge", "Traces awaiting their sampling decision."),
    Instrument("otel_judge.held.bytes", "By", "gauge", "Bytes of spans held awaiting a decision or judgment."),
    Instrument(
        "otel_judge.sampling.decisions",
        "{span}",
        "counter",
        "Sampling decisions by deciding policy and outcome (sampled, not_sampled, over_budget).",
    ),
    Instrument(
        "otel_judge.spans.late", "{span}", "counter", "Model-call spans arriving after their trace was decided."
    ),
    Instrument("otel_judge.budget.spent_usd", "USD", "gauge", "Judge spend in the budget's sliding hour."),
    Instrument(
        "otel_judge.traces.decided_early",
        "{trace}",
        "counter",
        "Traces decided before decision_wait because num_traces was reached.",
    ),
    Instrument(
        "otel_judge.logs.joined",
        "{record}",
        "counter",
        "Content log records joined to their span, by how (span_id, parent_span_id).",
    ),
    Instrument(
        "otel_judge.logs.unjoined",
        "{record}",
        "counter",
        "Content log records that found no span to join, by reason (late, no_span, ambiguous, cap).",
    ),
    Instrument(
        "otel_judge.spans.nested_duplicates",
        "{span}",
        "counter",
        "LLM-call spans not judged because a nested span carries the same call.",
    ),
    Instrument(
        "otel_judge.reader.errors",
        "{span}",
        "counter",
        "Spans whose content could not be read (forwarded untouched), by format.",
    ),
    # The persistent queue (storage: ...).
    Instrument(
        "otel_judge.storage.writes", "{request}", "counter", "Export requests written durably to the persistent queue."
    ),
    Instrument(
        "otel_judge.storage.commits",
        "{commit}",
        "counter",
        "Persistent-queue transactions (one fsync each; many writes share one), by outcome (ok, error).",
    ),
    Instrument("otel_judge.storage.entries", "{request}", "gauge", "Export requests in the persistent queue."),
    Instrument("otel_judge.storage.size", "By", "gauge", "Bytes of export requests in the persistent queue."),
    Instrument(
        "otel_judge.storage.replayed",
        "{item}",
        "counter",
        "Spans / log records a previous run left on disk, sent through the pipeline again at start, by signal; "
        "those that had already been exported arrive downstream twice (at-least-once).",
    ),
    Instrument(
        "otel_judge.storage.kept",
        "{item}",
        "counter",
        "Spans / log records not exported by the end of shutdown and kept on disk for the next start, by signal.",
    ),
    # The evaluation store (store: ...).
    Instrument(
        "otel_judge.store.rows_written",
        "{row}",
        "counter",
        "Rows (one per score) written to the evaluation store; rows already there are not counted.",
    ),
    Instrument(
        "otel_judge.store.dropped",
        "{evaluation}",
        "counter",
        "Evaluations not written to the store, by reason (queue_full, shutdown, error); their spans are not affected.",
    ),
    Instrument(
        "otel_judge.store.errors",
        "{operation}",
        "counter",
        "Store operations that failed, by operation (insert, lookup, retention, query); inserts are retried.",
    ),
    Instrument("otel_judge.store.rows_deleted", "{row}", "counter", "Rows deleted from the store by retention."),
    Instrument("otel_judge.store.queue.size", "{evaluation}", "gauge", "Evaluations waiting to be written."),
)

# Evaluation metrics: labelled with gen_ai.evaluation.name (the score key) and the configured slice keys
# (quality.slices: model, route, prompt_version, service by default), each capped at
# outputs.metrics.cardinality_limit values (overflow -> "other").
EVALUATION_INSTRUMENTS: Final[tuple[Instrument, ...]] = (
    Instrument(
        "otel_judge.evaluation.score",
        "1",
        "histogram",
        "Scores, normalised to the evaluator's scale (0 = worst, 1 = best), by gen_ai.evaluation.name and slice.",
    ),
    Instrument(
        "otel_judge.evaluation.results",
        "{evaluation}",
        "counter",
        "Evaluations by gen_ai.evaluation.name, otel_judge.evaluation.status and slice.",
    ),
    Instrument(
        "otel_judge.evaluation.passed",
        "{evaluation}",
        "counter",
        "Scores with a pass/fail verdict, by gen_ai.evaluation.name, outcome (pass, fail) and slice; "
        "pass rate = pass / (pass + fail).",
    ),
    Instrument("otel_judge.evaluation.cost", "USD", "counter", "Judge spend by gen_ai.evaluation.name and slice."),
    Instrument(
        "otel_judge.evaluation.tokens",
        "{token}",
        "counter",
        "Judge tokens by gen_ai.evaluation.name, type (input, output) and slice.",
    ),
    Instrument(
        "otel_judge.evaluation.duration",
        "s",
        "histogram",
        "Judgment latency (judging started -> this evaluator's result, queueing and retries included), by "
        "gen_ai.evaluation.name and slice.",
    ),
    Instrument(
        "otel_judge.metrics.overflow",
        "{value}",
        "counter",
        "Slice values recorded as 'other' because the slice reached outputs.metrics.cardinality_limit, by slice.",
    ),
    Instrument(
        "otel_judge.quality.regression",
        "1",
        "gauge",
        "1 while a regression alert fires for (gen_ai.evaluation.name, slice), 0 once resolved.",
    ),
    Instrument(
        "otel_judge.quality.detector.runs",
        "{run}",
        "counter",
        "Runs of the regression detector by outcome (ok, error).",
    ),
    Instrument(
        "otel_judge.quality.alerts",
        "{alert}",
        "counter",
        "Regression alert notifications by kind (window, change) and status (firing, resolved).",
    ),
    Instrument(
        "otel_judge.quality.alert.deliveries",
        "{alert}",
        "counter",
        "Alert deliveries by sink (webhook, log, otlp, metric) and outcome (delivered, retried, failed, dropped).",
    ),
)
INSTRUMENTS: Final[tuple[Instrument, ...]] = _CORE_INSTRUMENTS + EVALUATION_INSTRUMENTS

_BY_NAME: Final = {i.name: i for i in INSTRUMENTS}

# Upper bounds of the Prometheus histogram buckets, by unit (+Inf is implied).
BUCKETS: Final[dict[str, tuple[float, ...]]] = {
    "s": (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    "1": (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
}
_DEFAULT_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Base-unit suffixes Prometheus names carry (OpenMetrics); annotation units such as {span} add none.
_UNIT_SUFFIX: Final = {"s": "seconds", "By": "bytes"}
PROMETHEUS_CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

AttrKey = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class HistogramPoint:
    """One histogram series: ``counts[i]`` values fell in ``(bounds[i-1], bounds[i]]``, the last one
    above every bound (per bucket, not cumulative, as OTLP carries them)."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    sum: float

    @property
    def count(self) -> int:
        return sum(self.counts)


class Telemetry:
    """In-memory instruments. ``add`` for counters, ``set`` for gauges, ``record`` for histograms."""

    def __init__(self) -> None:
        self._values: dict[str, dict[AttrKey, float]] = defaultdict(lambda: defaultdict(float))
        self._hist: dict[str, dict[AttrKey, list[float]]] = defaultdict(lambda: defaultdict(list))
        # Cumulative bucket counts (last = +Inf, i.e. the count) and sums: unlike the sample window
        # they never stop growing, as a Prometheus histogram's must not.
        self._buckets: dict[str, dict[AttrKey, list[int]]] = {}
        self._sums: dict[str, dict[AttrKey, float]] = defaultdict(lambda: defaultdict(float))

    @staticmethod
    def _check(name: str, kind: Kind) -> None:
        inst = _BY_NAME.get(name)
        if inst is None or inst.kind != kind:
            raise KeyError(f"undeclared {kind} instrument {name!r}: add it to telemetry.INSTRUMENTS")

    def add(self, name: str, value: float = 1, /, **attrs: str) -> None:
        self._check(name, "counter")
        self._values[name][tuple(sorted(attrs.items()))] += value

    def set(self, name: str, value: float, /, **attrs: str) -> None:
        self._check(name, "gauge")
        self._values[name][tuple(sorted(attrs.items()))] = value

    def record(self, name: str, value: float, /, **attrs: str) -> None:
        self._check(name, "histogram")
        key = tuple(sorted(attrs.items()))
        samples = self._hist[name][key]
        if len(samples) < 10_000:  # bounded: a rolling window is enough for self-telemetry
            samples.append(value)
        bounds = _bounds(name)
        counts = self._buckets.setdefault(name, {}).setdefault(key, [0] * (len(bounds) + 1))
        counts[bisect_left(bounds, value)] += 1  # per bucket here; made cumulative when rendered
        self._sums[name][key] += value

    def value(self, name: str, **attrs: str) -> float:
        """The value of one series; with no attrs, the sum over all series of ``name``."""
        series = self._values.get(name, {})
        if attrs:
            return series.get(tuple(sorted(attrs.items())), 0.0)
        return sum(series.values())

    def series(self, name: str) -> dict[AttrKey, float]:
        return dict(self._values.get(name, {}))

    def samples(self, name: str) -> list[float]:
        return [v for vals in self._hist.get(name, {}).values() for v in vals]

    def collect(self) -> list[tuple[Instrument, AttrKey, float | HistogramPoint]]:
        """Every series of every declared instrument that has values, in declaration order: a number
        for counters (cumulative) and gauges (last value), a :class:`HistogramPoint` for histograms.
        What the OTLP metrics export sends (:mod:`otel_judge.outputs`)."""
        points: list[tuple[Instrument, AttrKey, float | HistogramPoint]] = []
        for inst in INSTRUMENTS:
            if inst.kind == "histogram":
                bounds = _bounds(inst.name)
                sums = self._sums.get(inst.name, {})
                for key, counts in sorted(self._buckets.get(inst.name, {}).items()):
                    points.append((inst, key, HistogramPoint(bounds, tuple(counts), sums.get(key, 0.0))))
                continue
            for key, value in sorted(self._values.get(inst.name, {}).items()):
                points.append((inst, key, value))
        return points

    def render_prometheus(self) -> str:
        """Every declared instrument that has values, in the Prometheus text exposition format 0.0.4.

        Names: dots become underscores; counters end in ``_total``; ``s`` and ``By`` units add
        ``_seconds`` / ``_bytes``. Histograms have the fixed buckets of :data:`BUCKETS` for their unit.
        Each family has ``# HELP`` (the description) and ``# TYPE``; attributes become labels.
        """
        lines: list[str] = []
        for inst in INSTRUMENTS:
            name = prometheus_name(inst)
            if inst.kind == "histogram":
                series = sorted(self._buckets.get(inst.name, {}).items())
                if not series:
                    continue
                lines += [f"# HELP {name} {_escape_help(inst.description)}", f"# TYPE {name} histogram"]
                bounds = _bounds(inst.name)
                sums = self._sums[inst.name]
                for key, counts in series:
                    cumulative = 0
                    for bound, count in zip((*bounds, math.inf), counts, strict=True):
                        cumulative += count
                        lines.append(f"{name}_bucket{_labels(key, ('le', _format(bound)))} {cumulative}")
                    lines.append(f"{name}_sum{_labels(key)} {_format(sums[key])}")
                    lines.append(f"{name}_count{_labels(key)} {cumulative}")
                continue
            values = sorted(self._values.get(inst.name, {}).items())
            if not values:
                continue
            lines += [f"# HELP {name} {_escape_help(inst.description)}", f"# TYPE {name} {inst.kind}"]
            lines += [f"{name}{_labels(key)} {_format(value)}" for key, value in values]
        return "\n".join(lines) + "\n" if lines else ""


def _bounds(name: str) -> tuple[float, ...]:
    return BUCKETS.get(_BY_NAME[name].unit, _DEFAULT_BUCKETS)


def prometheus_name(inst: Instrument) -> str:
    """``otel_judge.receiver.spans`` (counter) -> ``otel_judge_receiver_spans_total``."""
    name = _sanitize(inst.name)
    suffix = _UNIT_SUFFIX.get(inst.unit)
    if suffix and not name.endswith("_" + suffix):
        name += "_" + suffix
    return name + "_total" if inst.kind == "counter" else name


def _sanitize(name: str) -> str:
    name = re.sub(r"[^a-zA-Z0-9_]", "_", name)
    return "_" + name if name[:1].isdigit() else name


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(key: AttrKey, *extra: tuple[str, str]) -> str:
    pairs = [*key, *extra]
    if not pairs:
        return ""
    return "{" + ",".join(f'{_sanitize(k)}="{_escape_label(str(v))}"' for k, v in pairs) + "}"


def _format(value: float) -> str:
    """A sample value as Prometheus writes it: ``3``, ``0.25``, ``+Inf``, ``NaN``."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))
