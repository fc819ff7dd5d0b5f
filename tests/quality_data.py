"""Builders for the quality tests: evaluation records and synthetic score streams, and a real SQLite store."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import pytest

from otel_judge.component import FakeClock, Settings
from otel_judge.config import StoreConfig
from otel_judge.model import EvaluationRecord, EvaluationResult, EvaluationStatus, Score
from otel_judge.quality.model import StoredEvaluation
from otel_judge.quality.store import QualityStore, stored_evaluations

S = 1_000_000_000  # ns per second
HOUR = 3600 * S
NOW = FakeClock().time_ns()
_ids = itertools.count()


def record(
    time_ns: int,
    value: float,
    *,
    evaluator: str = "quality",
    slices: Mapping[str, str] | None = None,
    probability: float | None = None,
    low: float = 1,
    high: float = 100,
    label: str | None = None,
    passed: bool | None = None,
    judged_model: str | None = None,
    judge_model: str | None = "openai/gpt-4o-mini",
    trace_id: bytes | None = None,
    span_id: bytes | None = None,
) -> EvaluationRecord:
    """One evaluated judgment with one score, a fresh evaluation id and ids derived from it."""
    i = next(_ids)
    if label is None and passed is None:
        passed = value >= (low + high) / 2
    score = Score(evaluator, float(value), label, passed=passed, low=low, high=high)
    result = EvaluationResult(evaluator, EvaluationStatus.EVALUATED, (score,), judge_model=judge_model)
    return EvaluationRecord(
        evaluation_id=f"ev-{i:08d}",
        time_ns=time_ns,
        trace_id=trace_id or i.to_bytes(16, "big"),
        span_id=span_id or i.to_bytes(8, "big"),
        result=result,
        slices=tuple(sorted((slices or {}).items())),
        sampling_probability=probability,
        judged_model=judged_model,
    )


def stream(
    rng: np.random.Generator,
    n: int,
    start_ns: int,
    end_ns: int,
    mean: float,
    *,
    sd: float = 15.0,
    slices: Mapping[str, str] | None = None,
    probability: float | None = None,
    evaluator: str = "quality",
) -> list[EvaluationRecord]:
    """``n`` scores on the 1..100 scale, normal around ``mean`` (clipped), at uniform times in [start, end)."""
    values = np.clip(rng.normal(mean, sd, n), 1, 100)
    times = np.sort(rng.integers(start_ns, end_ns, n))
    return [
        record(int(t), float(v), slices=slices, probability=probability, evaluator=evaluator)
        for t, v in zip(times, values, strict=True)
    ]


def as_rows(records: Sequence[EvaluationRecord]) -> list[StoredEvaluation]:
    """The rows the store would return for ``records`` (without a database: for the simulations)."""
    return [row for r in records for row in stored_evaluations(r)]


@pytest.fixture
async def quality_store(tmp_path: Path) -> AsyncIterator[QualityStore]:
    """A real SQLite evaluation store in a temporary directory."""
    store = QualityStore(StoreConfig(url=f"sqlite:///{tmp_path}/quality.db"), Settings())
    await store.start(retention_task=False)
    yield store
    await store.shutdown(store.settings.clock.monotonic() + 5)
