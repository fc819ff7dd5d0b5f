"""The judging stage: finds GenAI spans, samples them, holds the sampled ones until judged.

For each export request:

* spans without GenAI attribute keys pass untouched (when a request has none, its received bytes
  are forwarded as they are);
* a GenAI span that is not sampled, has no content, or cannot be judged right now stays in the
  request with an ``otel_judge.evaluation.status`` saying why;
* a sampled GenAI span with content is taken out of the request and held until every evaluator
  has answered or ``judge.max_hold`` passes, then exported on its own with its scores.

Holding is bounded (``sampling.max_held_spans``), the judge queue is bounded, and neither ever
costs a span: at a bound the span is exported with status ``skipped_overload``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from otel_judge.component import Settings
from otel_judge.enrich import apply_results, overall_status, set_status
from otel_judge.evaluators import Evaluator
from otel_judge.exporter import Exporter
from otel_judge.model import EvaluationResult, EvaluationStatus, Exchange
from otel_judge.otlp import LogsBatch, TraceBatch
from otel_judge.pool import JudgePool
from otel_judge.reader import Claim, GenAIReader, ReadError, SpanView, is_candidate
from otel_judge.sampling import Sampler, SamplingContext

__all__ = ["JudgeProcessor", "evaluation_id"]


def evaluation_id(trace_id: bytes, span_id: bytes, evaluator: Evaluator) -> str:
    """Deterministic id of one evaluator's judgment of one span (the idempotency key)."""
    digest = hashlib.sha256(trace_id + span_id + evaluator.name.encode() + evaluator.config_hash.encode())
    return digest.hexdigest()[:32]


@dataclass(slots=True, eq=False)
class _Held:
    resource_spans: ResourceSpans  # resource and schema only
    scope_spans: ScopeSpans  # scope and schema only
    span: Span
    deadline: float
    pending: int
    results: list[EvaluationResult] = field(default_factory=list)


class JudgeProcessor:
    """Stage between the receivers and the exporter. ``tick()`` expires holds; call it regularly."""

    def __init__(
        self,
        next_consumer: Exporter,
        *,
        sampler: Sampler,
        reader: GenAIReader,
        pool: JudgePool | None,
        evaluators: Sequence[Evaluator],
        max_hold: float,
        max_held_spans: int,
        settings: Settings,
    ) -> None:
        self._next = next_consumer
        self._sampler = sampler
        self._reader = reader
        self._pool = pool if evaluators else None
        self._evaluators = tuple(evaluators)
        self._max_hold = max_hold
        self._max_held = max_held_spans
        self._settings = settings
        self._clock = settings.clock
        self._telemetry = settings.telemetry
        # Insertion order is deadline order (max_hold is constant), so expiry pops from the front.
        self._held: dict[int, _Held] = {}
        self._next_id = 0
        self._drained = asyncio.Event()
        self._drained.set()
        self._ticker: asyncio.Task[None] | None = None
        self._stopped = False

    @property
    def held_count(self) -> int:
        return len(self._held)

    @property
    def judging(self) -> bool:
        return self._pool is not None

    # ------------------------------------------------------------------ lifecycle

    async def start(self, tick_interval: float | None = None) -> None:
        """Start the pool and, when ``tick_interval`` is given, a task that calls ``tick()``."""
        if self._pool is not None:
            await self._pool.start()
        if tick_interval and self._ticker is None:
            self._ticker = asyncio.create_task(self._tick_loop(tick_interval), name="judge-processor-tick")

    async def shutdown(self, deadline: float) -> None:
        """Let judgments finish until ``deadline``, then export what is still held (status shutdown)."""
        if self._stopped:
            return
        self._stopped = True
        remaining = deadline - self._clock.monotonic()
        if self._held and remaining > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), remaining)
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        if self._pool is not None:
            await self._pool.shutdown(deadline)
        await self._release(list(self._held), EvaluationStatus.SHUTDOWN)

    async def _tick_loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.tick()
            except Exception:
                self._settings.logger.exception("tick failed")

    async def tick(self) -> None:
        """Export, with status ``timeout``, every held span whose ``max_hold`` has passed."""
        now = self._clock.monotonic()
        expired = []
        for key, held in self._held.items():
            if held.deadline > now:
                break
            expired.append(key)
        if expired:
            await self._release(expired, EvaluationStatus.TIMEOUT)

    # ------------------------------------------------------------------ data path

    async def consume_logs(self, batch: LogsBatch) -> None:
        self._next.ensure_capacity()
        await self._next.consume_logs(batch)

    async def consume_traces(self, batch: TraceBatch) -> None:
        self._next.ensure_capacity()  # refuse before doing anything, so a retry cannot duplicate work
        if self._pool is None:  # judging off: a pure pass-through, the received bytes go out as they are
            await self._next.consume_traces(batch)
            return
        request = batch.request
        modified = False
        held_any = False
        for rs in request.resource_spans:
            rs_shell: ResourceSpans | None = None
            for ss in rs.scope_spans:
                taken: list[int] = []
                ss_shell: ScopeSpans | None = None
                for index, span in enumerate(ss.spans):
                    if not is_candidate(span):
                        continue
                    verdict = self._consider(span, rs, ss)
                    if verdict is None:  # GenAI-looking, but not a model call (agent, tool, wrapper)
                        continue
                    modified = True
                    if isinstance(verdict, EvaluationStatus):
                        self._telemetry.add("otel_judge.evaluation.status", status=verdict.value)
                        set_status(span, verdict)
                        continue
                    exchange = verdict
                    if rs_shell is None:
                        rs_shell = ResourceSpans(resource=rs.resource, schema_url=rs.schema_url)
                    if ss_shell is None:
                        ss_shell = ScopeSpans(scope=ss.scope, schema_url=ss.schema_url)
                    self._hold(rs_shell, ss_shell, span, exchange)
                    taken.append(index)
                for index in reversed(taken):
                    del ss.spans[index]
                held_any = held_any or bool(taken)
        if held_any:
            _prune_empty(request)
        if modified:
            batch.mark_modified()
        if not held_any or request.resource_spans:
            await self._next.consume_traces(batch)

    def _consider(self, span: Span, rs: ResourceSpans, ss: ScopeSpans) -> EvaluationStatus | Exchange | None:
        """None: not a model call (left untouched); a status to write now; or the exchange to judge."""
        assert self._pool is not None
        view = SpanView(span, rs.resource, ss.scope)
        try:
            found = self._reader.classify(view)
        except Exception:  # a reader bug must not cost the span: leave it as it is
            self._telemetry.add("otel_judge.reader.errors", format="classify")
            return None
        if found is None or found[0] is not Claim.LLM_CALL:
            return None
        reader = found[1]
        decision = self._sampler.decide(SamplingContext(span.trace_id, span, rs.resource))
        if not decision.sampled:
            return EvaluationStatus.SAMPLED_OUT
        try:
            exchange = reader.read(view, ())
        except ReadError:
            self._telemetry.add("otel_judge.reader.errors", format=reader.name)
            return EvaluationStatus.READ_ERROR
        except Exception:  # a reader bug: the span goes on untouched but for its status
            self._telemetry.add("otel_judge.reader.errors", format=reader.name)
            return EvaluationStatus.READ_ERROR
        if not exchange.has_content:
            return EvaluationStatus.NO_CONTENT
        if len(self._held) >= self._max_held or not self._pool.has_room(len(self._evaluators)):
            return EvaluationStatus.SKIPPED_OVERLOAD
        return exchange

    def _hold(self, rs_shell: ResourceSpans, ss_shell: ScopeSpans, span: Span, exchange: Exchange) -> None:
        assert self._pool is not None
        copy = Span()
        copy.CopyFrom(span)
        key = self._next_id
        self._next_id += 1
        held = _Held(rs_shell, ss_shell, copy, self._clock.monotonic() + self._max_hold, len(self._evaluators))
        self._held[key] = held
        self._drained.clear()
        self._telemetry.set("otel_judge.held.spans", len(self._held))
        on_done = functools.partial(self._on_result, key)
        for evaluator in self._evaluators:
            eid = evaluation_id(copy.trace_id, copy.span_id, evaluator)
            accepted = self._pool.submit(eid, evaluator, exchange, on_done)
            if not accepted:  # cannot happen after the capacity check, but never lose the span
                self._on_result(key, EvaluationResult(evaluator.name, EvaluationStatus.SKIPPED_OVERLOAD))

    def _on_result(self, key: int, result: EvaluationResult) -> None:
        held = self._held.get(key)
        if held is None:  # max_hold expired or shutdown: the span is already on its way
            self._telemetry.add("otel_judge.late_results")
            return
        held.results.append(result)
        held.pending -= 1
        if held.pending == 0:
            task = asyncio.get_running_loop().create_task(self._release([key], None))
            task.add_done_callback(_log_task_error(self._settings))

    async def _release(self, keys: list[int], forced: EvaluationStatus | None) -> None:
        """Enrich and export held spans. ``forced`` is the status of spans not fully judged."""
        released = [h for k in keys if (h := self._held.pop(k, None)) is not None]
        self._telemetry.set("otel_judge.held.spans", len(self._held))
        if not self._held:
            self._drained.set()
        if not released:
            return
        for held in released:
            status = overall_status(held.results)
            if held.pending > 0 and forced is not None and status is EvaluationStatus.EVALUATED:
                status = forced
            apply_results(held.span, held.results, status)
            self._telemetry.add("otel_judge.evaluation.status", status=status.value)
        await self._next.consume_traces(_build_batch(released))


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
    for held in released:
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
    return TraceBatch(request)


def _log_task_error(settings: Settings):  # type: ignore[no-untyped-def]
    def callback(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            settings.logger.error("releasing judged spans failed: %r", task.exception())

    return callback
