"""otel-judge's own telemetry, declared in one table.

Every counter, gauge and histogram otel-judge records is listed in :data:`INSTRUMENTS` with its
unit, kind and description; recording an undeclared name is a programming error. Values live in
memory (cheap: a dict update per call, never per-span logging) and are read by exporters of
self-telemetry and by tests.
"""

from __future__ import annotations

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


INSTRUMENTS: Final[tuple[Instrument, ...]] = (
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
        "Judgments reused from the cache, by kind (evaluation_id, content).",
    ),
    Instrument("otel_judge.judge.tokens", "{token}", "counter", "Judge tokens, by type (input, output)."),
    Instrument("otel_judge.judge.cost", "USD", "counter", "Judge spend according to litellm's prices."),
    Instrument("otel_judge.judge.queue.depth", "{job}", "gauge", "Judgments waiting for a worker."),
    Instrument(
        "otel_judge.exporter.sent",
        "{item}",
        "counter",
        "Spans / log records accepted downstream, by exporter and signal.",
    ),
    Instrument(
        "otel_judge.exporter.failed",
        "{item}",
        "counter",
        "Spans / log records given up on after retries, by exporter and signal.",
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
)

_BY_NAME: Final = {i.name: i for i in INSTRUMENTS}

AttrKey = tuple[tuple[str, str], ...]


class Telemetry:
    """In-memory instruments. ``add`` for counters, ``set`` for gauges, ``record`` for histograms."""

    def __init__(self) -> None:
        self._values: dict[str, dict[AttrKey, float]] = defaultdict(lambda: defaultdict(float))
        self._hist: dict[str, dict[AttrKey, list[float]]] = defaultdict(lambda: defaultdict(list))

    @staticmethod
    def _check(name: str, kind: Kind) -> None:
        inst = _BY_NAME.get(name)
        if inst is None or inst.kind != kind:
            raise KeyError(f"undeclared {kind} instrument {name!r}: add it to telemetry.INSTRUMENTS")

    def add(self, name: str, value: float = 1, **attrs: str) -> None:
        self._check(name, "counter")
        self._values[name][tuple(sorted(attrs.items()))] += value

    def set(self, name: str, value: float, **attrs: str) -> None:
        self._check(name, "gauge")
        self._values[name][tuple(sorted(attrs.items()))] = value

    def record(self, name: str, value: float, **attrs: str) -> None:
        self._check(name, "histogram")
        samples = self._hist[name][tuple(sorted(attrs.items()))]
        if len(samples) < 10_000:  # bounded: a rolling window is enough for self-telemetry
            samples.append(value)

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
