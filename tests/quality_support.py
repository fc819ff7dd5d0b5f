"""Real stores for the quality tests: a SQLite file per test, and a PostgreSQL schema per test.

PostgreSQL is the server on 127.0.0.1:5432 (user postgres, database test; CI starts it from .ci/run).
Each test gets a schema of its own (``otel_judge_t_<pid>_<random>``), dropped afterwards. Without a
server the PostgreSQL cases are skipped locally; under CI (``CI`` set) they fail instead.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.schema import DropSchema

from otel_judge.component import Settings
from otel_judge.config import StoreConfig
from otel_judge.model import EvaluationRecord, EvaluationResult, EvaluationStatus, JudgeUsage, Score
from otel_judge.quality.store import QualityStore

PG_HOST, PG_PORT = "127.0.0.1", 5432
PG_URL = f"postgresql+asyncpg://postgres@{PG_HOST}:{PG_PORT}/test"
BACKENDS = ["sqlite", "postgresql"]
NOW_NS = 1_800_000_000_000_000_000


def postgres_available() -> bool:
    try:
        with socket.create_connection((PG_HOST, PG_PORT), timeout=1.0):
            return True
    except OSError:
        return False


def require_postgres() -> None:
    if postgres_available():
        return
    if os.environ.get("CI"):
        pytest.fail(f"PostgreSQL is not running on {PG_HOST}:{PG_PORT} (CI starts it from .ci/run)")
    pytest.skip(f"no PostgreSQL on {PG_HOST}:{PG_PORT} (CI has one)")


@asynccontextmanager
async def store_config(backend: str, tmp_path: Path, **fields: Any) -> AsyncIterator[StoreConfig]:
    """A StoreConfig on a fresh database: a SQLite file, or a PostgreSQL schema dropped afterwards."""
    if backend == "sqlite":
        yield StoreConfig(url=f"sqlite:///{tmp_path / 'store' / 'quality.db'}", **fields)
        return
    require_postgres()
    schema = f"otel_judge_t_{os.getpid()}_{secrets.token_hex(4)}"
    try:
        yield StoreConfig(url=PG_URL, postgres_schema=schema, **fields)
    finally:
        engine = create_async_engine(PG_URL)
        async with engine.begin() as conn:
            await conn.execute(DropSchema(schema, cascade=True, if_exists=True))
        await engine.dispose()


@asynccontextmanager
async def open_store(
    backend: str, tmp_path: Path, settings: Settings | None = None, **fields: Any
) -> AsyncIterator[QualityStore]:
    """A started store (no retention task: tests call ``tick()``)."""
    async with store_config(backend, tmp_path, **fields) as config:
        store = QualityStore(config, settings or Settings())
        await store.start(retention_task=False)
        try:
            yield store
        finally:
            await store.shutdown(0)


def record(
    n: int,
    value: float | None = 80.0,
    *,
    evaluator: str = "quality",
    status: EvaluationStatus = EvaluationStatus.EVALUATED,
    time_ns: int = NOW_NS,
    slices: dict[str, str] | None = None,
    probability: float | None = 1.0,
    passed: bool | None = None,
    scores: Sequence[Score] | None = None,
    explanation: str | None = "fine",
    cost: float | None = 0.001,
    evaluation_id: str | None = None,
) -> EvaluationRecord:
    """One evaluation of span ``n``: one score ``value`` on a 0-100 scale (or ``scores``), or an error."""
    eid = evaluation_id or f"{evaluator}-{n:06d}"
    if scores is None:
        scores = (
            (Score(evaluator, value, label=None, explanation=explanation, passed=passed, low=0, high=100),)
            if status is EvaluationStatus.EVALUATED and value is not None
            else ()
        )
    result = EvaluationResult(
        evaluator,
        status,
        tuple(scores),
        error=None if status is EvaluationStatus.EVALUATED else "judge said no",
        judge_model="openai/fake-judge",
        evaluation_id=eid,
        usage=JudgeUsage(120, 12, cost),
        evaluator_type="score",
        evaluator_version="0.1.0",
        config_hash="c0ffee",
        judge_params=(("temperature", 0.0),),
        completed_ns=time_ns,
    )
    return EvaluationRecord(
        evaluation_id=eid,
        time_ns=time_ns,
        trace_id=n.to_bytes(16, "big"),
        span_id=n.to_bytes(8, "big"),
        result=result,
        slices=tuple(sorted((slices if slices is not None else {"model": "gpt-4o-mini", "route": "/support"}).items())),
        sampling_probability=probability,
        judged_model="gpt-4o-mini",
        response_id=f"chatcmpl-{n}",
    )
