"""The contracts every pipeline stage shares: consumers, lifecycle, injected settings, the clock.

A stage is a small class that takes its ``next`` consumer in the constructor and implements
``consume_traces`` (and ``consume_logs`` where it handles logs) plus ``start``/``shutdown``.
``shutdown`` is safe before ``start`` and safe to call twice; it stops intake, flushes what the
stage holds and honours the deadline it is given.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from otel_judge.otlp import LogsBatch, TraceBatch
    from otel_judge.telemetry import Telemetry


class Clock(Protocol):
    """Where a stage reads time. Production uses :class:`SystemClock`; tests drive a :class:`FakeClock`."""

    def monotonic(self) -> float:
        """Seconds on a monotonic scale (deadlines, holds)."""
        ...

    def time_ns(self) -> int:
        """Wall-clock nanoseconds since the epoch (timestamps written to telemetry)."""
        ...


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time_ns(self) -> int:
        return time.time_ns()


class FakeClock:
    """A clock that only moves when a test calls :meth:`advance`."""

    def __init__(self, start: float = 1000.0, wall_ns: int = 1_700_000_000_000_000_000) -> None:
        self._now = start
        self._wall_ns = wall_ns

    def monotonic(self) -> float:
        return self._now

    def time_ns(self) -> int:
        return self._wall_ns + int((self._now) * 1e9)

    def advance(self, seconds: float) -> None:
        """Move time forward; stages notice on their next ``tick()``."""
        self._now += seconds


@runtime_checkable
class TracesConsumer(Protocol):
    """Anything that accepts trace batches: a stage or an exporter."""

    async def consume_traces(self, batch: TraceBatch) -> None:
        """Take ownership of ``batch``. Raises :class:`otel_judge.errors.OverloadedError` to push back."""
        ...


@runtime_checkable
class LogsConsumer(Protocol):
    """Anything that accepts log batches."""

    async def consume_logs(self, batch: LogsBatch) -> None:
        """Take ownership of ``batch``. Raises :class:`otel_judge.errors.OverloadedError` to push back."""
        ...


class Component(Protocol):
    """Lifecycle shared by receivers, stages and exporters."""

    async def start(self) -> None: ...

    async def shutdown(self, deadline: float) -> None:
        """Stop intake and flush until ``deadline`` (a :meth:`Clock.monotonic` value)."""
        ...


def _default_telemetry() -> Telemetry:
    from otel_judge.telemetry import Telemetry

    return Telemetry()


@dataclass(frozen=True)
class Settings:
    """What the code injects into every stage (as opposed to ``*Config``, what the user writes)."""

    clock: Clock = field(default_factory=SystemClock)
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("otel_judge"))
    telemetry: Telemetry = field(default_factory=_default_telemetry)
    #: Allow prompt/completion text (and judge error bodies, which may quote it) in our own logs.
    #: Off by default; ``service.logs.include_content`` turns it on for debugging.
    include_content: bool = False


async def run_every(interval: float, tick: Callable[[], Awaitable[None]], logger: logging.Logger, what: str) -> None:
    """Call ``tick`` every ``interval`` seconds until cancelled. A failing tick is logged, never fatal:
    the next one runs as usual. Production's driver of the stages' ``tick()``; tests call ``tick()``."""
    while True:
        await asyncio.sleep(interval)
        try:
            await tick()
        except Exception:
            logger.exception("%s failed", what)
