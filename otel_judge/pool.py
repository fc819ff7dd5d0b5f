"""The judge pool: a bounded queue and a fixed set of workers, off the receive path.

``submit`` never waits: when the queue is full it returns False and the caller records
``skipped_overload`` on the span. Every call runs under a hard deadline, so a hung judge occupies a
worker for at most ``timeout``. A judgment already queued or running under the same evaluation id
(a retried export delivering the same span again) is not submitted twice: the duplicate waits for
the same result.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from otel_judge import __version__, logs
from otel_judge.component import Clock, Settings
from otel_judge.errors import JudgeTimeoutError, ParseError, PermanentError, RetryableError
from otel_judge.evaluators import Evaluator
from otel_judge.judge import USAGE, UsageMeter
from otel_judge.model import EvaluationResult, EvaluationStatus, Exchange, JudgeUsage

__all__ = ["JudgePool"]

ResultCallback = Callable[[EvaluationResult], None]
# A judgment made before a restart (the evaluation store), looked up by evaluation id; None if there is none.
PriorLookup = Callable[[str], Awaitable[EvaluationResult | None]]
PRIOR_LOOKUP_TIMEOUT = 2.0  # a slow store must not hold a worker: past this, the judge is asked


@dataclass(slots=True)
class _Job:
    evaluation_id: str
    evaluator: Evaluator
    exchange: Exchange
    content_key: str | None = None


class _ResultCache:
    """Successful judgments by key for ``ttl`` seconds, at most ``size`` (least recently used go)."""

    def __init__(self, ttl: float, size: int, clock: Clock) -> None:
        self.ttl = ttl
        self.size = size
        self.clock = clock
        self._items: OrderedDict[str, tuple[float, EvaluationResult]] = OrderedDict()

    def get(self, key: str | None) -> EvaluationResult | None:
        if key is None or self.ttl <= 0:
            return None
        item = self._items.get(key)
        if item is None:
            return None
        if item[0] <= self.clock.monotonic():
            del self._items[key]
            return None
        self._items.move_to_end(key)
        return item[1]

    def put(self, key: str | None, result: EvaluationResult) -> None:
        if key is None or self.ttl <= 0:
            return
        self._items[key] = (self.clock.monotonic() + self.ttl, result)
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)


def _judge_params(evaluator: Evaluator) -> tuple[tuple[str, Any], ...]:
    params = getattr(getattr(evaluator, "judge", None), "params", None)
    return tuple(sorted(params.items())) if isinstance(params, dict) else ()


class JudgePool:
    def __init__(
        self,
        *,
        max_concurrency: int,
        queue_size: int,
        timeout: float,
        settings: Settings,
        cache_ttl: float = 0.0,
        cache_size: int = 100_000,
        prior: PriorLookup | None = None,
    ) -> None:
        self._max_concurrency = max_concurrency
        self._timeout = timeout
        self._settings = settings
        self._queue: asyncio.Queue[_Job] = asyncio.Queue(maxsize=queue_size)
        self._waiters: dict[str, list[ResultCallback]] = {}
        self._workers: list[asyncio.Task[None]] = []
        self._closed = False
        self._cache = _ResultCache(cache_ttl, cache_size, settings.clock)
        self._log_throttle = logs.Throttle(settings)
        self._prior = prior if cache_ttl > 0 else None

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    def has_room(self, jobs: int) -> bool:
        """Whether ``jobs`` more judgments fit in the queue now."""
        return not self._closed and self._queue.qsize() + jobs <= self._queue.maxsize

    @property
    def in_flight(self) -> int:
        return len(self._waiters)

    def submit(
        self,
        evaluation_id: str,
        evaluator: Evaluator,
        exchange: Exchange,
        on_done: ResultCallback,
        content_key: str | None = None,
    ) -> bool:
        """Queue a judgment; False (and nothing queued) when the pool is full or closed.

        A judgment already made under this evaluation id (a re-delivered span) or, when
        ``content_key`` is given, for identical content, within the cache's TTL, is answered at once
        from the cache: no judge call, no judge usage.
        """
        for key, kind in ((evaluation_id, "evaluation_id"), (content_key, "content")):
            cached = self._cache.get(key)
            if cached is not None:
                self._settings.telemetry.add("otel_judge.judge.cache.hits", kind=kind)
                on_done(dataclasses.replace(cached, evaluation_id=evaluation_id, usage=JudgeUsage()))
                return True
        waiters = self._waiters.get(evaluation_id)
        if waiters is not None:
            waiters.append(on_done)
            return True
        if self._closed or self._queue.full():
            return False
        self._waiters[evaluation_id] = [on_done]
        self._queue.put_nowait(_Job(evaluation_id, evaluator, exchange, content_key))
        self._settings.telemetry.set("otel_judge.judge.queue.depth", self._queue.qsize())
        return True

    async def start(self) -> None:
        if not self._workers and not self._closed:
            self._workers = [
                asyncio.create_task(self._work(), name=f"judge-worker-{i}") for i in range(self._max_concurrency)
            ]

    async def shutdown(self, deadline: float) -> None:
        """Stop taking work and cancel the workers (callers export what they hold)."""
        self._closed = True
        for task in self._workers:
            task.cancel()
        for task in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._workers = []

    async def _work(self) -> None:
        while True:
            job = await self._queue.get()
            self._settings.telemetry.set("otel_judge.judge.queue.depth", self._queue.qsize())
            result = await self._prior_result(job)
            if result is None:
                await self._judge_ready(job.evaluator)
                result = await self._run(job)
            if result.status is EvaluationStatus.EVALUATED:
                self._cache.put(job.evaluation_id, result)
                self._cache.put(job.content_key, result)
            for index, callback in enumerate(self._waiters.pop(job.evaluation_id, [])):
                # Duplicates share the result; the judge usage belongs to the first (one call was made).
                shared = result if index == 0 else dataclasses.replace(result, usage=JudgeUsage())
                try:
                    callback(shared)
                except Exception:  # a consumer bug must not kill the worker
                    self._settings.logger.exception("result callback failed")

    async def _prior_result(self, job: _Job) -> EvaluationResult | None:
        """A judgment of this evaluation id from before a restart (the store), reused like a cache hit."""
        if self._prior is None:
            return None
        try:
            async with asyncio.timeout(PRIOR_LOOKUP_TIMEOUT):
                found = await self._prior(job.evaluation_id)
        except Exception:  # the store is optional: on any trouble, judge
            return None
        if found is None or found.status is not EvaluationStatus.EVALUATED:
            return None
        self._settings.telemetry.add("otel_judge.judge.cache.hits", kind="store")
        return dataclasses.replace(found, evaluation_id=job.evaluation_id, usage=JudgeUsage())

    async def _judge_ready(self, evaluator: Evaluator) -> None:
        """Wait out the judge's start-up (litellm's import) before a deadline starts to run."""
        ready = getattr(getattr(evaluator, "judge", None), "ready", None)
        if ready is not None:
            try:
                await ready()
            except Exception:  # the call itself will report what is wrong
                self._settings.logger.exception("judge failed to start")

    async def _run(self, job: _Job) -> EvaluationResult:
        evaluator = job.evaluator
        model = getattr(getattr(evaluator, "judge", None), "model", None)
        meter = UsageMeter()
        token = USAGE.set(meter)
        try:
            result = await self._evaluate(job, evaluator, model, meter)
        finally:
            USAGE.reset(token)
        if meter.models:  # provenance: the model(s) that really answered, fallbacks included
            result = dataclasses.replace(result, judge_model=",".join(meter.models))
        return dataclasses.replace(
            result,
            evaluator_type=getattr(getattr(evaluator, "config", None), "type", type(evaluator).__name__),
            evaluator_version=__version__,
            config_hash=evaluator.config_hash,
            judge_params=_judge_params(evaluator),
            completed_ns=self._settings.clock.time_ns(),
        )

    async def _evaluate(
        self, job: _Job, evaluator: Evaluator, model: str | None, meter: UsageMeter
    ) -> EvaluationResult:
        def failed(status: EvaluationStatus, error: str) -> EvaluationResult:
            return EvaluationResult(
                evaluator.name,
                status,
                error=error[:500],
                judge_model=model,
                evaluation_id=job.evaluation_id,
                usage=meter.total(),
            )

        try:
            async with asyncio.timeout(self._timeout):
                scores = await evaluator.evaluate(job.exchange)
        except (TimeoutError, JudgeTimeoutError) as exc:
            return failed(EvaluationStatus.TIMEOUT, str(exc) or f"no answer within {self._timeout:g}s")
        except ParseError as exc:
            return failed(EvaluationStatus.PARSE_ERROR, str(exc))
        except (RetryableError, PermanentError) as exc:
            return failed(EvaluationStatus.JUDGE_ERROR, str(exc))
        except Exception as exc:  # a plugin evaluator's bug costs a score, never the pipeline
            suppressed = self._log_throttle.allow((evaluator.name, type(exc).__name__))
            if suppressed is not None:  # once a minute per evaluator and error, not per span
                self._settings.logger.warning(
                    "evaluator %s raised %s (%d more since the last report)",
                    evaluator.name,
                    type(exc).__name__,
                    suppressed,
                    extra=logs.ids(evaluation_id=job.evaluation_id),
                )
            return failed(EvaluationStatus.JUDGE_ERROR, f"{type(exc).__name__}: {exc}")
        return EvaluationResult(
            evaluator.name,
            EvaluationStatus.EVALUATED,
            tuple(scores),
            judge_model=model,
            evaluation_id=job.evaluation_id,
            usage=meter.total(),
        )
