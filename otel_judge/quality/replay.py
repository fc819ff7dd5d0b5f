"""``otel-judge replay``: judge archived OTLP data offline, for CI gates and backfills.

The files (OTLP protobuf requests, or OTLP/JSON lines as the Collector's file exporter writes them;
traces and logs, so content log records join their spans) are read whole, regrouped by trace, and
fed trace by trace through the same judging stage, judge pool, judge and evaluators as ``serve``
(no receivers): the scores are those the live pipeline would give. Spans are discarded afterwards;
every judgment goes to the evaluation store when one is configured, and to the summary.

Differences from ``serve``, all deliberate: every model call is judged unless ``sampled`` (the
configured sampling policies then apply); traces are decided as soon as they are fed
(``decision_wait`` 0, the whole trace is fed at once); no quality API, regression detection, health
server or persistent queue runs. A judgment the store already holds for an evaluation id (same span,
same evaluator settings) is reused, not paid for again, within ``judge.cache.ttl``.
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from otel_judge import semconv
from otel_judge.component import Settings
from otel_judge.config import Config, StoreConfig, validate_config
from otel_judge.model import EvaluationRecord, EvaluationSink
from otel_judge.otlp import LogsBatch, TraceBatch, iter_log_records, iter_spans
from otel_judge.quality.model import StoredEvaluation
from otel_judge.quality.stats import Estimate, estimate
from otel_judge.quality.store import stored_evaluations
from otel_judge.reader import GenAIReader

__all__ = ["ReplayError", "ReplayResult", "replay", "replay_config"]

MAX_CHUNK_SPANS = 1000  # model-call spans fed before waiting for their judgments


class ReplayError(Exception):
    """Replay cannot run with this configuration (no evaluator, ...)."""


@dataclass(slots=True)
class ReplayResult:
    traces: int = 0
    spans: int = 0
    records: list[EvaluationRecord] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)  # judged spans by otel_judge.evaluation.status
    rows: list[StoredEvaluation] = field(default_factory=list)

    def overall(self, evaluator: str) -> Estimate:
        """The evaluator's own score (not its criteria) over everything replayed."""
        rows = [r for r in self.rows if r.score_key == evaluator and r.value is not None]
        return estimate(
            [r.value for r in rows if r.value is not None], [r.weight for r in rows], [r.passed for r in rows]
        )

    @property
    def evaluators(self) -> list[str]:
        return sorted({r.evaluator for r in self.rows})


def replay_config(config: Config, *, sampled: bool = False, store_url: str | None = None) -> Config:
    """``config`` as replay runs it: no receivers, health server, quality API, alerts or persistent
    queue; traces decided at once; every model call judged unless ``sampled``; ``store_url`` replaces
    (or adds) the evaluation store."""
    # Only what the user set (validators tell explicit values from defaults), plus our changes.
    data = config.model_dump(mode="python", exclude_unset=True, by_alias=True, round_trip=True)
    data.setdefault("receivers", {}).setdefault("otlp", {})["protocols"] = {"grpc": None, "http": None}
    data.setdefault("service", {})["health"] = None
    data["storage"] = None
    quality = data.setdefault("quality", {})
    quality["api"] = None
    quality["alerts"] = []
    sampling = data.setdefault("sampling", {})
    sampling["decision_wait"] = 0.0
    sampling["decision_wait_after_root_received"] = 0.0
    if not sampled:
        sampling["policies"] = [
            {"name": "replay", "type": "probabilistic", "probabilistic": {"sampling_percentage": 100}}
        ]
    if store_url is not None:
        store = dict(data.get("store") or {})
        store["url"] = store_url
        if not store_url.startswith("postgres"):
            store.pop("postgres_schema", None)
        data["store"] = store
    return validate_config(data)


class _Collector:
    """Receives every judgment (an evaluation sink) and wakes the feeder when spans come out."""

    def __init__(self) -> None:
        self.records: list[EvaluationRecord] = []
        self.statuses: Counter[str] = Counter()
        self.released = asyncio.Event()

    # EvaluationSink
    def record(self, records: Sequence[EvaluationRecord]) -> None:
        self.records.extend(records)

    async def start(self) -> None:
        return None

    async def shutdown(self, deadline: float) -> None:
        return None

    # Exporter: the spans are not kept; only their evaluation status is counted.
    async def consume_traces(self, batch: TraceBatch) -> None:
        for _, _, span in iter_spans(batch.request.resource_spans):
            for kv in span.attributes:
                if kv.key == semconv.OTEL_JUDGE_EVALUATION_STATUS:
                    self.statuses[kv.value.string_value] += 1
                    break
        self.released.set()

    async def consume_logs(self, batch: LogsBatch) -> None:
        return None

    async def consume_metrics(self, batch: Any) -> None:
        return None

    def ensure_capacity(self) -> None:
        return None


@dataclass(slots=True)
class _Trace:
    spans: list[tuple[Any, Any, Any]] = field(default_factory=list)  # (resource_spans, scope_spans, span)
    logs: list[tuple[Any, Any, Any]] = field(default_factory=list)  # (resource_logs, scope_logs, record)
    candidates: int = 0


def _group(
    traces: Iterable[ExportTraceServiceRequest], logs: Iterable[ExportLogsServiceRequest], reader: GenAIReader
) -> dict[bytes, _Trace]:
    grouped: dict[bytes, _Trace] = defaultdict(_Trace)
    for request in traces:
        for rs, ss, span in iter_spans(request.resource_spans):
            trace = grouped[bytes(span.trace_id)]
            trace.spans.append((rs, ss, span))
            trace.candidates += reader.is_candidate(span)
    for request in logs:
        for rl, sl, record in iter_log_records(request.resource_logs):
            if len(record.trace_id) == 16 and bytes(record.trace_id) in grouped:
                grouped[bytes(record.trace_id)].logs.append((rl, sl, record))
    return grouped


def _chunks(grouped: dict[bytes, _Trace], limit: int) -> Iterable[list[_Trace]]:
    chunk: list[_Trace] = []
    size = 0
    for trace in grouped.values():
        if chunk and size + trace.candidates > limit:
            yield chunk
            chunk, size = [], 0
        chunk.append(trace)
        size += trace.candidates
    if chunk:
        yield chunk


def _requests(chunk: list[_Trace]) -> tuple[ExportTraceServiceRequest, ExportLogsServiceRequest]:
    """The chunk's spans and log records as one request each, under their original resource and scope."""
    spans = ExportTraceServiceRequest()
    rs_out: dict[int, Any] = {}
    ss_out: dict[int, Any] = {}
    logs = ExportLogsServiceRequest()
    rl_out: dict[int, Any] = {}
    sl_out: dict[int, Any] = {}
    for trace in chunk:
        for rs, ss, span in trace.spans:
            if id(rs) not in rs_out:
                rs_out[id(rs)] = spans.resource_spans.add(resource=rs.resource, schema_url=rs.schema_url)
            if id(ss) not in ss_out:
                ss_out[id(ss)] = rs_out[id(rs)].scope_spans.add(scope=ss.scope, schema_url=ss.schema_url)
            ss_out[id(ss)].spans.append(span)
        for rl, sl, record in trace.logs:
            if id(rl) not in rl_out:
                rl_out[id(rl)] = logs.resource_logs.add(resource=rl.resource, schema_url=rl.schema_url)
            if id(sl) not in sl_out:
                sl_out[id(sl)] = rl_out[id(rl)].scope_logs.add(scope=sl.scope, schema_url=sl.schema_url)
            sl_out[id(sl)].log_records.append(record)
    return spans, logs


class _AtCallTime:
    """Passes records on with ``time_ns`` set to the judged span's end time (when known)."""

    def __init__(self, sink: EvaluationSink, ends: dict[tuple[bytes, bytes], int]) -> None:
        self._sink = sink
        self._ends = ends

    def record(self, records: Sequence[EvaluationRecord]) -> None:
        self._sink.record(
            [replace(r, time_ns=end) if (end := self._ends.get((r.trace_id, r.span_id))) else r for r in records]
        )

    async def start(self) -> None:  # the pipeline starts and stops the store sink itself
        return None

    async def shutdown(self, deadline: float) -> None:
        return None


async def replay(
    config: Config,
    traces: Sequence[ExportTraceServiceRequest],
    logs: Sequence[ExportLogsServiceRequest] = (),
    *,
    settings: Settings | None = None,
    judge: Any = None,
    progress: Callable[[int], None] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> ReplayResult:
    """Judge ``traces`` (with ``logs`` for content joins) as ``config`` (already passed through
    :func:`replay_config`) says; write to its store. ``on_start(total traces)`` and ``progress(traces
    done)`` drive a progress bar. Raises ReplayError when nothing can judge, OSError when the store
    cannot be opened."""
    from otel_judge.pipeline import Pipeline

    settings = settings or Settings()
    collector = _Collector()
    pipeline = Pipeline(config, settings, judge=judge, exporter=collector, sinks=[collector])
    if not pipeline.evaluators:
        raise ReplayError(
            "no evaluator can run: set judge.model (or OTEL_JUDGE_MODEL) for LLM evaluators, or configure checks"
        )
    pipeline.detector = None  # replay judges; it does not watch for regressions
    if pipeline.store_sink is not None:
        # A backfill must land when the archived calls happened, not when the replay judged them: the
        # store (and so reports, the API and the detector's windows) sees each row at its span's end time.
        ends = {
            (bytes(span.trace_id), bytes(span.span_id)): span.end_time_unix_nano
            for request in traces
            for rs in request.resource_spans
            for ss in rs.scope_spans
            for span in ss.spans
            if span.end_time_unix_nano
        }
        index = pipeline.sinks.index(pipeline.store_sink)
        pipeline.sinks[index] = _AtCallTime(pipeline.store_sink, ends)
    processor = pipeline.processor
    grouped = _group(traces, logs, GenAIReader.from_config(config.reader))
    result = ReplayResult(traces=len(grouped), spans=sum(len(t.spans) for t in grouped.values()))
    if on_start is not None:
        on_start(len(grouped))
    per_chunk = max(1, min(MAX_CHUNK_SPANS, config.judge.queue_size // max(1, len(pipeline.evaluators))))
    await pipeline.start(tick_interval=None)
    try:
        for chunk in _chunks(grouped, per_chunk):
            span_request, log_request = _requests(chunk)
            if log_request.resource_logs:
                await processor.consume_logs(LogsBatch(log_request))
            await processor.consume_traces(TraceBatch(span_request))
            await processor.tick()  # decides every trace fed (decision_wait is 0)
            while processor.held_count:  # wait for the judgments: each released span wakes us
                collector.released.clear()
                await collector.released.wait()
                await processor.tick()  # expires holds past judge.max_hold, as serve's ticker would
            if pipeline.store_sink is not None:
                await pipeline.store_sink.flush()  # the sink's queue never overflows during a replay
            if progress is not None:
                progress(len(chunk))
    finally:
        await pipeline.shutdown()
    result.records = collector.records
    result.statuses = collector.statuses
    store = config.store
    max_chars = store.max_explanation_chars if store else StoreConfig.model_fields["max_explanation_chars"].default
    result.rows = [row for record in collector.records for row in stored_evaluations(record, max_chars)]
    return result
