"""The evaluation store on real SQLite and PostgreSQL: migrations, one row per score, idempotent
inserts (also concurrent, from two replicas), reads, retention, the sink, and the judge's cache
reading the store after a restart."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from otel_judge import semconv
from otel_judge.component import FakeClock, Settings
from otel_judge.config import StoreConfig
from otel_judge.errors import ConfigError
from otel_judge.model import EvaluationStatus, Score
from otel_judge.pipeline import Pipeline
from otel_judge.processor import evaluation_id
from otel_judge.quality.schema import METADATA, VERSION_TABLE
from otel_judge.quality.store import QualityStore, StoreSink, engine_url
from otel_judge.testing import FakeJudge, SpanSink

from .conftest import pipeline_config
from .otlp_builders import RawClient, genai_span, request
from .quality_support import BACKENDS, NOW_NS, open_store, record, store_config

backends = pytest.mark.parametrize("backend", BACKENDS)


@backends
async def test_migrations_create_exactly_the_models(backend: str, tmp_path: Path) -> None:
    """After start the database holds what schema.py declares (alembic finds no difference), at the
    newest revision, in its own version table; a second start migrates nothing and keeps the data."""
    async with open_store(backend, tmp_path) as store:
        await store.insert([record(1)])

        def diff(conn: object) -> tuple[list[object], list[str]]:
            context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})  # type: ignore[arg-type]
            return compare_metadata(context, METADATA), inspect(conn).get_table_names()  # type: ignore[arg-type]

        async with store.engine.connect() as conn:
            differences, tables = await conn.run_sync(diff)
        again = QualityStore(store.config, Settings())
        await again.start(retention_task=False)
        kept = await again.rows()
        await again.shutdown(0)

    assert differences == []
    assert set(tables) == {*METADATA.tables, VERSION_TABLE}
    assert [r.evaluation_id for r in kept] == ["quality-000001"]


@backends
async def test_one_row_per_score_and_one_for_an_error(backend: str, tmp_path: Path) -> None:
    """A rubric's three scores are three rows; an evaluation that failed is one row keyed by the
    evaluator with no value; explanations are cut to max_explanation_chars; every field round-trips."""
    rubric = [
        Score("rubric.faithful", 5, explanation="x" * 50, low=1, high=5),
        Score("rubric.helpful", 3, low=1, high=5, higher_is_better=True, extra=(("votes", [3, 3, 4]),)),
        Score("rubric", 0.625, label="pass", low=0, high=1),
    ]
    async with open_store(backend, tmp_path, max_explanation_chars=10) as store:
        written = await store.insert(
            [
                record(1, evaluator="rubric", scores=rubric, probability=0.25),
                record(2, evaluator="rubric", status=EvaluationStatus.TIMEOUT),
            ]
        )
        rows = await store.rows(evaluator="rubric", statuses=None)

    assert written == 4
    by_key = {(r.evaluation_id, r.score_key): r for r in rows}
    assert set(by_key) == {
        ("rubric-000001", "rubric.faithful"),
        ("rubric-000001", "rubric.helpful"),
        ("rubric-000001", "rubric"),
        ("rubric-000002", "rubric"),
    }
    faithful = by_key[("rubric-000001", "rubric.faithful")]
    assert faithful.explanation == "x" * 10
    assert (faithful.value, faithful.low, faithful.high, faithful.score_index) == (5, 1, 5, 0)
    assert faithful.trace_id == (1).to_bytes(16, "big").hex() and faithful.span_id == (1).to_bytes(8, "big").hex()
    assert faithful.slices == {"model": "gpt-4o-mini", "route": "/support"}
    assert (faithful.sampling_probability, faithful.weight) == (0.25, 4.0)
    assert (faithful.judge_model, faithful.judged_model, faithful.cost_usd) == (
        "openai/fake-judge",
        "gpt-4o-mini",
        0.001,
    )
    assert (faithful.evaluator_type, faithful.config_hash, faithful.judge_params) == (
        "score",
        "c0ffee",
        {"temperature": 0.0},
    )
    assert by_key[("rubric-000001", "rubric.helpful")].extra == {"votes": [3, 3, 4]}
    aggregate = by_key[("rubric-000001", "rubric")]
    assert (aggregate.label, aggregate.passed) == ("pass", True)
    failed = by_key[("rubric-000002", "rubric")]
    assert (failed.status, failed.value, failed.error) == ("timeout", None, "judge said no")


@backends
@pytest.mark.parametrize(
    ("batches", "written", "rows"),
    [
        pytest.param([[1, 2, 3], [1, 2, 3]], [3, 0], 3, id="retried-export"),
        pytest.param([[1, 1, 2]], [2], 2, id="duplicate-in-one-batch"),
        pytest.param([[1, 2], [2, 3], [3, 4]], [2, 1, 1], 4, id="overlapping"),
        pytest.param([[]], [0], 0, id="empty"),
    ],
)
async def test_insert_is_idempotent(
    backend: str, tmp_path: Path, batches: list[list[int]], written: list[int], rows: int
) -> None:
    """Inserting an evaluation again writes nothing and says so: a retried export or a replay never
    writes twice."""
    async with open_store(backend, tmp_path) as store:
        counts = [await store.insert([record(n, value=50 + n) for n in batch]) for batch in batches]
        stored = await store.rows()

    assert counts == written
    assert len(stored) == rows


@backends
async def test_concurrent_duplicate_inserts_from_two_replicas(backend: str, tmp_path: Path) -> None:
    """Two stores on one database (two replicas) insert overlapping batches at once: every evaluation
    is stored once and the rows reported written add up to exactly that."""
    async with store_config(backend, tmp_path) as config:
        replicas = [QualityStore(config, Settings()) for _ in range(2)]
        await asyncio.gather(*(r.start(retention_task=False) for r in replicas))  # migrate at once, too
        batches = [[record(n) for n in range(start, start + 40)] for start in range(0, 200, 20)]  # each id twice
        counts = await asyncio.gather(*(replicas[i % 2].insert(batch) for i, batch in enumerate(batches)))
        stored = await replicas[0].rows()
        for replica in replicas:
            await replica.shutdown(0)

    assert sum(counts) == 220  # ids 0..219
    assert len(stored) == len({r.evaluation_id for r in stored}) == 220


@backends
async def test_rows_filter_by_evaluator_time_slices_and_status(backend: str, tmp_path: Path) -> None:
    """``rows`` selects by evaluator, [since, until), every given slice value, and status (evaluated by
    default; None for all), in time order."""
    support = {"model": "gpt-4o-mini", "route": "/support"}
    sales = {"model": "gpt-4o", "route": "/sales"}
    async with open_store(backend, tmp_path) as store:
        await store.insert(
            [
                record(1, time_ns=NOW_NS - 30, slices=support),
                record(2, time_ns=NOW_NS - 20, slices=sales),
                record(3, time_ns=NOW_NS - 10, slices=support),
                record(4, time_ns=NOW_NS - 5, slices=support, status=EvaluationStatus.JUDGE_ERROR),
                record(5, time_ns=NOW_NS - 1, slices=support, evaluator="tone"),
            ]
        )

        async def ids(**query: object) -> list[str]:
            return [r.evaluation_id for r in await store.rows(**query)]  # type: ignore[arg-type]

        cases = {
            "all evaluated": await ids(),
            "evaluator": await ids(evaluator="quality"),
            "since": await ids(evaluator="quality", since_ns=NOW_NS - 20),
            "until": await ids(evaluator="quality", until_ns=NOW_NS - 10),
            "one slice": await ids(slices={"route": "/support"}),
            "two slices": await ids(slices={"route": "/support", "model": "gpt-4o"}),
            "every status": await ids(evaluator="quality", slices={"route": "/support"}, statuses=None),
            "errors only": await ids(statuses=["judge_error"]),
        }

    assert cases == {
        "all evaluated": ["quality-000001", "quality-000002", "quality-000003", "tone-000005"],
        "evaluator": ["quality-000001", "quality-000002", "quality-000003"],
        "since": ["quality-000002", "quality-000003"],
        "until": ["quality-000001", "quality-000002"],
        "one slice": ["quality-000001", "quality-000003", "tone-000005"],
        "two slices": [],
        "every status": ["quality-000001", "quality-000003", "quality-000004"],
        "errors only": ["quality-000004"],
    }


@backends
async def test_results_rebuild_the_judgment(backend: str, tmp_path: Path) -> None:
    """``results`` gives back each stored evaluation as the judge made it (scores in order, provenance),
    with zero usage, and leaves out ids it does not have; ``lookup`` only returns recent successes."""
    scores = [Score("rubric.a", 4, explanation="ok", low=1, high=5), Score("rubric", 0.75, label="pass", low=0, high=1)]
    clock = FakeClock(wall_ns=NOW_NS - int(1000 * 1e9))  # time_ns() == NOW_NS
    async with open_store(backend, tmp_path, Settings(clock=clock)) as store:
        await store.insert(
            [
                record(1, evaluator="rubric", scores=scores),
                record(2, evaluator="rubric", status=EvaluationStatus.TIMEOUT),
                record(3, evaluator="rubric", scores=scores, time_ns=NOW_NS - int(7200 * 1e9)),
            ]
        )
        found = await store.results(["rubric-000001", "rubric-000002", "missing"])
        lookups = [await store.lookup(f"rubric-00000{n}", max_age=3600) for n in (1, 2, 3)]

    assert set(found) == {"rubric-000001", "rubric-000002"}
    first = found["rubric-000001"]
    assert first.status is EvaluationStatus.EVALUATED
    assert [(s.key, s.value, s.label) for s in first.scores] == [("rubric.a", 4, None), ("rubric", 0.75, "pass")]
    assert (first.judge_model, first.config_hash, first.evaluator_type) == ("openai/fake-judge", "c0ffee", "score")
    assert first.usage.cost_usd is None and first.usage.input_tokens == 0
    assert found["rubric-000002"].status is EvaluationStatus.TIMEOUT
    assert [r is not None for r in lookups] == [True, False, False]  # evaluated and recent only


@backends
async def test_retention_deletes_what_is_older_than_the_window(backend: str, tmp_path: Path) -> None:
    """``tick()`` deletes rows older than store.retention (by the injected clock), slices included."""
    day = 86400 * 10**9
    clock = FakeClock(wall_ns=NOW_NS - int(1000 * 1e9))
    async with open_store(backend, tmp_path, Settings(clock=clock), retention="168h") as store:
        await store.insert([record(1, time_ns=NOW_NS - 8 * day), record(2, time_ns=NOW_NS - 6 * day), record(3)])
        deleted = await store.tick()
        kept = [r.evaluation_id for r in await store.rows()]
        slices = await store.slice_values()
        clock.advance(2 * 86400)
        deleted_later = await store.tick()

    assert (deleted, kept, deleted_later) == (1, ["quality-000002", "quality-000003"], 1)
    assert slices == {"model": ["gpt-4o-mini"], "route": ["/support"]}


@backends
async def test_sink_writes_in_batches_and_counts_what_does_not_fit(backend: str, tmp_path: Path) -> None:
    """``record`` never blocks: past store.queue_size new evaluations are dropped and counted; what was
    buffered is written by the sink's task, and shutdown writes the rest."""
    settings = Settings()
    async with open_store(backend, tmp_path, settings, queue_size=5) as store:
        sink = StoreSink(store, settings, batch_size=2)
        await sink.start()
        sink.record([record(n) for n in range(7)])  # before the task runs: 5 fit
        await sink.flush()
        sink.record([record(n) for n in range(7, 9)])
        await sink.shutdown(settings.clock.monotonic() + 5)
        sink.record([record(99)])  # after shutdown: counted, not written
        stored = await store.rows()

    assert len(stored) == 7
    assert settings.telemetry.value("otel_judge.store.dropped", reason="queue_full") == 2
    assert settings.telemetry.value("otel_judge.store.dropped", reason="shutdown") == 1
    assert settings.telemetry.value("otel_judge.store.rows_written") == 7


@backends
async def test_judge_pool_reuses_a_stored_judgment_after_a_restart(backend: str, tmp_path: Path) -> None:
    """A span re-delivered after a restart (empty in-memory cache) gets the judgment the store holds
    for its evaluation id: the judge is not called again and the span carries the stored score."""
    span = genai_span("Paris.")
    async with store_config(backend, tmp_path) as store_cfg, SpanSink() as sink, FakeJudge(lambda r: "12") as judge:
        config = pipeline_config(sink, judge, store=store_cfg.model_dump())
        pipeline = Pipeline(config, Settings())
        eid = evaluation_id(span.trace_id, span.span_id, pipeline.evaluators[0])
        await pipeline.start(tick_interval=0.05)
        try:
            assert pipeline.store is not None
            await pipeline.store.insert([record(7, value=93.0, evaluation_id=eid)])
            client = RawClient(pipeline.grpc_port or 0)
            await client.traces(request(span))
            received = await sink.wait_for_spans(1)
            await client.close()
        finally:
            await pipeline.shutdown(5)

    assert received[0].attributes[semconv.score_value_key("quality")] == 93.0
    assert judge.requests == []
    assert pipeline.settings.telemetry.value("otel_judge.judge.cache.hits", kind="store") == 1


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///quality.db", "sqlite+aiosqlite:///quality.db"),
        ("sqlite:////var/lib/otel-judge/q.db", "sqlite+aiosqlite:////var/lib/otel-judge/q.db"),
        ("postgresql://u:secret@db:5432/q", "postgresql+asyncpg://u:***@db:5432/q"),
        ("postgres://u@db/q", "postgresql+asyncpg://u@db/q"),
        ("postgresql+asyncpg://u@db/q", "postgresql+asyncpg://u@db/q"),
    ],
)
def test_store_urls_are_translated_to_the_async_drivers(url: str, expected: str) -> None:
    """``sqlite:///`` and ``postgresql://`` URLs get their async driver; passwords never show."""
    assert engine_url(url).render_as_string(hide_password=True) == expected


def test_a_bad_store_url_is_a_config_error() -> None:
    """An unsupported backend names store.url."""
    with pytest.raises(ConfigError, match=r"store\.url"):
        engine_url("mysql://u@db/q")


@backends
async def test_an_unreachable_database_fails_the_start_without_the_password(backend: str, tmp_path: Path) -> None:
    """The start fails fast with the URL (password hidden) and the reason."""
    if backend == "sqlite":
        blocker = tmp_path / "file"
        blocker.write_text("not a directory")
        url = f"sqlite:///{blocker}/sub/quality.db"  # its parent cannot be created
    else:
        url = "postgresql://postgres:hunter2@127.0.0.1:1/test"
    store = QualityStore(StoreConfig(url=url), Settings())
    with pytest.raises(OSError) as raised:
        await store.start(retention_task=False)
    await store.shutdown(0)

    assert "hunter2" not in str(raised.value)
    assert ("127.0.0.1:1" in str(raised.value)) if backend == "postgresql" else ("file" in str(raised.value))


async def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    """Readers never block the writer: the SQLite file is in WAL mode once the store has started."""
    async with open_store("sqlite", tmp_path) as store:
        path = Path(str(store.url.database))
    with sqlite3.connect(path) as conn:
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


class _Signal(logging.Handler):
    """Sets an event when a record containing ``text`` is logged."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
        self.seen = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.seen.set()


async def test_sink_retries_while_the_database_is_away(tmp_path: Path) -> None:
    """A write that fails because the database is unusable is retried (with backoff) until it works;
    nothing is lost and the failure is counted."""
    logger = logging.getLogger("tests.store.sink")
    signal = _Signal("store write failed (retrying")
    logger.addHandler(signal)
    settings = Settings(logger=logger)
    try:
        async with open_store("sqlite", tmp_path, settings) as store:
            path = Path(str(store.url.database))
            with sqlite3.connect(path) as conn:  # the table goes away, as in an outage
                conn.execute("ALTER TABLE otel_judge_evaluations RENAME TO away")
            sink = StoreSink(store, settings, initial_backoff=0.01, max_backoff=0.05)
            await sink.start()
            sink.record([record(1), record(2)])
            await asyncio.wait_for(signal.seen.wait(), 10)
            with sqlite3.connect(path) as conn:
                conn.execute("ALTER TABLE away RENAME TO otel_judge_evaluations")
            await asyncio.wait_for(sink.flush(), 10)
            await sink.shutdown(settings.clock.monotonic() + 1)
            stored = await store.rows()
    finally:
        logger.removeHandler(signal)

    assert [r.evaluation_id for r in stored] == ["quality-000001", "quality-000002"]
    assert settings.telemetry.value("otel_judge.store.errors", operation="insert") >= 1
    assert settings.telemetry.value("otel_judge.store.dropped") == 0
