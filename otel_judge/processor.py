"""The judging stage: finds LLM-call spans, holds them for a decision, judges a sample, releases.

For each export request:

* spans that are not LLM calls pass untouched and at once (when judging is off, or a request has
  no candidate span, its received bytes are forwarded as they are);
* an LLM-call span is taken out of the request and kept in its trace's record until the decision
  (``sampling.decision_wait`` after the trace's first span, or ``decision_wait_after_root_received``
  after its root span), so that content log records, which may arrive before or after the span in
  another export, can be joined to it;
* at the decision each held span is read (span plus joined records); one not sampled, without
  content or not judgeable right now is exported with an ``otel_judge.evaluation.status`` saying
  why; the others are judged and exported with their scores when every evaluator has answered or
  ``judge.max_hold`` passes.

Everything is bounded (``num_traces``, ``max_held_spans``, ``max_logs_per_trace``, the judge
queue) and no bound ever costs a span: at a bound a trace is decided early or a span is exported
with status ``skipped_overload``. Log records are always forwarded unchanged; only copies of the
GenAI content records are kept for the join.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import heapq
import json
from collections import Counter, OrderedDict, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from otel_judge import semconv
from otel_judge.bias import same_family
from otel_judge.component import Settings, run_every
from otel_judge.config import OutputsConfig, PiiKind, SamplingConfig
from otel_judge.enrich import apply_results, overall_status, set_status
from otel_judge.evaluators import Evaluator
from otel_judge.exporter import Exporter
from otel_judge.logs import Throttle, ids
from otel_judge.model import EvaluationRecord, EvaluationResult, EvaluationSink, EvaluationStatus, Exchange
from otel_judge.otlp import LogsBatch, TraceBatch, attributes_to_dict, set_attribute
from otel_judge.outputs import SliceResolver
from otel_judge.pii import redact_exchange
from otel_judge.pool import JudgePool
from otel_judge.reader import (
    CONTENT_CAPTURE_HINTS,
    Claim,
    ContentReader,
    GenAIReader,
    ReadError,
    SpanView,
    is_content_record,
)
from otel_judge.reader.join import join_logs, nested_duplicates
from otel_judge.reader.scan import append_to_spans, light_request, scope_layout, splice_scopes
from otel_judge.sampling import Decision, Sampler, SamplingContext, TraceSummary
from otel_judge.storage import Entry, acquire, release

__all__ = ["JudgeProcessor", "evaluation_id"]

NO_CONTENT_HINT_INTERVAL = 60.0
RECENT_ROOTS = 10_000  # root spans remembered for traces whose LLM spans have not arrived yet
MAX_AWAITING_ROOT = 10_000  # evaluation records waiting for their trace's root span (for slices) at most
MAX_OPEN_JUDGMENTS = 100_000  # judged spans remembered until their last (possibly late) judgment


_NOTHING_KNOWN = TraceSummary()  # what a decision on arrival knows of the span's trace (policies only read it)


def _encode_changed(batch: TraceBatch, changed: set[tuple[int, int]]) -> None:
    """Only spans of the ``changed`` (resource, scope) positions got an attribute: re-encode those
    scopes into the received bytes rather than the whole request; the whole request when the bytes
    are gone or do not match it."""
    layout = None if batch.is_modified else scope_layout(batch.to_bytes())
    request = batch.request
    if (
        layout is None
        or len(layout) != len(request.resource_spans)
        or any(
            len(scopes) != len(rs.scope_spans) for (_, scopes), rs in zip(layout, request.resource_spans, strict=True)
        )
    ):
        batch.mark_modified()
        return
    replaced = {(i, j): request.resource_spans[i].scope_spans[j].SerializeToString() for i, j in changed}
    batch.modified_to(splice_scopes(batch.to_bytes(), layout, replaced))


_STATUS_KEY = semconv.OTEL_JUDGE_EVALUATION_STATUS


def _attribute_field(key: str, value: str) -> bytes:
    """A string attribute encoded as one ``Span.attributes`` entry (field 9), ready to append."""
    entry: bytes = KeyValue(key=key, value=AnyValue(string_value=value)).SerializeToString()
    return b"\x4a" + _varint(len(entry)) + entry


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_SAMPLED_OUT_FIELD = _attribute_field(_STATUS_KEY, EvaluationStatus.SAMPLED_OUT.value)


def _write_deferred(deferred: list[tuple[Span, Any]]) -> None:
    """Write the deferred ``sampled_out`` statuses into the message (once: the list is emptied)."""
    for span, keys in deferred:
        set_status(span, EvaluationStatus.SAMPLED_OUT, keys)
    deferred.clear()


def _light(batch: TraceBatch) -> Any | None:
    """The request's spans' attribute keys (:mod:`otel_judge.reader.scan`), or None when the received
    bytes are gone (the request was changed) or the light tree does not match the request."""
    if batch.is_modified:
        return None
    light = light_request(batch.to_bytes())
    if light is None or len(light.resource_spans) != len(batch.request.resource_spans):
        return None
    return light


def evaluation_id(trace_id: bytes, span_id: bytes, evaluator: Evaluator) -> str:
    """Deterministic id of one evaluator's judgment of one span (the idempotency key)."""
    digest = hashlib.sha256(trace_id + span_id + evaluator.name.encode() + evaluator.config_hash.encode())
    return digest.hexdigest()[:32]


@dataclass(slots=True, eq=False)
class _Held:
    """One LLM-call span out of its request: awaiting the decision, then its judgment.

    ``stored`` is the span, or its wire bytes while it waits for its trace's decision: a parsed span
    takes ~4x its encoded size in memory (5.3 KB for a 1.3 KB chat span), and tens of thousands wait
    ``decision_wait`` at once. :attr:`span` parses it on first use."""

    resource_spans: ResourceSpans  # resource and schema only
    scope_spans: ScopeSpans  # scope and schema only
    stored: Span | bytes
    reader: ContentReader
    size: int = 0  # bytes, for max_held_bytes
    decision: Decision | None = None  # made on arrival when the policies need nothing else of the trace
    response_id: str | None = None  # of the judged call, for the evaluation events
    deadline: float = 0.0  # max_hold deadline, set when judging starts
    pending: int = 0
    results: list[EvaluationResult] = field(default_factory=list)
    tokens: tuple[Entry, ...] = ()  # persistent mode: one reference to the stored request it came in

    @property
    def span(self) -> Span:
        stored = self.stored
        if isinstance(stored, bytes):
            stored = self.stored = Span.FromString(stored)
        return stored


@dataclass(slots=True, eq=False)
class _Judged:
    """What the evaluation outputs need of a judged span, kept until its last judgment is in (also
    after ``max_hold`` released the span, so that late judgments can still be emitted)."""

    trace_id: bytes
    span_id: bytes
    resource: Resource  # the held span's resource (shared with its request's other held spans)
    span_attrs: dict[str, Any]  # only the keys the slice lookups read
    resource_attrs: dict[str, Any]
    evaluators: Mapping[str, Evaluator]  # by name: the set that judges it (for evaluation ids)
    probability: float | None
    judged_model: str | None
    response_id: str | None
    started_ns: int
    pending: int
    slices: tuple[tuple[str, str], ...] | None = None  # resolved once the root is known or no longer awaited


@dataclass(slots=True, eq=False)
class _Trace:
    """What is remembered of a trace until its decision."""

    trace_id: bytes
    decide_at: float
    root_seen: bool = False
    spans: list[_Held] = field(default_factory=list)
    logs: dict[bytes, list[LogRecord]] = field(default_factory=dict)  # span id -> content records
    log_count: int = 0
    summary: TraceSummary = field(default_factory=TraceSummary)  # what policies need of its other spans


class JudgeProcessor:
    """Stage between the receivers and the exporter. ``tick()`` decides due traces and expires holds;
    production calls it from a task (``start(tick_interval)``), tests after advancing a fake clock."""

    def __init__(
        self,
        next_consumer: Exporter,
        *,
        sampler: Sampler,
        reader: GenAIReader,
        pool: JudgePool | None,
        evaluators: Sequence[Evaluator],
        max_hold: float,
        sampling: SamplingConfig,
        settings: Settings,
        alternative_evaluators: Sequence[Evaluator] = (),
        judge_model: str | None = None,
        content_cache: bool = False,
        redact: Sequence[PiiKind] | None = None,
        outputs: OutputsConfig | None = None,
        sinks: Sequence[EvaluationSink] = (),
        slices: Mapping[str, str] | None = None,
    ) -> None:
        """``sinks`` receive an :class:`EvaluationRecord` per completed judgment (late ones included),
        with ``slices`` (name -> lookup, ``quality.slices``) resolved against the judged span, its
        resource and its trace's root span."""
        self._next = next_consumer
        self._sampler = sampler
        self._reader = reader
        self._pool = pool if evaluators else None
        self._evaluators = tuple(evaluators)
        # Preference leakage: spans whose model shares the judge's family are judged by these, or marked.
        self._alternative = tuple(alternative_evaluators)
        self._judge_model = judge_model
        self._content_cache = content_cache
        self._outputs = outputs or OutputsConfig()
        self._redact = tuple(redact) if redact is not None else None  # PII kinds removed before judging
        self._max_hold = max_hold
        self._sampling = sampling
        self._needs_all_spans = sampler.needs.any
        self._decide_on_arrival = not sampler.needs.any
        self._settings = settings
        self._clock = settings.clock
        self._telemetry = settings.telemetry
        self._traces: dict[bytes, _Trace] = {}  # insertion order = arrival order (for deciding early)
        # Decided traces (LRU): late spans of them are decided at once, with what was known of the trace.
        self._decided: OrderedDict[bytes, TraceSummary] = OrderedDict()
        self._held_bytes = 0
        self._recent_roots: OrderedDict[bytes, None] = OrderedDict()  # roots seen before any LLM span
        self._due: list[tuple[float, int, bytes]] = []  # (decide_at, seq, trace id); stale entries skipped
        self._seq = 0
        self._pending_spans = 0
        # Spans being judged; insertion order is deadline order (max_hold is constant).
        self._judging: dict[int, _Held] = {}
        self._next_id = 0
        self._drained = asyncio.Event()
        self._drained.set()
        self._ticker: asyncio.Task[None] | None = None
        self._stopped = False
        self._no_content: dict[str, tuple[int, float]] = {}  # reader -> (spans since last hint, when)
        # Evaluation outputs. Nothing of this runs for spans that are not judged, but a dict lookup per
        # root span when a slice reads the root: the looked-up keys of the roots of traces with a
        # held or judged span are remembered (bounded) for the records.
        self._sinks = sinks  # the caller's sequence: a sink it adds before start is fed too
        self._slices = SliceResolver(slices or {})
        self._watch_roots = bool(self._sinks) and self._pool is not None and self._slices.needs_root
        self._roots: OrderedDict[bytes, tuple[dict[str, Any], dict[str, Any]]] = OrderedDict()
        self._awaiting: dict[bytes, list[tuple[_Judged, EvaluationResult, bool]]] = {}  # trace id -> records
        self._awaiting_order: deque[tuple[float, bytes]] = deque()  # (emit at the latest, trace id)
        self._awaiting_count = 0
        self._open: OrderedDict[int, _Judged] = OrderedDict()  # judgment key -> its span, until all are in
        self._open_traces: Counter[bytes] = Counter()  # trace id -> judged spans of it in _open
        self._inline = 0  # > 0 while a judgment is being started (its checks answer synchronously)
        self._by_name = {e.name: e for e in self._evaluators}
        self._alternative_by_name = {e.name: e for e in self._alternative}
        self._log_throttle = Throttle(settings)

    @property
    def held_count(self) -> int:
        """Spans held, awaiting a decision or a judgment."""
        return self._pending_spans + len(self._judging)

    @property
    def pending_traces(self) -> int:
        return len(self._traces)

    # ------------------------------------------------------------------ lifecycle

    async def start(self, tick_interval: float | None = None) -> None:
        """Start the pool and, when ``tick_interval`` is given, a task that calls ``tick()``."""
        if self._pool is not None:
            await self._pool.start()
        if tick_interval and self._ticker is None:
            self._ticker = asyncio.create_task(
                run_every(tick_interval, self.tick, self._settings.logger, "tick"), name="judge-processor-tick"
            )

    async def shutdown(self, deadline: float) -> None:
        """Decide every trace now, let judgments finish until ``deadline``, then export what is
        still held with status ``shutdown``."""
        if self._stopped:
            return
        self._stopped = True
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        await self._decide(list(self._traces))
        remaining = deadline - self._clock.monotonic()
        if self._judging and remaining > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._drained.wait()
        if self._pool is not None:
            await self._pool.shutdown(deadline)
        await self._release(list(self._judging), EvaluationStatus.SHUTDOWN)
        self._flush_awaiting(None)  # what still waits for a root goes out without its root's slices
        self._open.clear()  # the pool is stopped: no judgment will come in any more
        self._open_traces.clear()

    async def tick(self) -> None:
        """Decide traces whose wait is over; export, with status ``timeout``, spans past ``max_hold``."""
        now = self._clock.monotonic()
        due: list[bytes] = []
        while self._due and self._due[0][0] <= now:
            decide_at, _, trace_id = heapq.heappop(self._due)
            trace = self._traces.get(trace_id)
            if trace is not None and trace.decide_at == decide_at:
                due.append(trace_id)
        if due:
            await self._decide(due)
        expired = []
        for key, held in self._judging.items():
            if held.deadline > now:
                break
            expired.append(key)
        if expired:
            await self._release(expired, EvaluationStatus.TIMEOUT)
        if self._awaiting_order:
            self._flush_awaiting(now)

    # ------------------------------------------------------------------ data path

    async def consume_logs(self, batch: LogsBatch) -> None:
        """Forward the batch unchanged; keep copies of GenAI content records for the join."""
        self._next.ensure_capacity()
        if self._pool is not None:
            self._collect_logs(batch)
        await self._next.consume_logs(batch)

    def _collect_logs(self, batch: LogsBatch) -> None:
        for rl in batch.request.resource_logs:
            for sl in rl.scope_logs:
                for record in sl.log_records:
                    if len(record.trace_id) != 16 or not is_content_record(record):
                        continue
                    trace = self._trace(record.trace_id)
                    if trace.log_count >= self._sampling.max_logs_per_trace:
                        self._telemetry.add("otel_judge.logs.unjoined", reason="cap")
                        continue
                    copy = LogRecord()
                    copy.CopyFrom(record)
                    trace.logs.setdefault(bytes(record.span_id), []).append(copy)
                    trace.log_count += 1

    async def consume_traces(self, batch: TraceBatch) -> None:
        self._next.ensure_capacity()  # refuse before doing anything, so a retry cannot duplicate work
        if self._pool is None:  # judging off: a pure pass-through, the received bytes go out as they are
            await self._next.consume_traces(batch)
            return
        request = batch.request
        changed: set[tuple[int, int]] = set()  # (resource, scope) whose spans got a status
        # Fast path: ``sampled_out`` statuses are appended to the spans' received bytes (see
        # append_to_spans) rather than written into the message, as long as nothing else changes.
        appended: dict[tuple[int, int], dict[int, bytes]] = {}
        deferred: list[tuple[Span, Any]] = []  # (span, its keys): the statuses not yet in the message
        append_only = True
        held_any = False
        late_spans: list[tuple[_Held, TraceSummary]] = []
        roots: list[tuple[Span, Any]] = []  # for slices: looked at once the whole request was seen
        counts: Counter[tuple[str, EvaluationStatus]] = Counter()  # counted once per request, not per span
        # Every span's attribute keys, decoded in C from the received bytes (None: the request was
        # changed, so each span's keys are walked instead); light_rs[i].scope_spans[j].spans[k]
        # is the span at the same position.
        light = _light(batch)
        candidate_keys = self._reader.candidate_keys
        now: float | None = None  # one clock reading per request, when a decision needs it
        needs_all_spans, watch_roots = self._needs_all_spans, self._watch_roots  # per span: locals
        by_trace_id = self._sampler.by_trace_id
        for rs_index, rs in enumerate(request.resource_spans):
            rs_shell: ResourceSpans | None = None
            resource_attrs: dict[str, Any] | None = None
            light_scopes = light.resource_spans[rs_index].scope_spans if light is not None else None
            if light_scopes is not None and len(light_scopes) != len(rs.scope_spans):
                light_scopes = None
            for ss_index, ss in enumerate(rs.scope_spans):
                taken: list[int] = []
                ss_shell: ScopeSpans | None = None
                light_spans = light_scopes[ss_index].spans if light_scopes is not None else None
                if light_spans is not None and len(light_spans) != len(ss.spans):
                    light_spans = None
                # Fast: walk the light spans, and touch a full span only when it is a candidate.
                fast = light_spans is not None and not needs_all_spans
                full_spans = ss.spans
                for index, item in enumerate(light_spans if fast else full_spans):  # type: ignore[arg-type]
                    record: _Trace | None = None
                    if fast:
                        light_attributes = item.attributes
                        if not item.parent_span_id:  # a root: it shortens the wait of held spans
                            if watch_roots:  # for the slices of evaluation records
                                roots.append((full_spans[index], rs.resource))
                            root_trace = self._traces.get(item.trace_id)
                            if root_trace is not None:
                                self._root_seen(root_trace)
                            else:
                                self._remember_root(item.trace_id)
                        if candidate_keys.isdisjoint(light_attributes):
                            continue
                        span = full_spans[index]
                        view = SpanView(span, rs.resource, ss.scope, light_attributes)
                    else:
                        span = item
                        if needs_all_spans:  # policies read other spans: remember what they need of each
                            record = self._traces.get(span.trace_id)
                            if record is None and span.trace_id not in self._decided:
                                record = self._trace(span.trace_id)
                            if record is not None:
                                record.summary.add_span(span, rs.resource, self._sampler.needs)
                                if not span.parent_span_id:
                                    self._root_seen(record)
                            if watch_roots and not span.parent_span_id:
                                roots.append((span, rs.resource))
                        elif not span.parent_span_id:  # only roots matter: they shorten the wait of held spans
                            if watch_roots:  # for the slices of evaluation records
                                roots.append((span, rs.resource))
                            root_trace = self._traces.get(span.trace_id)
                            if root_trace is not None:
                                self._root_seen(root_trace)
                            else:
                                self._remember_root(bytes(span.trace_id))
                        if light_spans is not None:
                            light_attributes = light_spans[index].attributes
                            if candidate_keys.isdisjoint(light_attributes):
                                continue
                            view = SpanView(span, rs.resource, ss.scope, light_attributes)
                        else:
                            if not self._reader.is_candidate(span):
                                continue
                            view = SpanView(span, rs.resource, ss.scope)
                    reader = self._classify(view, light_attributes if light_spans is not None else None)
                    if reader is None:  # GenAI-looking, but not a model call (agent, tool, wrapper)
                        continue
                    early: Decision | None = None
                    if self._decide_on_arrival:
                        # The policies read nothing but this span: decide now, hold only what is chosen.
                        if resource_attrs is None:  # decoded once per resource, not per span
                            resource_attrs = attributes_to_dict(rs.resource.attributes)
                        if by_trace_id:  # no context to build: the policies read the trace id only
                            early = self._sampler.decide_by_trace_id(
                                bytes(span.trace_id), resource_attrs, view.attribute_keys()
                            )
                        else:
                            if now is None:
                                now = self._clock.monotonic()
                            ctx = SamplingContext(
                                bytes(span.trace_id),
                                span,
                                rs.resource,
                                _NOTHING_KNOWN,
                                now,
                                _resource_attrs=resource_attrs,
                                span_keys=view.attribute_keys(),
                            )
                            early = self._sampler.decide(ctx)
                        if not early.sampled:
                            counts[(early.policy or "none", EvaluationStatus.SAMPLED_OUT)] += 1
                            changed.add((rs_index, ss_index))
                            keys = view.attribute_keys()
                            if light_spans is not None and _STATUS_KEY not in keys:
                                deferred.append((span, keys))
                                scope_appended = appended.get((rs_index, ss_index))
                                if scope_appended is None:
                                    scope_appended = appended[(rs_index, ss_index)] = {}
                                scope_appended[index] = _SAMPLED_OUT_FIELD
                            else:
                                append_only = False
                                set_status(span, EvaluationStatus.SAMPLED_OUT, keys)
                            continue
                        self._count_decision(early)
                    size = span.ByteSize()
                    if (
                        self.held_count >= self._sampling.max_held_spans
                        or self._held_bytes + size > self._sampling.max_held_bytes
                    ):
                        self._count(EvaluationStatus.SKIPPED_OVERLOAD)
                        set_status(span, EvaluationStatus.SKIPPED_OVERLOAD)
                        changed.add((rs_index, ss_index))
                        append_only = False
                        continue
                    if rs_shell is None:
                        rs_shell = ResourceSpans(resource=rs.resource, schema_url=rs.schema_url)
                    if ss_shell is None:
                        ss_shell = ScopeSpans(scope=ss.scope, schema_url=ss.schema_url)
                    stored: Span | bytes
                    if early is not None:  # read at once
                        stored = Span()
                        stored.CopyFrom(span)
                    else:  # waits for its trace's decision: kept encoded
                        stored = span.SerializeToString()
                    held = _Held(rs_shell, ss_shell, stored, reader, size=size, decision=early, tokens=batch.tokens)
                    exchange = self._content_on_span(held) if early is not None else None
                    if exchange is not None:
                        # Chosen, and its content is on the span: no log join to wait for, judge now.
                        status = self._judge_or_status(held, TraceSummary(), (), exchange)
                        if status is not None:
                            self._count(status)
                            set_status(span, status)
                            changed.add((rs_index, ss_index))
                            append_only = False
                            continue
                        self._held_bytes += size
                        taken.append(index)
                        continue
                    self._held_bytes += size
                    taken.append(index)
                    if record is None:
                        record = self._traces.get(span.trace_id)
                    late = self._decided.get(span.trace_id) if record is None else None
                    if late is not None:  # its trace was decided already: follow it, now
                        self._telemetry.add("otel_judge.spans.late")
                        late_spans.append((held, late))
                        continue
                    trace = record or self._trace(span.trace_id)
                    trace.spans.append(held)
                    self._pending_spans += 1
                    if not span.parent_span_id:
                        self._root_seen(trace)
                if taken and deferred:  # the message changes: statuses go into it before spans move
                    append_only = False
                    _write_deferred(deferred)
                for index in reversed(taken):
                    del ss.spans[index]
                if taken and batch.tokens:  # each span taken out keeps its request on disk until it is exported
                    acquire(batch.tokens, len(taken))
                held_any = held_any or bool(taken)
        if held_any:
            _write_deferred(deferred)
            _prune_empty(request)
            batch.mark_modified()
        elif changed:
            spliced = None
            if append_only and not batch.is_modified:
                layout = scope_layout(batch.to_bytes())
                if layout is not None:
                    spliced = append_to_spans(batch.to_bytes(), layout, appended)
            if spliced is not None:
                batch.encoded_as(spliced)  # the message, without the statuses, is dropped
            else:
                _write_deferred(deferred)
                _encode_changed(batch, changed)
        if request.resource_spans:
            await self._next.consume_traces(batch)
        elif batch.tokens:  # every span was taken out: they hold the request now
            release(batch.tokens)
        for (policy, status), count in counts.items():
            self._telemetry.add("otel_judge.sampling.decisions", count, policy=policy, outcome="not_sampled")
            self._telemetry.add("otel_judge.evaluation.status", count, status=status.value)
        if late_spans:
            await self._decide_late(late_spans)
        self._telemetry.set("otel_judge.held.spans", self.held_count)
        await self._decide_early()
        if roots and (self._awaiting or self._open_traces or self._traces):
            for root, resource in roots:  # after the request's own judgments started, whatever the span order
                self._root_arrived(root, resource)
        if self._awaiting_order:
            self._flush_awaiting(self._clock.monotonic())

    def _classify(self, view: SpanView, light_attributes: Any = None) -> ContentReader | None:
        try:
            if light_attributes is not None:
                found = self._reader.classify_light(view, light_attributes)
            else:
                found = self._reader.classify(view)
        except Exception:  # a reader bug must not cost the span: leave it as it is
            self._telemetry.add("otel_judge.reader.errors", format="classify")
            return None
        if found is None or found[0] is not Claim.LLM_CALL:
            return None
        return found[1]

    # ------------------------------------------------------------------ trace records

    def _trace(self, trace_id: bytes) -> _Trace:
        trace = self._traces.get(trace_id)
        if trace is None:
            trace = _Trace(bytes(trace_id), self._clock.monotonic() + self._sampling.decision_wait)
            self._traces[trace.trace_id] = trace
            self._schedule(trace)
            if self._recent_roots.pop(trace.trace_id, 0) is None:  # its root arrived before it
                self._root_seen(trace)
            self._telemetry.set("otel_judge.traces.pending", len(self._traces))
        return trace

    def _remember_root(self, trace_id: bytes) -> None:
        self._recent_roots[trace_id] = None
        if len(self._recent_roots) > RECENT_ROOTS:
            self._recent_roots.popitem(last=False)

    def _root_seen(self, trace: _Trace) -> None:
        if trace.root_seen:
            return
        trace.root_seen = True
        sooner = self._clock.monotonic() + self._sampling.decision_wait_after_root_received
        if sooner < trace.decide_at:
            trace.decide_at = sooner
            self._schedule(trace)

    def _schedule(self, trace: _Trace) -> None:
        self._seq += 1
        heapq.heappush(self._due, (trace.decide_at, self._seq, trace.trace_id))

    async def _decide_early(self) -> None:
        """Over ``num_traces``: decide the oldest traces now (never drop them)."""
        excess = len(self._traces) - self._sampling.num_traces
        if excess > 0:
            oldest = [tid for tid, _ in zip(self._traces, range(excess), strict=False)]
            self._telemetry.add("otel_judge.traces.decided_early", len(oldest))
            await self._decide(oldest)

    # ------------------------------------------------------------------ decision

    async def _decide(self, trace_ids: Iterable[bytes]) -> None:
        """Read, sample and judge (or release) the held spans of these traces."""
        release: list[_Held] = []
        for trace_id in trace_ids:
            trace = self._traces.pop(trace_id, None)
            if trace is None:
                continue
            self._remember_decided(trace)
            self._pending_spans -= len(trace.spans)
            logs, joins = join_logs(trace.spans, trace.logs)
            for how, count in joins.items():
                if how in ("span_id", "parent_span_id"):
                    self._telemetry.add("otel_judge.logs.joined", count, by=how)
                else:
                    self._telemetry.add("otel_judge.logs.unjoined", count, reason=how)
            skip = nested_duplicates(trace.spans, logs, self._reader.nested_calls)
            for held in trace.spans:
                if bytes(held.span.span_id) in skip:
                    self._telemetry.add("otel_judge.spans.nested_duplicates")
                    self._mark(held, EvaluationStatus.NESTED_DUPLICATE)
                    release.append(held)
                    continue
                status = self._judge_or_status(held, trace.summary, logs.get(bytes(held.span.span_id), ()))
                if status is not None:
                    self._mark(held, status)
                    release.append(held)
        self._telemetry.set("otel_judge.traces.pending", len(self._traces))
        await self._export_released(release)

    async def _decide_late(self, late: list[tuple[_Held, TraceSummary]]) -> None:
        """Spans arriving after their trace was decided: decided at once with what was known then."""
        release = []
        for held, summary in late:
            status = self._judge_or_status(held, summary, ())
            if status is not None:
                self._mark(held, status)
                release.append(held)
        await self._export_released(release)

    async def _export_released(self, released: list[_Held]) -> None:
        self._held_bytes -= sum(h.size for h in released)
        self._telemetry.set("otel_judge.held.spans", self.held_count)
        self._telemetry.set("otel_judge.held.bytes", self._held_bytes)
        if released:
            await self._next.consume_traces(_build_batch(released))

    def _mark(self, held: _Held, status: EvaluationStatus) -> None:
        self._count(status)
        set_status(held.span, status)

    def _remember_decided(self, trace: _Trace) -> None:
        if self._sampling.decision_cache_size == 0:
            return
        self._decided[trace.trace_id] = trace.summary
        self._decided.move_to_end(trace.trace_id)
        while len(self._decided) > self._sampling.decision_cache_size:
            self._decided.popitem(last=False)

    def _judge_or_status(
        self, held: _Held, summary: TraceSummary, logs: Sequence[LogRecord], exchange: Exchange | None = None
    ) -> EvaluationStatus | None:
        """Start judging ``held`` (None), or the status to export it with now. ``exchange``: its
        content when already read."""
        assert self._pool is not None
        span = held.span
        resource = held.resource_spans.resource
        ctx = SamplingContext(bytes(span.trace_id), span, resource, summary, self._clock.monotonic())
        decision = held.decision
        if decision is None:
            decision = self._sampler.decide(ctx)
            self._count_decision(decision)
        if not decision.sampled:
            return EvaluationStatus.SAMPLED_OUT
        status = self._read_and_check(held, logs, exchange)
        if isinstance(status, EvaluationStatus):
            self._sampler.observe(ctx, judged=False)
            return status
        if not self._sampler.admit(len(self._evaluators)):
            self._sampler.observe(ctx, judged=False)
            self._telemetry.add("otel_judge.sampling.decisions", policy="budget", outcome="over_budget")
            return EvaluationStatus.SKIPPED_BUDGET
        self._sampler.observe(ctx, judged=True)
        set_attribute(span.attributes, semconv.OTEL_JUDGE_SAMPLING_PROBABILITY, float(decision.probability))
        if decision.policy is not None:
            set_attribute(span.attributes, semconv.OTEL_JUDGE_SAMPLING_POLICY, decision.policy)
        self._judge(held, status, decision.probability)
        return None

    def _content_on_span(self, held: _Held) -> Exchange | None:
        """The exchange when the span alone carries content; None to wait for its logs."""
        try:
            view = SpanView(held.span, held.resource_spans.resource, held.scope_spans.scope)
            exchange = held.reader.read(view, ())
        except Exception:
            return None  # decided properly, with its logs, at the decision
        return exchange if exchange.has_content else None

    def _read_and_check(
        self, held: _Held, logs: Sequence[LogRecord], exchange: Exchange | None = None
    ) -> EvaluationStatus | Exchange:
        """The exchange to judge, or why it cannot be judged now."""
        assert self._pool is not None
        if exchange is None:
            exchange_or_status = self._read(held, logs)
            if isinstance(exchange_or_status, EvaluationStatus):
                return exchange_or_status
            exchange = exchange_or_status
        if not exchange.has_content:
            self._hint_no_content(held.reader.name)
            return EvaluationStatus.NO_CONTENT
        if self._stopped or not self._pool.has_room(len(self._evaluators)):
            return EvaluationStatus.SKIPPED_OVERLOAD
        return exchange

    def _read(self, held: _Held, logs: Sequence[LogRecord]) -> EvaluationStatus | Exchange:
        view = SpanView(held.span, held.resource_spans.resource, held.scope_spans.scope)
        try:
            return held.reader.read(view, logs)
        except ReadError:
            self._telemetry.add("otel_judge.reader.errors", format=held.reader.name)
            return EvaluationStatus.READ_ERROR
        except Exception:  # a reader bug: the span goes on untouched but for its status
            self._telemetry.add("otel_judge.reader.errors", format=held.reader.name)
            suppressed = self._log_throttle.allow(("reader", held.reader.name))
            if suppressed is not None:  # once a minute per reader, not per span
                # The traceback may carry content: only with content logging on.
                self._settings.logger.warning(
                    "reader %s failed on a span (%d more since the last report; otel_judge.reader.errors)",
                    held.reader.name,
                    suppressed,
                    exc_info=self._settings.include_content,
                    extra=ids(held.span.trace_id, held.span.span_id),
                )
            return EvaluationStatus.READ_ERROR

    def _count_decision(self, decision: Decision) -> None:
        outcome = "sampled" if decision.sampled else "not_sampled"
        self._telemetry.add("otel_judge.sampling.decisions", policy=decision.policy or "none", outcome=outcome)

    def _hint_no_content(self, reader: str) -> None:
        """Say, at most once a minute per format, how to turn content capture on."""
        now = self._clock.monotonic()
        count, last = self._no_content.get(reader, (0, -NO_CONTENT_HINT_INTERVAL))
        if now - last < NO_CONTENT_HINT_INTERVAL:
            self._no_content[reader] = (count + 1, last)
            return
        self._no_content[reader] = (0, now)
        hint = CONTENT_CAPTURE_HINTS.get(reader, "turn content capture on in your instrumentation")
        self._settings.logger.warning(
            "%d %s span(s) arrived without prompt/completion content (status no_content); to judge them: %s",
            count + 1,
            reader,
            hint,
        )

    def _judge(self, held: _Held, exchange: Exchange, probability: float | None = None) -> None:
        assert self._pool is not None
        key = self._next_id
        self._next_id += 1
        held.response_id = exchange.response_id
        evaluators = self._evaluators
        if same_family(self._judge_model, exchange.model, exchange.provider):
            self._telemetry.add(
                "otel_judge.evaluation.same_family", action="alternative" if self._alternative else "mark"
            )
            if self._alternative:
                evaluators = self._alternative
            else:
                set_attribute(held.span.attributes, semconv.OTEL_JUDGE_EVALUATION_SAME_FAMILY, True)
        held.deadline = self._clock.monotonic() + self._max_hold
        held.pending = len(evaluators)
        self._judging[key] = held
        if self._sinks:
            self._open_judgment(key, held, exchange, evaluators, probability)
        self._drained.clear()
        # Results given during this call (checks, cache hits) may wait for a root span of the request
        # being handled, even with decision_wait 0: the request's end emits them.
        self._inline += 1
        try:
            self._dispatch(key, held, evaluators, exchange)
        finally:
            self._inline -= 1

    def _dispatch(self, key: int, held: _Held, evaluators: Sequence[Evaluator], exchange: Exchange) -> None:
        assert self._pool is not None
        on_done = functools.partial(self._on_result, key)
        # Deterministic checks first, inline (no I/O, microseconds); a failed gate skips the judge.
        llm: list[Evaluator] = []
        gate_failed: list[str] = []
        for evaluator in evaluators:
            check = getattr(evaluator, "check", None)
            if check is None:
                llm.append(evaluator)
                continue
            result = _run_check(evaluator, check, exchange)
            if (
                getattr(evaluator, "gate", False)
                and result.status is EvaluationStatus.EVALUATED
                and not all(s.is_pass for s in result.scores)
            ):
                gate_failed.append(evaluator.name)
            on_done(result)
        if gate_failed:
            for evaluator in llm:
                on_done(
                    EvaluationResult(
                        evaluator.name, EvaluationStatus.GATED, error=f"gate failed: {', '.join(gate_failed)}"
                    )
                )
            return
        if llm and self._redact is not None:
            exchange = redact_exchange(exchange, self._redact)  # the judge never sees personal data
        for evaluator in llm:
            eid = evaluation_id(held.span.trace_id, held.span.span_id, evaluator)
            content_key = _content_key(evaluator, exchange) if self._content_cache else None
            if not self._pool.submit(eid, evaluator, exchange, on_done, content_key):  # room was checked
                on_done(EvaluationResult(evaluator.name, EvaluationStatus.SKIPPED_OVERLOAD))

    def _on_result(self, key: int, result: EvaluationResult) -> None:
        self._sampler.settle(result.usage.cost_usd, result.usage.input_tokens + result.usage.output_tokens)
        self._telemetry.set("otel_judge.budget.spent_usd", self._sampler.spent_usd())
        held = self._judging.get(key)
        if self._sinks:
            self._close_judgment(key, result, late=held is None)
        if held is None:  # max_hold expired or shutdown: the span is already on its way
            self._telemetry.add("otel_judge.late_results")
            return
        held.results.append(result)
        held.pending -= 1
        if held.pending == 0:
            task = asyncio.get_running_loop().create_task(self._release([key], None))
            task.add_done_callback(functools.partial(_log_task_error, self._settings))

    async def _release(self, keys: list[int], forced: EvaluationStatus | None) -> None:
        """Enrich and export judged spans. ``forced`` is the status of spans not fully judged."""
        released = [h for k in keys if (h := self._judging.pop(k, None)) is not None]
        if not self._judging:
            self._drained.set()
        for held in released:
            status = overall_status(held.results)
            if held.pending > 0 and forced is not None and status is EvaluationStatus.EVALUATED:
                status = forced
            apply_results(
                held.span,
                held.results,
                status,
                attributes=self._outputs.span_attributes,
                events=self._outputs.span_events,
                time_ns=self._clock.time_ns(),
                response_id=held.response_id,
            )
            self._count(status)
        await self._export_released(released)

    def _count(self, status: EvaluationStatus) -> None:
        self._telemetry.add("otel_judge.evaluation.status", status=status.value)

    # ------------------------------------------------------------------ evaluation records

    def _open_judgment(
        self, key: int, held: _Held, exchange: Exchange, evaluators: Sequence[Evaluator], probability: float | None
    ) -> None:
        """Remember what the records of this span's judgments need (only judged spans get here)."""
        span = held.span
        resource = held.resource_spans.resource
        trace_id = bytes(span.trace_id)
        if self._watch_roots and not span.parent_span_id:  # the judged span is its trace's root
            self._keep_root(trace_id, span, resource)
        self._open[key] = _Judged(
            trace_id=trace_id,
            span_id=bytes(span.span_id),
            resource=resource,
            span_attrs=self._slices.span_subset(span),
            resource_attrs=self._slices.resource_subset(resource),
            evaluators=self._alternative_by_name if evaluators is self._alternative else self._by_name,
            probability=probability,
            judged_model=exchange.model,
            response_id=exchange.response_id,
            started_ns=self._clock.time_ns(),
            pending=len(evaluators),
        )
        self._open_traces[trace_id] += 1
        if len(self._open) > MAX_OPEN_JUDGMENTS:  # judgments lost in the pool would otherwise pile up
            self._forget(self._open.popitem(last=False)[1])

    def _forget(self, judged: _Judged) -> None:
        left = self._open_traces[judged.trace_id] - 1
        if left > 0:
            self._open_traces[judged.trace_id] = left
        else:
            del self._open_traces[judged.trace_id]

    def _close_judgment(self, key: int, result: EvaluationResult, *, late: bool) -> None:
        """One judgment is in: its record goes to the sinks, now or once its trace's root is known."""
        judged = self._open.get(key)
        if judged is None:  # forgotten (shutdown, or the bound): nothing to say where it belongs
            return
        judged.pending -= 1
        if judged.pending <= 0:
            del self._open[key]
            self._forget(judged)
        if judged.slices is None:
            root = self._roots.get(judged.trace_id)
            if root is None and self._watch_roots and (self._sampling.decision_wait > 0 or self._inline):
                self._await_root(judged, result, late)
                return
            judged.slices = self._slices.resolve(judged.span_attrs, judged.resource_attrs, root)
        self._emit([self._build_record(judged, result, late)])

    def _build_record(self, judged: _Judged, result: EvaluationResult, late: bool) -> EvaluationRecord:
        evaluator = judged.evaluators.get(result.evaluator)
        eid = result.evaluation_id
        if eid is None:
            eid = (
                evaluation_id(judged.trace_id, judged.span_id, evaluator)
                if evaluator is not None
                else hashlib.sha256(judged.trace_id + judged.span_id + result.evaluator.encode()).hexdigest()[:32]
            )
        return EvaluationRecord(
            evaluation_id=eid,
            time_ns=result.completed_ns or self._clock.time_ns(),
            trace_id=judged.trace_id,
            span_id=judged.span_id,
            result=result,
            slices=judged.slices or (),
            sampling_probability=judged.probability,
            judged_model=judged.judged_model,
            response_id=judged.response_id,
            late=late,
            resource=judged.resource,
            started_ns=judged.started_ns,
        )

    def _await_root(self, judged: _Judged, result: EvaluationResult, late: bool) -> None:
        """Hold the record until the trace's root span arrives, ``decision_wait`` at most."""
        waiting = self._awaiting.get(judged.trace_id)
        if waiting is None:
            waiting = self._awaiting[judged.trace_id] = []
            self._awaiting_order.append((self._clock.monotonic() + self._sampling.decision_wait, judged.trace_id))
        waiting.append((judged, result, late))
        self._awaiting_count += 1
        while self._awaiting_count > MAX_AWAITING_ROOT and self._awaiting_order:
            self._emit_awaiting(self._awaiting_order.popleft()[1], None)

    def _root_arrived(self, span: Span, resource: Any) -> None:
        """A root span: kept when its trace has a span held or judged (a dict lookup otherwise)."""
        trace_id = span.trace_id
        if trace_id in self._awaiting or trace_id in self._open_traces or trace_id in self._traces:
            self._keep_root(bytes(trace_id), span, resource)

    def _keep_root(self, trace_id: bytes, span: Span, resource: Any) -> None:
        """Remember the keys the slices read of a root span (LRU); release the records awaiting it."""
        root = self._slices.root_subset(span, resource)
        self._roots[trace_id] = root
        self._roots.move_to_end(trace_id)
        if len(self._roots) > RECENT_ROOTS:
            self._roots.popitem(last=False)
        if trace_id in self._awaiting:
            self._emit_awaiting(trace_id, root)

    def _flush_awaiting(self, now: float | None) -> None:
        """Emit the records whose wait for a root is over (all of them when ``now`` is None)."""
        order = self._awaiting_order
        while order and (now is None or order[0][0] <= now):
            self._emit_awaiting(order.popleft()[1], None)

    def _emit_awaiting(self, trace_id: bytes, root: tuple[dict[str, Any], dict[str, Any]] | None) -> None:
        waiting = self._awaiting.pop(trace_id, None)
        if not waiting:
            return
        self._awaiting_count -= len(waiting)
        records = []
        for judged, result, late in waiting:
            if judged.slices is None:
                judged.slices = self._slices.resolve(judged.span_attrs, judged.resource_attrs, root)
            records.append(self._build_record(judged, result, late))
        self._emit(records)

    def _emit(self, records: list[EvaluationRecord]) -> None:
        for sink in self._sinks:
            try:
                sink.record(records)
            except Exception:  # an output's bug costs its records, never a span
                output = getattr(sink, "name", type(sink).__name__)
                self._telemetry.add("otel_judge.outputs.dropped", len(records), output=output, reason="error")


def _run_check(evaluator: Evaluator, check: Any, exchange: Exchange) -> EvaluationResult:
    try:
        scores = check(exchange)
    except Exception as exc:  # a check's bug costs its score, never the span
        return EvaluationResult(evaluator.name, EvaluationStatus.JUDGE_ERROR, error=f"{type(exc).__name__}")
    return EvaluationResult(evaluator.name, EvaluationStatus.EVALUATED, tuple(scores))


def _content_key(evaluator: Evaluator, exchange: Exchange) -> str:
    """Identical content (what the judge is shown) under an identical evaluator: one judgment."""
    data = exchange.to_json()
    content = {k: data[k] for k in ("system", "messages", "completion", "tool_calls")}
    digest = hashlib.sha256(evaluator.config_hash.encode() + json.dumps(content, sort_keys=True).encode())
    return "content:" + digest.hexdigest()[:32]


def _prune_empty(request: ExportTraceServiceRequest) -> None:
    for rs_index in range(len(request.resource_spans) - 1, -1, -1):
        rs = request.resource_spans[rs_index]
        for ss_index in range(len(rs.scope_spans) - 1, -1, -1):
            if not rs.scope_spans[ss_index].spans:
                del rs.scope_spans[ss_index]
        if not rs.scope_spans:
            del request.resource_spans[rs_index]


def _build_batch(released: list[_Held]) -> TraceBatch:
    """One request for the released spans, grouped under their original resource and scope."""
    request = ExportTraceServiceRequest()
    resource_index: dict[int, ResourceSpans] = {}
    scope_index: dict[int, ScopeSpans] = {}
    tokens: list[Entry] = []
    for held in released:
        tokens.extend(held.tokens)  # the batch takes over each span's reference
        rs = resource_index.get(id(held.resource_spans))
        if rs is None:
            rs = request.resource_spans.add()
            rs.CopyFrom(held.resource_spans)
            resource_index[id(held.resource_spans)] = rs
        ss = scope_index.get(id(held.scope_spans))
        if ss is None:
            ss = rs.scope_spans.add()
            ss.CopyFrom(held.scope_spans)
            scope_index[id(held.scope_spans)] = ss
        ss.spans.append(held.span)
    return TraceBatch(request, tokens=tuple(tokens))


def _log_task_error(settings: Settings, task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        settings.logger.error("releasing judged spans failed: %r", task.exception())
