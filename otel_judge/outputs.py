"""Where judgments go besides the judged span: log records, late child spans, metrics.

The judging stage builds one :class:`~otel_judge.model.EvaluationRecord` per evaluator and judged
span when the judgment completes (late ones included) and hands it to every
:class:`~otel_judge.model.EvaluationSink`. The sinks here are built from ``outputs``:

* :class:`EvaluationMetrics` (always): the evaluation instruments of :mod:`otel_judge.telemetry`
  (score histogram, results, pass/fail, judge cost and tokens) labelled with
  ``gen_ai.evaluation.name`` and one attribute per slice, each capped at
  ``outputs.metrics.cardinality_limit`` values (then ``other``, counted).
* :class:`OtlpEvaluationOutput` (``outputs.log_records``, ``outputs.late_results``): the GenAI
  conventions' ``gen_ai.evaluation.result`` event as an OTLP log record per score, and for a late
  judgment also a child span ``gen_ai.evaluation <name>`` of the judged span; batched and handed to
  the exporter (``consume_logs`` / ``consume_traces``) from the sink's own task.
* :class:`MetricsExporter` (``outputs.metrics.otlp``): every ``outputs.metrics.interval`` and at
  shutdown, the whole :class:`~otel_judge.telemetry.Telemetry` registry as one OTLP
  ``ExportMetricsServiceRequest`` (cumulative), through the ``otlp`` / ``otlphttp`` exporters'
  ``consume_metrics`` (the ``file`` and ``debug`` outputs get none).

:class:`Outputs` builds and runs them; :class:`SliceResolver` resolves ``quality.slices`` for the
judging stage.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import SEVERITY_NUMBER_INFO, SEVERITY_NUMBER_WARN
from opentelemetry.proto.metrics.v1.metrics_pb2 import AGGREGATION_TEMPORALITY_CUMULATIVE, Metric, NumberDataPoint
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from otel_judge import __version__, semconv
from otel_judge.component import Settings
from otel_judge.config import OutputsConfig
from otel_judge.enrich import MAX_EXPLANATION_CHARS
from otel_judge.exporter import Exporter, FanOutExporter, QueuedExporter
from otel_judge.logs import Throttle
from otel_judge.model import EvaluationRecord, EvaluationSink, EvaluationStatus, Score
from otel_judge.otlp import LogsBatch, MetricsBatch, TraceBatch, any_value_to_py, py_to_any_value
from otel_judge.sampling import Lookup, SamplingContext, TraceSummary
from otel_judge.telemetry import HistogramPoint

__all__ = [
    "OTHER",
    "EvaluationMetrics",
    "MetricsExporter",
    "OtlpEvaluationOutput",
    "Outputs",
    "SliceResolver",
    "normalised_score",
]

OTHER: Final = "other"  # the value of a slice attribute past outputs.metrics.cardinality_limit
MAX_SLICE_VALUE_CHARS: Final = 256
MAX_BUFFERED: Final = 10_000  # evaluation records waiting for the OTLP output's task at most
MAX_BATCH: Final = 1_000  # records per log / trace request it sends

Attrs = dict[str, Any]


# --------------------------------------------------------------------------- slices


class SliceResolver:
    """``quality.slices`` (name -> lookup in the sampling policies' syntax) resolved against a judged
    span, its resource and its trace's root span.

    The judging stage keeps, per judged span, only the span and resource attributes the lookups
    read (:meth:`span_subset`, :meth:`resource_subset`) and, per recently seen root span, only the
    root keys they read (:meth:`root_subset`), so nothing else of a span outlives its export.
    ``trace.KEY`` looks at the judged span only (no other span of the trace is remembered).
    """

    def __init__(self, slices: Mapping[str, str]) -> None:
        self._lookups = [(name, Lookup(expression)) for name, expression in slices.items()]
        alternatives = [alt for _, lookup in self._lookups for alt in lookup.alternatives]
        self.span_keys = frozenset(key for scope, key in alternatives if scope in (None, "span", "trace"))
        self.resource_keys = frozenset(key for scope, key in alternatives if scope in (None, "resource"))
        self.root_keys = frozenset(key for scope, key in alternatives if scope in (None, "root"))
        self.root_resource_keys = frozenset(key for scope, key in alternatives if scope == "root")

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self._lookups]

    @property
    def needs_root(self) -> bool:
        return bool(self.root_keys)

    @staticmethod
    def _subset(attributes: Iterable[KeyValue], keys: frozenset[str]) -> Attrs:
        return {kv.key: any_value_to_py(kv.value) for kv in attributes if kv.key in keys} if keys else {}

    def span_subset(self, span: Span) -> Attrs:
        return self._subset(span.attributes, self.span_keys)

    def resource_subset(self, resource: Resource) -> Attrs:
        return self._subset(resource.attributes, self.resource_keys)

    def root_subset(self, span: Span, resource: Resource) -> tuple[Attrs, Attrs]:
        return self._subset(span.attributes, self.root_keys), self._subset(resource.attributes, self.root_resource_keys)

    def resolve(
        self, span_attrs: Attrs, resource_attrs: Attrs, root: tuple[Attrs, Attrs] | None
    ) -> tuple[tuple[str, str], ...]:
        """``(name, value)`` for each slice that has a value, in configuration order."""
        summary = TraceSummary(root=root[0], root_resource=root[1]) if root is not None else TraceSummary()
        ctx = SamplingContext(b"", None, None, summary, _span_attrs=span_attrs, _resource_attrs=resource_attrs)
        out = []
        for name, lookup in self._lookups:
            value = _slice_value(lookup.first(ctx))
            if value is not None:
                out.append((name, value))
        return tuple(out)


def _slice_value(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float) and value.is_integer():
        text = str(int(value))
    elif isinstance(value, list | tuple):
        text = ",".join(str(v) for v in value)
    elif isinstance(value, bytes):
        text = value.hex()
    else:
        text = str(value)
    return text[:MAX_SLICE_VALUE_CHARS] if text else None


# --------------------------------------------------------------------------- metrics


def normalised_score(score: Score) -> float | None:
    """The score on 0 (worst) .. 1 (best) of its scale; None when the scale is not known."""
    low, high = score.low, score.high
    if low is None or high is None or not high > low or not math.isfinite(score.value):
        return None
    value = min(max((score.value - low) / (high - low), 0.0), 1.0)
    return value if score.higher_is_better else 1.0 - value


class EvaluationMetrics:
    """Records each evaluation into the evaluation instruments of the :class:`Telemetry` registry
    (served at ``/metrics`` and exported over OTLP by :class:`MetricsExporter`).

    Attributes: ``gen_ai.evaluation.name`` (the score key for score and pass/fail; the evaluator's
    name for results, cost and tokens) and one per configured slice that has a value for the span;
    a slice without a value is left out (OpenTelemetry's "absent = unknown"; Prometheus reads it as
    an empty label). Each slice keeps at most ``cardinality_limit`` distinct values for the life of
    the process; further values are recorded as ``other`` and counted in
    ``otel_judge.metrics.overflow``.
    """

    name = "metrics"

    def __init__(self, settings: Settings, cardinality_limit: int) -> None:
        self._telemetry = settings.telemetry
        self._limit = cardinality_limit
        self._seen: dict[str, set[str]] = {}

    def _cap(self, slice_name: str, value: str) -> str:
        seen = self._seen.setdefault(slice_name, set())
        if value in seen:
            return value
        if len(seen) < self._limit:
            seen.add(value)
            return value
        self._telemetry.add("otel_judge.metrics.overflow", slice=slice_name)
        return OTHER

    def record(self, records: Sequence[EvaluationRecord]) -> None:
        telemetry = self._telemetry
        for record in records:
            slices = {name: self._cap(name, value) for name, value in record.slices}
            result = record.result
            by_evaluator = {**slices, semconv.GEN_AI_EVALUATION_NAME: result.evaluator}
            status = {**by_evaluator, semconv.OTEL_JUDGE_EVALUATION_STATUS: result.status.value}
            telemetry.add("otel_judge.evaluation.results", 1, **status)
            usage = result.usage
            if usage.cost_usd:
                telemetry.add("otel_judge.evaluation.cost", usage.cost_usd, **by_evaluator)
            for kind, tokens in (("input", usage.input_tokens), ("output", usage.output_tokens)):
                if tokens:
                    telemetry.add("otel_judge.evaluation.tokens", tokens, **{**by_evaluator, "type": kind})
            if record.started_ns and record.time_ns >= record.started_ns:
                # Judge latency as the slice sees it: from submitting the span to this judgment's end.
                seconds = (record.time_ns - record.started_ns) / 1e9
                telemetry.record("otel_judge.evaluation.duration", seconds, **by_evaluator)
            for score in result.scores:
                by_score = {**slices, semconv.GEN_AI_EVALUATION_NAME: score.key}
                value = normalised_score(score)
                if value is not None:
                    telemetry.record("otel_judge.evaluation.score", value, **by_score)
                verdict = score.is_pass
                if verdict is not None:
                    outcome = "pass" if verdict else "fail"
                    telemetry.add("otel_judge.evaluation.passed", 1, **{**by_score, "outcome": outcome})

    async def start(self) -> None:
        return None

    async def shutdown(self, deadline: float) -> None:
        return None


# --------------------------------------------------------------------------- log records and late spans


def _set(attributes: Any, key: str, value: Any) -> None:
    kv = attributes.add()
    kv.key = key
    py_to_any_value(value, kv.value)


def _evaluation_attributes(attributes: Any, record: EvaluationRecord, score: Score | None, name: str) -> None:
    """The ``gen_ai.evaluation.result`` attributes of one score (or of a failed evaluation)."""
    result = record.result
    _set(attributes, semconv.GEN_AI_EVALUATION_NAME, name)
    if score is not None:
        _set(attributes, semconv.GEN_AI_EVALUATION_SCORE_VALUE, float(score.value))
        if score.label is not None:
            _set(attributes, semconv.GEN_AI_EVALUATION_SCORE_LABEL, score.label)
        if score.explanation:
            _set(attributes, semconv.GEN_AI_EVALUATION_EXPLANATION, score.explanation[:MAX_EXPLANATION_CHARS])
    if record.response_id:
        _set(attributes, semconv.GEN_AI_RESPONSE_ID, record.response_id)
    if result.status is not EvaluationStatus.EVALUATED:
        _set(attributes, semconv.ERROR_TYPE, result.status.value)
    _set(attributes, semconv.OTEL_JUDGE_EVALUATION_ID, record.evaluation_id)
    _set(attributes, semconv.OTEL_JUDGE_EVALUATION_STATUS, result.status.value)
    if result.judge_model:
        _set(attributes, semconv.OTEL_JUDGE_JUDGE_MODEL, result.judge_model)
    if record.sampling_probability is not None:
        _set(attributes, semconv.OTEL_JUDGE_SAMPLING_PROBABILITY, float(record.sampling_probability))
    if record.late:
        _set(attributes, semconv.OTEL_JUDGE_EVALUATION_LATE, True)


def _results(record: EvaluationRecord) -> list[tuple[Score | None, str]]:
    """One entry per score; a judgment without scores (a failure) is one entry named after its evaluator."""
    scores = record.result.scores
    return [(s, s.key) for s in scores] if scores else [(None, record.result.evaluator)]


def _scope() -> InstrumentationScope:
    return InstrumentationScope(name=semconv.SCOPE_NAME, version=__version__)


class _ByResource:
    """Groups what is built per judged span under one copy of that span's resource."""

    def __init__(self, add: Any) -> None:
        self._add = add
        self._index: dict[int, Any] = {}

    def scope(self, resource: Resource | None) -> Any:
        key = id(resource)
        found = self._index.get(key)
        if found is None:
            container = self._add()
            if resource is not None:
                container.resource.CopyFrom(resource)
            found = self._index[key] = container
            return found
        return found


def build_log_records(records: Sequence[EvaluationRecord], observed_ns: int) -> ExportLogsServiceRequest:
    """One OTLP log record per score: the GenAI conventions' ``gen_ai.evaluation.result`` event,
    with the trace and span id of the judged span, under the judged span's resource."""
    request = ExportLogsServiceRequest()
    scopes: dict[int, Any] = {}
    groups = _ByResource(request.resource_logs.add)
    for record in records:
        rl = groups.scope(record.resource)
        sl = scopes.get(id(rl))
        if sl is None:
            sl = scopes[id(rl)] = rl.scope_logs.add(scope=_scope())
        failed = record.result.status is not EvaluationStatus.EVALUATED
        for score, name in _results(record):
            log = sl.log_records.add()
            log.event_name = semconv.EVENT_EVALUATION_RESULT
            log.time_unix_nano = record.time_ns
            log.observed_time_unix_nano = observed_ns
            log.severity_number = SEVERITY_NUMBER_WARN if failed else SEVERITY_NUMBER_INFO
            log.severity_text = "WARN" if failed else "INFO"
            log.trace_id = record.trace_id
            log.span_id = record.span_id
            _evaluation_attributes(log.attributes, record, score, name)
    return request


def build_late_spans(records: Sequence[EvaluationRecord], rng: random.Random) -> ExportTraceServiceRequest:
    """Per score of a late judgment, a span ``gen_ai.evaluation <name>``: a child of the judged span
    (same trace, fresh span id), from the start to the end of the judgment, with the evaluation
    attributes; status ERROR when the evaluation failed."""
    request = ExportTraceServiceRequest()
    scopes: dict[int, Any] = {}
    groups = _ByResource(request.resource_spans.add)
    for record in records:
        rs = groups.scope(record.resource)
        ss = scopes.get(id(rs))
        if ss is None:
            ss = scopes[id(rs)] = rs.scope_spans.add(scope=_scope())
        status = record.result.status
        for score, name in _results(record):
            span = ss.spans.add()
            span.trace_id = record.trace_id
            span.span_id = _span_id(rng)
            span.parent_span_id = record.span_id
            span.name = f"{semconv.EVALUATION_SPAN_NAME} {name}"
            span.kind = Span.SPAN_KIND_INTERNAL
            span.start_time_unix_nano = min(record.started_ns or record.time_ns, record.time_ns)
            span.end_time_unix_nano = record.time_ns
            _evaluation_attributes(span.attributes, record, score, name)
            if status is not EvaluationStatus.EVALUATED:
                span.status.code = Status.STATUS_CODE_ERROR
                span.status.message = status.value  # never the error text: it may quote the judged content
    return request


def _span_id(rng: random.Random) -> bytes:
    while True:
        value = rng.getrandbits(64)
        if value:
            return value.to_bytes(8, "big")


class OtlpEvaluationOutput:
    """The evaluation log records (``outputs.log_records``) and late results (``outputs.late_results``:
    the log record, even with log records off, and a child span), handed to the exporter in batches
    from this sink's task. :meth:`record` only buffers (at most :data:`MAX_BUFFERED` records; beyond,
    records are dropped and counted in ``otel_judge.outputs.dropped``)."""

    name = "otlp_outputs"

    def __init__(self, exporter: Exporter, settings: Settings, *, log_records: bool, late_results: bool) -> None:
        self._exporter = exporter
        self._settings = settings
        self._log_records = log_records
        self._late_results = late_results
        self._buffer: list[EvaluationRecord] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopped = False
        self._rng = random.Random()
        self._throttle = Throttle(settings)

    def record(self, records: Sequence[EvaluationRecord]) -> None:
        telemetry = self._settings.telemetry
        for record in records:
            if not (self._log_records or (record.late and self._late_results)):
                continue
            output = "late_results" if record.late else "log_records"
            if self._stopped:
                telemetry.add("otel_judge.outputs.dropped", output=output, reason="stopped")
            elif len(self._buffer) >= MAX_BUFFERED:
                telemetry.add("otel_judge.outputs.dropped", output=output, reason="full")
            else:
                self._buffer.append(record)
        if self._buffer:
            self._wakeup.set()

    async def start(self) -> None:
        if self._task is None and not self._stopped:
            self._task = asyncio.create_task(self._run(), name="evaluation-outputs")

    async def shutdown(self, deadline: float) -> None:
        """Stop taking records and hand what is buffered to the exporter."""
        if self._stopped:
            return
        self._stopped = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            await self.flush()

    async def flush(self) -> None:
        """Send everything buffered now (a log request and, for late results, a trace request per
        :data:`MAX_BATCH` records)."""
        while self._buffer:
            batch, self._buffer = self._buffer[:MAX_BATCH], self._buffer[MAX_BATCH:]
            await self._send("logs", batch)
            late = [r for r in batch if r.late and self._late_results]
            if late:
                await self._send("traces", late)

    async def _send(self, signal: str, records: list[EvaluationRecord]) -> None:
        try:
            if signal == "logs":
                observed = self._settings.clock.time_ns()
                await self._exporter.consume_logs(LogsBatch(build_log_records(records, observed)))
            else:
                await self._exporter.consume_traces(TraceBatch(build_late_spans(records, self._rng)))
        except Exception as exc:  # never let an output's failure reach the pipeline
            telemetry = self._settings.telemetry
            late = sum(1 for r in records if r.late)
            for output, count in (("late_results", late), ("log_records", len(records) - late)):
                if count:
                    telemetry.add("otel_judge.outputs.dropped", count, output=output, reason="error")
            suppressed = self._throttle.allow(type(exc).__name__)
            if suppressed is not None:
                self._settings.logger.warning(
                    "evaluation outputs: could not hand %d record(s) to the exporter (%s; %d more since)",
                    len(records),
                    type(exc).__name__,
                    suppressed,
                )


# --------------------------------------------------------------------------- OTLP metrics


class MetricsExporter:
    """Every ``interval`` (checked by :meth:`tick`), the whole telemetry registry as one OTLP
    metrics request: counters as monotonic cumulative sums, gauges as gauges, histograms with their
    explicit bounds (cumulative), under a resource ``service.name=otel-judge``."""

    def __init__(self, exporter: Exporter, settings: Settings, interval: float) -> None:
        self._exporter = exporter
        self._settings = settings
        self._interval = interval
        self._start_ns = settings.clock.time_ns()
        self._due = settings.clock.monotonic() + interval
        self._resource = Resource()
        for key, value in (
            (semconv.SERVICE_NAME, semconv.OTEL_JUDGE_SERVICE_NAME),
            (semconv.SERVICE_VERSION, __version__),
            (semconv.SERVICE_INSTANCE_ID, str(uuid.uuid4())),
        ):
            _set(self._resource.attributes, key, value)
        self._throttle = Throttle(settings)

    async def tick(self) -> None:
        """Export when ``interval`` has passed since the last export."""
        now = self._settings.clock.monotonic()
        if now < self._due:
            return
        self._due = now + self._interval
        await self.export()

    def build(self) -> ExportMetricsServiceRequest:
        now_ns = self._settings.clock.time_ns()
        request = ExportMetricsServiceRequest()
        rm = request.resource_metrics.add()
        rm.resource.CopyFrom(self._resource)
        sm = rm.scope_metrics.add(scope=_scope())
        metrics: dict[str, Metric] = {}
        for inst, key, value in self._settings.telemetry.collect():
            metric = metrics.get(inst.name)
            if metric is None:
                metric = metrics[inst.name] = sm.metrics.add(
                    name=inst.name, unit=inst.unit, description=inst.description
                )
                if inst.kind == "counter":
                    metric.sum.aggregation_temporality = AGGREGATION_TEMPORALITY_CUMULATIVE
                    metric.sum.is_monotonic = True
                elif inst.kind == "histogram":
                    metric.histogram.aggregation_temporality = AGGREGATION_TEMPORALITY_CUMULATIVE
            if isinstance(value, HistogramPoint):
                point = metric.histogram.data_points.add(
                    start_time_unix_nano=self._start_ns,
                    time_unix_nano=now_ns,
                    count=value.count,
                    sum=value.sum,
                    bucket_counts=value.counts,
                    explicit_bounds=value.bounds,
                )
            else:
                data = metric.sum if inst.kind == "counter" else metric.gauge
                point = data.data_points.add(time_unix_nano=now_ns)
                if inst.kind == "counter":
                    point.start_time_unix_nano = self._start_ns
                _number(point, value)
            for attr, attr_value in key:
                _set(point.attributes, attr, attr_value)
        return request

    async def export(self) -> None:
        """Hand the current values to the exporter now (also the final export at shutdown)."""
        try:
            request = self.build()
            if request.resource_metrics[0].scope_metrics[0].metrics:
                await self._exporter.consume_metrics(MetricsBatch(request))
        except Exception as exc:  # never let an output's failure reach the pipeline
            self._settings.telemetry.add("otel_judge.outputs.dropped", output="metrics", reason="error")
            if self._throttle.allow(type(exc).__name__) is not None:
                self._settings.logger.warning("metrics export failed: %s", type(exc).__name__)


def _number(point: NumberDataPoint, value: float) -> None:
    if float(value).is_integer() and abs(value) < 2**63:
        point.as_int = int(value)
    else:
        point.as_double = float(value)


# --------------------------------------------------------------------------- wiring


class Outputs:
    """Every output of judgments besides the judged span, built from ``outputs``: the sinks the
    judging stage feeds (:attr:`sinks`), and the periodic OTLP metrics export, driven by
    :meth:`tick` (the pipeline's housekeeping task; tests call it after advancing a fake clock)."""

    def __init__(self, config: OutputsConfig, exporter: Exporter, settings: Settings) -> None:
        self._settings = settings
        self.metrics = EvaluationMetrics(settings, config.metrics.cardinality_limit)
        self.sinks: list[EvaluationSink] = [self.metrics]
        self.otlp: OtlpEvaluationOutput | None = None
        if config.log_records or config.late_results:
            self.otlp = OtlpEvaluationOutput(
                exporter, settings, log_records=config.log_records, late_results=config.late_results
            )
            self.sinks.append(self.otlp)
        # Metrics go to the OTLP exporters only (a file or console output is for spans and logs).
        otlp_exporters = _otlp_exporters(exporter)
        self.metrics_exporter = (
            MetricsExporter(
                otlp_exporters[0] if len(otlp_exporters) == 1 else FanOutExporter(otlp_exporters),
                settings,
                config.metrics.interval,
            )
            if config.metrics.otlp and otlp_exporters
            else None
        )
        self._stopped = False

    async def start(self) -> None:
        for sink in self.sinks:
            await sink.start()

    async def tick(self) -> None:
        """Export the metrics when ``outputs.metrics.interval`` has passed."""
        if self.metrics_exporter is not None:
            await self.metrics_exporter.tick()

    async def shutdown(self, deadline: float) -> None:
        """Flush every sink, then export the metrics a last time. Safe twice."""
        if self._stopped:
            return
        self._stopped = True
        for sink in self.sinks:
            try:
                await sink.shutdown(deadline)
            except Exception:
                self._settings.logger.exception("shutting down output %s failed", type(sink).__name__)
        if self.metrics_exporter is not None:
            await self.metrics_exporter.export()


def _otlp_exporters(exporter: Exporter) -> list[Exporter]:
    """The OTLP (gRPC, HTTP) exporters among ``exporter`` and, for a fan-out, its parts."""
    if isinstance(exporter, FanOutExporter):
        return [found for part in exporter.exporters for found in _otlp_exporters(part)]
    return [exporter] if isinstance(exporter, QueuedExporter) else []
