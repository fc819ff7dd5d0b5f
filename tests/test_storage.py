"""The persistent queue (``storage:``): durable before acknowledged, deleted once delivered, replayed after."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from google.rpc import error_details_pb2

from otel_judge import semconv
from otel_judge.component import Settings
from otel_judge.config import StorageConfig
from otel_judge.errors import OverloadedError, RequestTooLargeError
from otel_judge.storage import DATABASE, PersistentQueue, acquire
from otel_judge.testing import FakeJudge, HttpSpanSink, SpanSink

from .conftest import pipeline_config, running
from .otlp_builders import RawClient, genai_span, request, span
from .test_pipeline import Gate

STATUS = semconv.OTEL_JUDGE_EVALUATION_STATUS


def rows(directory: Path) -> list[int]:
    """The ids of the requests on disk, read through a connection of its own (what a crash would leave)."""
    with sqlite3.connect(directory / DATABASE) as conn:
        return [row[0] for row in conn.execute("SELECT id FROM entries ORDER BY id")]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def storage_config(directory: Path, **overrides: Any) -> StorageConfig:
    return StorageConfig.model_validate({"directory": str(directory), **overrides})


def failing_sink_config(sink: SpanSink, directory: Path, **storage: Any) -> Any:
    """Exporting to ``sink`` with short retries, one sender (FIFO), the queue in ``directory``."""
    return pipeline_config(
        sink,
        None,
        exporters={
            "otlp": {
                "endpoint": sink.endpoint,
                "tls": {"insecure": True},
                "retry_on_failure": {"initial_interval": "10ms", "max_interval": "20ms", "max_elapsed_time": "0s"},
                "sending_queue": {"num_consumers": 1},
            }
        },
        storage={"directory": str(directory), **storage},
    )


# --------------------------------------------------------------------------- the store itself


async def test_a_write_is_on_disk_when_it_returns_and_leaves_with_its_last_reference(tmp_path: Path) -> None:
    """``write`` returns once another connection sees the row; an entry with three references is
    deleted at the third release; one never released stays on disk."""
    store = PersistentQueue(storage_config(tmp_path), Settings())
    await store.start()
    first = await store.write("traces", b"one", 1)
    on_disk_after_write = rows(tmp_path)
    second = await store.write("logs", b"two", 2)
    acquire((first,), 2)
    first.release()
    first.release()
    still_referenced = store.entries
    first.release()
    first.release()  # one release too many is ignored
    await store.shutdown(store._settings.clock.monotonic() + 5)

    assert on_disk_after_write == [first.id]
    assert still_referenced == 2
    assert rows(tmp_path) == [second.id]
    assert store.entries == 1 and store.size_bytes == 3


async def test_concurrent_writes_share_one_fsync(tmp_path: Path) -> None:
    """Group commit: 400 writes arriving together are committed in a handful of transactions."""
    settings = Settings()
    store = PersistentQueue(storage_config(tmp_path, group_commit_window="5ms"), settings)
    await store.start()
    entries = await asyncio.gather(*(store.write("traces", b"x" * 100, i) for i in range(400)))
    on_disk = len(rows(tmp_path))
    await store.shutdown(settings.clock.monotonic() + 5)

    commits = settings.telemetry.value("otel_judge.storage.commits", outcome="ok")
    assert on_disk == 400
    assert len({e.id for e in entries}) == 400
    assert settings.telemetry.value("otel_judge.storage.writes") == 400
    assert commits <= 40, f"{commits:g} commits for 400 writes: no group commit"


async def test_a_restart_reads_back_what_was_left_oldest_first(tmp_path: Path) -> None:
    """What a run did not release is read back by the next one, in order; new writes are not part of it."""
    first_run = PersistentQueue(storage_config(tmp_path), Settings())
    await first_run.start()
    kept = [await first_run.write("traces", f"r{i}".encode(), 100 + i) for i in range(3)]
    kept[1].release()  # delivered
    await first_run.shutdown(first_run._settings.clock.monotonic() + 5)

    second_run = PersistentQueue(storage_config(tmp_path), Settings())
    await second_run.start()
    left = second_run.left_over
    newer = await second_run.write("logs", b"new", 200)
    stored = [s async for s in second_run.stored()]
    for s in stored:
        s.entry.release()
    await second_run.shutdown(second_run._settings.clock.monotonic() + 5)

    assert left == (2, 4)
    assert [(s.entry.id, s.signal, s.received_ns, s.data) for s in stored] == [
        (kept[0].id, "traces", 100, b"r0"),
        (kept[2].id, "traces", 102, b"r2"),
    ]
    assert newer.id > kept[2].id
    assert rows(tmp_path) == [newer.id]


@pytest.mark.parametrize(
    ("stored", "size", "error"),
    [
        pytest.param(0, 600_000, None, id="room"),
        pytest.param(600_000, 600_000, OverloadedError, id="full"),
        pytest.param(0, 2 * 1024 * 1024, RequestTooLargeError, id="never-fits"),
    ],
)
async def test_the_disk_cap(tmp_path: Path, stored: int, size: int, error: type[Exception] | None) -> None:
    """``max_size_mib`` bounds the stored bytes: past it, overload (with a retry hint); a request larger
    than the whole cap is too large, not a reason to retry."""
    store = PersistentQueue(storage_config(tmp_path, max_size_mib=1), Settings())
    await store.start()
    if stored:
        await store.write("traces", b"x" * stored, 0)
    try:
        if error is None:
            store.ensure_capacity(size)
        else:
            with pytest.raises(error) as info:
                store.ensure_capacity(size)
            if error is OverloadedError:
                assert isinstance(info.value, OverloadedError) and info.value.retry_after > 0
                assert "storage.max_size_mib" in str(info.value)
    finally:
        await store.shutdown(store._settings.clock.monotonic() + 5)


@pytest.mark.parametrize("case", ["in use", "not a queue"])
async def test_a_directory_in_use_or_holding_another_file_fails_the_start(tmp_path: Path, case: str) -> None:
    """Two otel-judges on one directory would replay each other's requests: the second fails at start,
    naming the directory; so does a foreign file where the queue should be."""
    first = PersistentQueue(storage_config(tmp_path), Settings())
    if case == "in use":
        await first.start()
    else:
        with sqlite3.connect(tmp_path / DATABASE) as conn:
            conn.execute("CREATE TABLE other (x)")
    try:
        with pytest.raises(OSError, match=f"storage.directory {tmp_path}.*({case.replace('a ', 'an otel-judge ')})"):
            await PersistentQueue(storage_config(tmp_path), Settings()).start()
    finally:
        await first.shutdown(first._settings.clock.monotonic() + 5)


# --------------------------------------------------------------------------- in the pipeline


async def send(transport: str, port: int, payload: Any, session: aiohttp.ClientSession) -> tuple[str, float | None]:
    """Send over gRPC or HTTP; ``("ok", None)`` or the refusal's code and retry hint in seconds."""
    if transport == "grpc":
        client = RawClient(port)
        try:
            await client.traces(payload)
            return "ok", None
        except grpc.aio.AioRpcError as exc:
            hint = dict(exc.trailing_metadata() or ()).get("google.rpc.retryinfo-bin")
            info = error_details_pb2.RetryInfo.FromString(hint) if isinstance(hint, bytes) else None
            return exc.code().name, info.retry_delay.seconds if info else None
        finally:
            await client.close()
    url = f"http://127.0.0.1:{port}/v1/traces"
    headers = {"Content-Type": "application/x-protobuf"}
    async with session.post(url, data=payload.SerializeToString(), headers=headers) as response:
        retry_after = response.headers.get("Retry-After")
        return ("ok" if response.status == 200 else str(response.status)), float(retry_after) if retry_after else None


HTTP_RECEIVER = {"otlp": {"protocols": {"http": {"endpoint": "127.0.0.1:0"}}}}


@pytest.mark.parametrize("transport", ["grpc", "http"])
async def test_a_request_is_on_disk_before_it_is_acknowledged_and_gone_once_delivered(
    sink: SpanSink, tmp_path: Path, session: aiohttp.ClientSession, transport: str
) -> None:
    """Backend down: the acknowledged request is already on disk; backend back: delivered, then deleted."""
    sink.fail_next(100_000)
    config = failing_sink_config(sink, tmp_path)
    if transport == "http":
        config = config.model_copy(update={"receivers": type(config.receivers).model_validate(HTTP_RECEIVER)})
    async with running(config) as pipeline:
        port = pipeline.grpc_port if transport == "grpc" else pipeline.http_port
        assert port is not None
        answer = await send(transport, port, request(span("a"), span("b")), session)
        on_disk_when_acknowledged = rows(tmp_path)
        sink.stop_failing()
        received = await sink.wait_for_spans(2)

    assert answer == ("ok", None)
    assert len(on_disk_when_acknowledged) == 1
    assert sorted(r.span.name for r in received) == ["a", "b"]
    assert rows(tmp_path) == []


@pytest.mark.parametrize(("transport", "refusal"), [("grpc", "RESOURCE_EXHAUSTED"), ("http", "429")])
async def test_a_full_disk_pushes_back_with_a_retry_hint(
    sink: SpanSink, tmp_path: Path, session: aiohttp.ClientSession, transport: str, refusal: str
) -> None:
    """``max_size_mib`` reached while the backend is down: RESOURCE_EXHAUSTED / 429 with a retry hint,
    nothing accepted and dropped; what was accepted is delivered once the backend is back."""
    sink.fail_next(100_000)
    config = failing_sink_config(sink, tmp_path, max_size_mib=1)
    if transport == "http":
        config = config.model_copy(update={"receivers": type(config.receivers).model_validate(HTTP_RECEIVER)})
    blob = "x" * 100_000
    answers: list[tuple[str, float | None]] = []
    async with running(config) as pipeline:
        port = pipeline.grpc_port if transport == "grpc" else pipeline.http_port
        assert port is not None
        for i in range(14):  # bounded: about 300 KB each, 1 MiB on disk at most
            answers.append(
                await send(transport, port, request(*(span(f"r{i}-{j}", {"b": blob}) for j in range(3))), session)
            )
        readiness = pipeline.readiness()
        accepted = sum(1 for code, _ in answers if code == "ok")
        sink.stop_failing()
        received = await sink.wait_for_spans(3 * accepted)

    assert 1 <= accepted <= 4
    assert answers[:accepted] == [("ok", None)] * accepted
    assert set(answers[accepted:]) == {(refusal, 1)}
    assert not readiness.ready and "persistent queue is full" in readiness.reason
    assert len(received) == 3 * accepted
    assert rows(tmp_path) == []


async def test_a_request_stays_on_disk_while_a_span_of_it_is_judged(sink: SpanSink, tmp_path: Path) -> None:
    """The plain span goes out at once; the request stays stored until its judged span went out too."""
    gate = Gate()
    async with FakeJudge(gate) as judge:
        config = pipeline_config(sink, judge, storage={"directory": str(tmp_path)})
        async with running(config) as pipeline:
            client = RawClient(pipeline.grpc_port)
            await client.traces(request(genai_span("A"), span("db")))
            await gate.wait_for_calls(1)
            await sink.wait_for_spans(1)
            while_judging = rows(tmp_path)
            gate.opened.set()
            received = await sink.wait_for_spans(2)
            await client.close()

    assert len(while_judging) == 1
    assert {r.span.name: r.attributes.get(STATUS) for r in received} == {"db": None, "chat gpt-4o-mini": "evaluated"}
    assert rows(tmp_path) == []


async def test_with_two_exporters_a_request_leaves_the_disk_when_both_took_it(sink: SpanSink, tmp_path: Path) -> None:
    """Fan-out: the gRPC backend has the spans, the HTTP one is down: still on disk until it has them too."""
    async with HttpSpanSink() as http_sink:
        http_sink.fail_next(100_000)
        exporters = {
            "otlp": {"endpoint": sink.endpoint, "tls": {"insecure": True}},
            "otlphttp": {
                "endpoint": http_sink.endpoint,
                "retry_on_failure": {"initial_interval": "10ms", "max_interval": "20ms"},
            },
        }
        config = pipeline_config(sink, None, exporters=exporters, storage={"directory": str(tmp_path)})
        async with running(config) as pipeline:
            client = RawClient(pipeline.grpc_port)
            await client.traces(request(span("a")))
            await sink.wait_for_spans(1)
            await http_sink.wait_for(lambda: len(http_sink.attempts) >= 2)  # it was tried and failed
            one_exporter_done = rows(tmp_path)
            http_sink.stop_failing()
            await http_sink.wait_for_spans(1)
            await client.close()

    assert len(one_exporter_done) == 1
    assert rows(tmp_path) == []


async def test_what_shutdown_could_not_export_is_replayed_first_at_the_next_start(
    sink: SpanSink, tmp_path: Path
) -> None:
    """Backend down through a shutdown: the requests stay on disk (counted as kept); the next start sends
    them before it takes new requests, and counts them as replayed."""
    sink.fail_next(100_000)
    first = Settings()
    async with running(failing_sink_config(sink, tmp_path), first) as pipeline:
        client = RawClient(pipeline.grpc_port)
        for i in range(3):
            await client.traces(request(span(f"old-{i}-a"), span(f"old-{i}-b")))
        await client.close()
        await pipeline.shutdown(grace=0.2)
    kept_on_disk = rows(tmp_path)
    sink.stop_failing()

    second = Settings()
    async with running(failing_sink_config(sink, tmp_path), second) as pipeline:
        client = RawClient(pipeline.grpc_port)
        await client.traces(request(span("new")))
        received = await sink.wait_for_spans(7)
        await client.close()

    assert len(kept_on_disk) == 3
    assert first.telemetry.value("otel_judge.storage.kept") == 6
    assert second.telemetry.value("otel_judge.storage.replayed", signal="traces") == 6
    assert [r.span.name for r in received][-1] == "new"
    assert sorted(r.span.name for r in received[:-1]) == sorted(f"old-{i}-{x}" for i in range(3) for x in "ab")
    assert rows(tmp_path) == []


@pytest.mark.parametrize("local", ["file", "debug"])
async def test_local_exporters_release_what_they_wrote(sink: SpanSink, tmp_path: Path, local: str) -> None:
    """Beside the OTLP exporter, a file or console exporter: once both wrote the request, it leaves the disk."""
    queue_dir = tmp_path / "queue"
    exporters: dict[str, Any] = {"otlp": {"endpoint": sink.endpoint, "tls": {"insecure": True}}}
    exporters[local] = {"path": str(tmp_path / "out.jsonl")} if local == "file" else {"verbosity": "basic"}
    config = pipeline_config(sink, None, exporters=exporters, storage={"directory": str(queue_dir)})
    async with running(config) as pipeline:
        client = RawClient(pipeline.grpc_port)
        await client.traces(request(span("a"), span("b")))
        await sink.wait_for_spans(2)
        await client.close()

    assert rows(queue_dir) == []
