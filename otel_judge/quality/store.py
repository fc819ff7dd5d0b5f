"""The evaluation store: every judgment, one row per score, in SQLite (embedded) or PostgreSQL (shared).

One data layer for both backends (SQLAlchemy 2 async: aiosqlite / asyncpg); the schema is created
and upgraded by alembic migrations shipped in the package, run at :meth:`QualityStore.start` (on
PostgreSQL under an advisory lock, so replicas starting together migrate once). Inserts are
idempotent on ``(evaluation_id, score_key)``: a retried export, a re-delivered span or a replay
never writes a row twice. A task deletes rows older than ``store.retention``.

:class:`StoreSink` is the :class:`~otel_judge.model.EvaluationSink` that feeds the store from the
judging stage: ``record`` only appends to a bounded buffer; its own task writes batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import random
import weakref
from collections import deque
from collections.abc import AsyncIterator, Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from sqlalchemy import Row, Select, delete, event, func, inspect, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from otel_judge.component import Settings
from otel_judge.config import StoreConfig
from otel_judge.errors import ConfigError
from otel_judge.model import EvaluationRecord, EvaluationResult, EvaluationStatus, JudgeUsage, Score
from otel_judge.quality.model import StoredEvaluation
from otel_judge.quality.schema import ALERT_STATE, EVALUATIONS, SLICES

__all__ = ["QualityStore", "ScoreRow", "StoreSink", "engine_url", "stored_evaluations"]

MIGRATIONS = Path(__file__).parent / "migrations"
_MAX_TEXT = 255  # String(255) columns: label, models, slice values
_IN_CHUNK = 500  # ids per IN (...) list
_START_LOCKED_RETRY = 30.0  # seconds start() retries a SQLite file another process holds
_MIGRATION_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()


def _migration_lock(loop: asyncio.AbstractEventLoop) -> asyncio.Lock:
    """One migration at a time in this process (per event loop: an asyncio lock belongs to one)."""
    lock = _MIGRATION_LOCKS.get(loop)
    if lock is None:
        lock = _MIGRATION_LOCKS[loop] = asyncio.Lock()
    return lock


def _sqlite_locked(exc: BaseException) -> bool:
    return isinstance(exc, OperationalError) and "database is locked" in str(exc)


_ADVISORY_LOCK = 0x6F746A71  # "otjq": one migration at a time across replicas

#: An alert condition: (kind, score key, sorted slice items), as ``Alert.key``.
ConditionKey = tuple[str, str, tuple[tuple[str, str], ...]]


def _condition(key: ConditionKey) -> tuple[str, str]:
    """The condition's id (SHA-256 hex of its canonical JSON) and its slice as canonical JSON."""
    kind, score_key, slice_items = key
    slice_json = json.dumps([[str(k), str(v)] for k, v in sorted(slice_items)], separators=(",", ":"))
    canonical = json.dumps([kind, score_key, json.loads(slice_json)], separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest(), slice_json


def engine_url(url: str) -> URL:
    """The async SQLAlchemy URL for a ``store.url``: ``sqlite:///PATH`` -> ``sqlite+aiosqlite:///PATH``,
    ``postgresql://`` / ``postgres://`` -> ``postgresql+asyncpg://``."""
    try:
        parsed = make_url(url.replace("postgres://", "postgresql://", 1) if url.startswith("postgres://") else url)
    except ArgumentError as exc:
        raise ConfigError([f"store.url: {exc}"]) from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite")
    if backend == "postgresql":
        return parsed.set(drivername="postgresql+asyncpg")
    raise ConfigError([f"store.url: {backend!r} is not supported (sqlite or postgresql)"])


def _cut(text: str | None, limit: int = _MAX_TEXT) -> str | None:
    return None if text is None else text[:limit]


def _jsonable(value: Any) -> Any:
    """Plain JSON values (tuples become lists, anything else its str)."""
    return json.loads(json.dumps(value, default=str))


def _finite(value: float | None) -> float | None:
    """NaN and infinities are not valid JSON nor comparable in SQL: stored as NULL."""
    return None if value is None or not math.isfinite(value) else float(value)


def stored_evaluations(record: EvaluationRecord, max_explanation_chars: int = 1000) -> list[StoredEvaluation]:
    """The rows of one evaluation: one per score; one with ``value`` None (score key = the evaluator
    name) for an evaluation that ended without a score. An evaluated result without scores has none."""
    result = record.result
    slices = {name: str(_cut(value)) for name, value in record.slices}
    usage = result.usage
    common: dict[str, Any] = {
        "evaluation_id": record.evaluation_id,
        "evaluator": result.evaluator,
        "time_ns": record.time_ns,
        "trace_id": record.trace_id.hex(),
        "span_id": record.span_id.hex(),
        "status": result.status.value,
        "sampling_probability": record.sampling_probability,
        "slices": slices,
        "judged_model": _cut(record.judged_model),
        "judge_model": _cut(result.judge_model),
        "cost_usd": usage.cost_usd,
        "evaluator_type": _cut(result.evaluator_type, 64),
        "config_hash": _cut(result.config_hash, 64),
        "evaluator_version": _cut(result.evaluator_version, 64),
        "judge_params": _jsonable(dict(result.judge_params)),
        "response_id": _cut(record.response_id),
        "late": record.late,
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "error": _cut(result.error, 2000),
    }

    def explanation(text: str | None) -> str | None:
        return text[:max_explanation_chars] if text and max_explanation_chars > 0 else None

    if not result.scores:
        if result.status is EvaluationStatus.EVALUATED:
            return []
        return [StoredEvaluation(score_key=result.evaluator, **common)]
    return [
        StoredEvaluation(
            score_key=score.key,
            value=_finite(score.value),
            label=_cut(score.label),
            passed=score.is_pass,
            low=score.low,
            high=score.high,
            higher_is_better=score.higher_is_better,
            explanation=explanation(score.explanation),
            score_index=index,
            extra=_jsonable(dict(score.extra)),
            **common,
        )
        for index, score in enumerate(result.scores)
    ]


_COLUMNS = tuple(c.name for c in EVALUATIONS.columns)


def _row(stored: StoredEvaluation) -> dict[str, Any]:
    row = {name: getattr(stored, name) for name in _COLUMNS}
    for name in ("extra", "judge_params"):  # NULL, not {}: nothing to decode when read back
        row[name] = row[name] or None
    return row


def _stored(row: Row[Any]) -> StoredEvaluation:
    data = row._asdict()
    data["extra"] = data["extra"] or {}
    data["judge_params"] = data["judge_params"] or {}
    data["slices"] = data["slices"] or {}
    return StoredEvaluation(**data)


def _result(rows: Sequence[StoredEvaluation]) -> EvaluationResult:
    """Rebuild the judge's result from the rows of one evaluation (usage zero: nothing was spent again)."""
    first = rows[0]
    scores = tuple(
        Score(
            key=r.score_key,
            value=r.value,
            label=r.label,
            explanation=r.explanation,
            passed=r.passed,
            low=r.low,
            high=r.high,
            higher_is_better=r.higher_is_better,
            extra=tuple(r.extra.items()),
        )
        for r in sorted(rows, key=lambda r: r.score_index)
        if r.value is not None
    )
    return EvaluationResult(
        first.evaluator,
        EvaluationStatus(first.status),
        scores,
        error=first.error,
        judge_model=first.judge_model,
        evaluation_id=first.evaluation_id,
        usage=JudgeUsage(),
        evaluator_type=first.evaluator_type,
        evaluator_version=first.evaluator_version,
        config_hash=first.config_hash,
        judge_params=tuple(sorted(first.judge_params.items())),
        completed_ns=first.time_ns,
    )


class ScoreRow(NamedTuple):
    """The columns of one score row that an estimate needs (:meth:`QualityStore.scores`)."""

    evaluation_id: str
    score_key: str
    status: str
    value: float | None
    sampling_probability: float | None
    passed: bool | None
    low: float | None
    high: float | None

    @property
    def weight(self) -> float:
        p = self.sampling_probability
        return 1.0 / p if p is not None and p > 0 else 1.0


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class QualityStore:
    """Async access to the evaluation store. ``start`` connects and migrates; every method after it is
    safe to call concurrently. ``shutdown`` is safe before ``start`` and twice."""

    def __init__(self, config: StoreConfig, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        self.url = engine_url(config.url)
        self._engine: AsyncEngine | None = None
        self._retention: asyncio.Task[None] | None = None
        # SQLite takes one writer at a time: writers of this process queue here instead of in busy waits.
        self._write_lock = asyncio.Lock() if self.dialect == "sqlite" else None

    @property
    def dialect(self) -> str:
        return self.url.get_backend_name()

    def describe(self) -> str:
        """The URL without its password, for logs and the start-up line."""
        return self.url.render_as_string(hide_password=True)

    # ------------------------------------------------------------------ lifecycle

    async def start(self, *, retention_task: bool = True) -> None:
        """Connect, create or upgrade the schema, start the retention task. Raises OSError (with the
        URL, password hidden) when the database cannot be reached or migrated."""
        if self._engine is not None:
            return
        engine: AsyncEngine | None = None
        loop = asyncio.get_running_loop()
        give_up = loop.time() + _START_LOCKED_RETRY
        delay = 0.05
        while True:
            try:
                engine = self._create_engine()
                # Alembic's command API keeps module-level state (its ``context`` and ``op`` proxies):
                # two stores migrating at once in one process would corrupt each other's run.
                async with _migration_lock(loop), engine.connect() as plain:
                    conn = await plain.execution_options(**_WRITE)
                    async with conn.begin():
                        await self._migrate(conn)
                break
            except (SQLAlchemyError, OSError) as exc:  # OSError includes TimeoutError
                if engine is not None:
                    await engine.dispose()
                    engine = None
                # Another process creating the same SQLite file can hold it past the busy handler
                # (switching a new file to WAL needs it alone): wait and try again, bounded.
                if _sqlite_locked(exc) and loop.time() + delay < give_up:
                    await asyncio.sleep(delay * (0.5 + random.random()))
                    delay = min(delay * 2, 1.0)
                    continue
                raise OSError(f"store {self.describe()}: {type(exc).__name__}: {_first_line(exc)}") from None
        self._engine = engine
        if retention_task:
            self._retention = asyncio.create_task(self._retention_loop(), name="store-retention")

    def _create_engine(self) -> AsyncEngine:
        kwargs: dict[str, Any] = {}
        if self.dialect == "sqlite":
            database = self.url.database
            if not database or database == ":memory:":
                kwargs["poolclass"] = StaticPool  # one connection: the in-memory database is per connection
            else:
                Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": 30.0}  # seconds a writer waits for the lock (busy timeout)
        else:
            settings = {"application_name": "otel-judge"}
            if self.config.postgres_schema:
                settings["search_path"] = self.config.postgres_schema
            kwargs["connect_args"] = {"server_settings": settings, "timeout": 10.0}  # connect timeout, seconds
            kwargs["pool_pre_ping"] = True
        engine = create_async_engine(self.url, **kwargs)
        if self.dialect == "sqlite":
            event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
            event.listen(engine.sync_engine, "begin", _sqlite_on_begin)
        return engine

    async def _migrate(self, conn: AsyncConnection) -> None:
        if self.dialect == "postgresql":
            # Replicas starting together: one migrates, the others wait and then find the schema current.
            await conn.execute(select(func.pg_advisory_xact_lock(_ADVISORY_LOCK)))
            schema = self.config.postgres_schema
            # Created only when missing: CREATE SCHEMA needs a privilege that using one does not.
            if schema and not await conn.run_sync(lambda sync: inspect(sync).has_schema(schema)):
                from sqlalchemy.schema import CreateSchema

                await conn.execute(CreateSchema(schema, if_not_exists=True))
        await conn.run_sync(run_migrations)

    async def shutdown(self, deadline: float) -> None:
        """Stop the retention task and close the connections."""
        if self._retention is not None:
            self._retention.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retention
            self._retention = None
        if self._engine is not None:
            engine, self._engine = self._engine, None
            await engine.dispose()

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("the store is not started")
        return self._engine

    @contextlib.asynccontextmanager
    async def _writing(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction (on SQLite: holding the write lock from its start)."""
        async with contextlib.AsyncExitStack() as stack:
            if self._write_lock is not None:
                await stack.enter_async_context(self._write_lock)
            plain = await stack.enter_async_context(self.engine.connect())
            conn = await plain.execution_options(**_WRITE)
            await stack.enter_async_context(conn.begin())
            yield conn

    # ------------------------------------------------------------------ writes

    async def insert(self, records: Sequence[EvaluationRecord]) -> int:
        """Insert the rows of ``records`` that are not there yet; returns the rows written."""
        rows: dict[tuple[str, str], dict[str, Any]] = {}
        slice_rows: dict[tuple[str, str], dict[str, Any]] = {}
        for record in records:
            for stored in stored_evaluations(record, self.config.max_explanation_chars):
                rows.setdefault((stored.evaluation_id, stored.score_key), _row(stored))
                for name, value in stored.slices.items():
                    slice_rows.setdefault(
                        (stored.evaluation_id, name),
                        {
                            "evaluation_id": stored.evaluation_id,
                            "name": name,
                            "value": value,
                            "time_ns": stored.time_ns,
                        },
                    )
        if not rows:
            return 0
        insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        written = 0
        async with self._writing() as conn:
            for chunk in _chunks(list(rows.values()), 1000):
                stmt = insert(EVALUATIONS).on_conflict_do_nothing(index_elements=["evaluation_id", "score_key"])
                result = await conn.execute(stmt.returning(EVALUATIONS.c.evaluation_id), chunk)
                written += len(result.all())
            for chunk in _chunks(list(slice_rows.values()), 1000):
                slice_stmt = insert(SLICES).on_conflict_do_nothing(index_elements=["evaluation_id", "name"])
                await conn.execute(slice_stmt, chunk)
        self.settings.telemetry.add("otel_judge.store.rows_written", written)
        return written

    async def delete_older_than(self, cutoff_ns: int) -> int:
        """Delete evaluations whose time is before ``cutoff_ns``; returns the score rows deleted."""
        async with self._writing() as conn:
            result = await conn.execute(delete(EVALUATIONS).where(EVALUATIONS.c.time_ns < cutoff_ns))
            await conn.execute(delete(SLICES).where(SLICES.c.time_ns < cutoff_ns))
        deleted = int(result.rowcount or 0)
        self.settings.telemetry.add("otel_judge.store.rows_deleted", deleted)
        return deleted

    async def tick(self) -> int:
        """Apply ``store.retention`` now (the retention task calls this; tests too, with a fake clock)."""
        cutoff = self.settings.clock.time_ns() - int(self.config.retention * 1e9)
        return await self.delete_older_than(cutoff)

    async def _retention_loop(self) -> None:
        interval = min(3600.0, max(self.config.retention / 10, 1.0))
        while True:
            try:
                await self.tick()
            except (SQLAlchemyError, OSError) as exc:
                self.settings.telemetry.add("otel_judge.store.errors", operation="retention")
                self.settings.logger.warning("store retention failed: %s", _first_line(exc))
            await asyncio.sleep(interval)

    # ------------------------------------------------------------------ alert state

    async def claim_firing(self, key: ConditionKey, alert: Mapping[str, Any], now_ns: int) -> bool:
        """Mark the condition ``key`` firing with ``alert`` (``Alert.to_state()``, its ``id`` the episode's
        alert id): insert it if absent, else move it from resolved to firing. True only for the one
        caller that made the transition (another replica, or this one before a restart, may have)."""
        condition_id, slice_json = _condition(key)
        values = {
            "status": "firing",
            "alert_id": str(alert.get("id", "")),
            "updated_ns": now_ns,
            "alert": _jsonable(dict(alert)),
        }
        insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        stmt = insert(ALERT_STATE).values(
            condition_id=condition_id, kind=key[0], score_key=key[1], slice=slice_json, **values
        )
        a = ALERT_STATE.c
        async with self._writing() as conn:
            # Both statements wait for a concurrent claim of the same row (its lock on PostgreSQL, the
            # write lock on SQLite) and then see its outcome: exactly one of the claimants wins.
            inserted = await conn.execute(
                stmt.on_conflict_do_nothing(index_elements=["condition_id"]).returning(a.condition_id)
            )
            if inserted.first() is not None:
                return True
            moved = await conn.execute(
                update(ALERT_STATE).where(a.condition_id == condition_id, a.status == "resolved").values(**values)
            )
            return bool(moved.rowcount)

    async def claim_resolved(self, key: ConditionKey, alert: Mapping[str, Any], now_ns: int) -> bool:
        """Move the condition ``key`` from firing to resolved, with ``alert`` (the resolved alert's
        ``to_state()``), if it is firing the same episode (alert ``id``). True only for the one caller
        that made the transition."""
        condition_id, _ = _condition(key)
        a = ALERT_STATE.c
        stmt = update(ALERT_STATE).where(a.condition_id == condition_id, a.status == "firing")
        if "id" in alert:
            stmt = stmt.where(a.alert_id == str(alert["id"]))
        async with self._writing() as conn:
            moved = await conn.execute(stmt.values(status="resolved", updated_ns=now_ns, alert=_jsonable(dict(alert))))
            return bool(moved.rowcount)

    async def firing_alerts(self) -> dict[ConditionKey, dict[str, Any]]:
        """Every condition firing now, with its alert (``Alert.to_state()`` as claimed)."""
        a = ALERT_STATE.c
        out: dict[ConditionKey, dict[str, Any]] = {}
        async with self.engine.connect() as conn:
            result = await conn.execute(select(a.kind, a.score_key, a.slice, a.alert).where(a.status == "firing"))
            for kind, score_key, slice_json, alert in result:
                items = tuple((str(k), str(v)) for k, v in json.loads(slice_json))
                out[(kind, score_key, items)] = dict(alert)
        return out

    # ------------------------------------------------------------------ reads

    async def rows(
        self,
        *,
        evaluator: str | None = None,
        since_ns: int | None = None,
        until_ns: int | None = None,
        slices: Mapping[str, str] | None = None,
        statuses: Collection[str] | None = ("evaluated",),
    ) -> list[StoredEvaluation]:
        """Score rows in time order. ``since_ns`` inclusive, ``until_ns`` exclusive; ``slices``: rows
        having every one of these slice values; ``statuses`` None: every status."""
        stmt = _where(
            select(EVALUATIONS),
            evaluator=evaluator,
            since_ns=since_ns,
            until_ns=until_ns,
            slices=slices,
            statuses=statuses,
        )
        async with self.engine.connect() as conn:
            result = await conn.execute(stmt)
            return [_stored(row) for row in result]

    async def scores(
        self,
        *,
        evaluator: str,
        since_ns: int | None = None,
        until_ns: int | None = None,
        slices: Mapping[str, str] | None = None,
    ) -> list[ScoreRow]:
        """What an estimate needs of each row (every status), a few columns only: the quality API's
        read, several times faster than :meth:`rows` over a busy window."""
        e = EVALUATIONS
        columns = (e.c.evaluation_id, e.c.score_key, e.c.status, e.c.value, e.c.sampling_probability, e.c.passed)
        stmt = _where(
            select(*columns, e.c.low, e.c.high),
            evaluator=evaluator,
            since_ns=since_ns,
            until_ns=until_ns,
            slices=slices,
            statuses=None,
        )
        async with self.engine.connect() as conn:
            result = await conn.execute(stmt)
            return [ScoreRow(*row) for row in result]

    async def results(self, evaluation_ids: Collection[str]) -> dict[str, EvaluationResult]:
        """The stored judgments of these evaluation ids (absent ids are left out), as the judge made them
        but with zero usage."""
        ids = sorted(set(evaluation_ids))
        by_id: dict[str, list[StoredEvaluation]] = {}
        async with self.engine.connect() as conn:
            for chunk in _chunks(ids, _IN_CHUNK):
                result = await conn.execute(select(EVALUATIONS).where(EVALUATIONS.c.evaluation_id.in_(chunk)))
                for row in result:
                    stored = _stored(row)
                    by_id.setdefault(stored.evaluation_id, []).append(stored)
        return {eid: _result(rows) for eid, rows in by_id.items()}

    async def lookup(self, evaluation_id: str, max_age: float) -> EvaluationResult | None:
        """A stored successful judgment of ``evaluation_id`` at most ``max_age`` seconds old (the judge
        pool's idempotency check after a restart); None when there is none or the store fails."""
        try:
            found = (await self.results([evaluation_id])).get(evaluation_id)
        except (SQLAlchemyError, OSError, RuntimeError):
            self.settings.telemetry.add("otel_judge.store.errors", operation="lookup")
            return None
        if found is None or found.status is not EvaluationStatus.EVALUATED or not found.scores:
            return None
        if found.completed_ns < self.settings.clock.time_ns() - int(max_age * 1e9):
            return None
        return found

    async def slice_values(self, since_ns: int | None = None) -> dict[str, list[str]]:
        """Every slice name with its known values (since ``since_ns``), sorted."""
        stmt = select(SLICES.c.name, SLICES.c.value).distinct()
        if since_ns is not None:
            stmt = stmt.where(SLICES.c.time_ns >= since_ns)
        out: dict[str, list[str]] = {}
        async with self.engine.connect() as conn:
            for name, value in await conn.execute(stmt):
                out.setdefault(name, []).append(value)
        return {name: sorted(values) for name, values in sorted(out.items())}


_WRITE = {"otel_judge_write": True}  # execution option of write transactions (SQLite: BEGIN IMMEDIATE)


def _where(
    stmt: Select[Any],
    *,
    evaluator: str | None,
    since_ns: int | None,
    until_ns: int | None,
    slices: Mapping[str, str] | None,
    statuses: Collection[str] | None,
) -> Select[Any]:
    e = EVALUATIONS
    if evaluator is not None:
        stmt = stmt.where(e.c.evaluator == evaluator)
    if since_ns is not None:
        stmt = stmt.where(e.c.time_ns >= since_ns)
    if until_ns is not None:
        stmt = stmt.where(e.c.time_ns < until_ns)
    if statuses is not None:
        stmt = stmt.where(e.c.status.in_(list(statuses)))
    # The (evaluator, time) index narrows to the window; slice values are then checked on the row's
    # JSON. (A join with the slices table lets PostgreSQL pick nested loops over a freshly filled
    # table, before it has statistics: seconds instead of milliseconds.)
    for name, value in (slices or {}).items():
        stmt = stmt.where(e.c.slices[name].as_string() == _cut(value))
    return stmt.order_by(e.c.time_ns, e.c.evaluation_id, e.c.score_index)


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    """WAL: readers (the quality API, the detector) never block the writer, nor it them. The driver's
    own transaction handling is off (it would run DDL outside transactions): see ``_sqlite_on_begin``."""
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_on_begin(conn: Any) -> None:
    """SQLAlchemy's recipe for real SQLite transactions. A writer takes the write lock at BEGIN
    (IMMEDIATE), so two processes migrating or writing one file queue up (busy timeout) instead of
    failing when one commits between the other's read and write."""
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("otel_judge_write") else "BEGIN")


def alembic_config(connection: Any = None) -> Any:
    """The alembic ``Config`` of the shipped migrations (with ``connection`` for env.py)."""
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def run_migrations(connection: Any) -> None:
    """Upgrade the schema to the newest revision (a sync connection, inside a transaction)."""
    from alembic import command

    command.upgrade(alembic_config(connection), "head")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


# --------------------------------------------------------------------------- sink


class StoreSink:
    """Feeds the store from the judging stage.

    ``record`` appends to a buffer of at most ``store.queue_size`` evaluations (past it, new ones are
    counted in ``otel_judge.store.dropped`` and lost to the store; spans are never affected). A task
    writes what is buffered, up to ``batch_size`` evaluations per transaction: under load, records
    accumulate while a batch is written, so batches grow with the load. A failed write is retried
    with capped exponential backoff; ``shutdown`` writes what is left until its deadline.
    """

    def __init__(
        self,
        store: QualityStore,
        settings: Settings,
        *,
        batch_size: int = 500,
        initial_backoff: float = 0.5,
        max_backoff: float = 30.0,
    ) -> None:
        self._store = store
        self._settings = settings
        self._max = store.config.queue_size
        self._batch_size = batch_size
        self._initial_backoff = initial_backoff
        self._max_backoff = max_backoff
        self._buffer: deque[EvaluationRecord] = deque()
        self._wakeup = asyncio.Event()
        self._stop = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._rng = random.Random()

    def record(self, records: Sequence[EvaluationRecord]) -> None:
        if self._closed:
            self._settings.telemetry.add("otel_judge.store.dropped", len(records), reason="shutdown")
            return
        room = self._max - len(self._buffer)
        if len(records) > room:
            self._settings.telemetry.add("otel_judge.store.dropped", len(records) - max(room, 0), reason="queue_full")
            records = records[: max(room, 0)]
        if records:
            self._buffer.extend(records)
            self._idle.clear()
            self._wakeup.set()
            self._settings.telemetry.set("otel_judge.store.queue.size", len(self._buffer))

    async def start(self) -> None:
        if self._task is None and not self._closed:
            self._task = asyncio.create_task(self._run(), name="store-sink")

    async def flush(self) -> None:
        """Wait until everything recorded so far is written (or given up on). For tests and replay."""
        await self._idle.wait()

    async def shutdown(self, deadline: float) -> None:
        """Take no more records; write what is buffered until ``deadline``; count the rest as dropped."""
        if self._closed:
            return
        self._closed = True
        if self._task is not None:
            remaining = deadline - self._settings.clock.monotonic()
            if remaining > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        await self._idle.wait()
            self._stop.set()
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._buffer:
            self._settings.telemetry.add("otel_judge.store.dropped", len(self._buffer), reason="shutdown")
            self._buffer.clear()
        self._idle.set()

    async def _run(self) -> None:
        backoff = self._initial_backoff
        while True:
            if not self._buffer:
                self._idle.set()
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            batch = [self._buffer[i] for i in range(min(self._batch_size, len(self._buffer)))]
            try:
                await self._store.insert(batch)
            except (OperationalError, InterfaceError, OSError, TimeoutError) as exc:  # the database is away
                self._settings.telemetry.add("otel_judge.store.errors", operation="insert")
                self._settings.logger.warning("store write failed (retrying in %.1fs): %s", backoff, _first_line(exc))
                wait = backoff * (0.5 + self._rng.random())
                backoff = min(backoff * 2, self._max_backoff)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._stop.wait()  # shutdown interrupts the wait
                continue
            except Exception as exc:  # this batch cannot be written (bad data, a bug): skip it, keep going
                self._settings.telemetry.add("otel_judge.store.errors", operation="insert")
                self._settings.telemetry.add("otel_judge.store.dropped", len(batch), reason="error")
                self._settings.logger.error("store write failed, %d evaluation(s) dropped: %s", len(batch), exc)
            backoff = self._initial_backoff
            for _ in batch:
                self._buffer.popleft()
            self._settings.telemetry.set("otel_judge.store.queue.size", len(self._buffer))
