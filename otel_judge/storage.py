"""The persistent queue: export requests kept on disk until everything in them was accepted downstream.

Switched on by the top-level ``storage: {directory: PATH}`` key (:class:`StorageConfig`). Without it
otel-judge keeps what is in flight in memory only, and a crash loses it.

* :class:`PersistentQueue` is the store: one SQLite database (``queue.sqlite3`` in WAL mode,
  ``synchronous=FULL``) written by one writer thread. Writes are *group-committed*: whatever is
  pending when the writer starts a transaction (after waiting ``group_commit_window`` for more) is
  committed in that one transaction, so many requests share one fsync. A file lock makes a second
  otel-judge on the same directory fail at start-up.
* :class:`Entry` is one stored request, reference-counted by what carries its content through the
  pipeline: the request itself (``TraceBatch.tokens``), each span the judging stage holds out of it,
  each exporter queue item (merged items carry the union), one reference per exporter of a fan-out.
  When the count reaches zero, every span and log record of the request, judged or not, has been
  accepted (or permanently refused, and counted) downstream by every exporter, and the entry is
  deleted. What is not released by the end of a run stays on disk.
* :class:`PersistentIntake` is the pipeline stage in front of the judging stage: it refuses when
  the disk cap (``max_size_mib``) or the exporter queue is reached (``OverloadedError``, i.e.
  RESOURCE_EXHAUSTED / 429 with a retry hint), writes the request durably, and only then hands it
  on, so the receiver acknowledges nothing that is not on disk. On start, :meth:`PersistentIntake.replay`
  sends what a previous run left on disk through the pipeline again, before the receivers open
  (at-least-once: what had already gone out is sent again, counted in ``otel_judge.storage.replayed``).

Why SQLite, not a hand-written segment log, LMDB or RocksDB: see docs/delivery.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import queue
import sqlite3
import threading
import time
from collections.abc import AsyncGenerator, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal, Protocol

from otel_judge.component import Settings
from otel_judge.config import StorageConfig
from otel_judge.errors import MalformedError, OverloadedError, RequestTooLargeError, RetryableError
from otel_judge.logs import event
from otel_judge.otlp import LogsBatch, TraceBatch

__all__ = ["Entry", "PersistentIntake", "PersistentQueue", "StoredRequest", "acquire", "release"]

Signal = Literal["traces", "logs"]

DATABASE = "queue.sqlite3"
LOCK_FILE = "queue.lock"
APPLICATION_ID = 0x4F4A5151  # "OJQQ": marks the file as an otel-judge queue (PRAGMA application_id)
SCHEMA_VERSION = 1
MAX_GROUP = 2048  # operations in one transaction at most (bounds a commit's size and latency)
MAX_GROUP_BYTES = 8 * 1024 * 1024  # ...and about this many bytes written (the log holds a whole transaction)
# A delete (the request was delivered) waits this long for company: deletes need no prompt fsync of
# their own (lost, they cost a duplicate after a crash), so under light load they share commits.
DELETE_LINGER = 0.05
# New databases: 16 KiB pages chain a request's bytes in 4x fewer overflow pages than the default
# 4 KiB (about 40% less CPU for a 330 KB request) while wasting little space on a 45 KB one.
PAGE_SIZE = 16384
WAL_LIMIT = 16 * 1024 * 1024  # the log is checkpointed every 1000 pages (16 MiB) and cut back to this
REPLAY_CHUNK = 64  # stored requests read from disk at a time during replay
RETRY_AFTER = 1.0  # the hint senders get when the disk cap is reached
_CAPACITY_POLL = 0.02  # replay: how often to look whether the exporter queue has room again

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY,
    signal TEXT NOT NULL,
    received_ns INTEGER NOT NULL,
    data BLOB NOT NULL
)
"""


class Entry:
    """One stored export request, deleted from disk when its last reference is released.

    Used on the event loop only (no locking). Releasing more often than acquired is ignored."""

    __slots__ = ("_queue", "id", "refs", "size")

    def __init__(self, queue: PersistentQueue, entry_id: int, size: int) -> None:
        self._queue = queue
        self.id = entry_id
        self.size = size
        self.refs = 1

    def acquire(self, count: int = 1) -> None:
        self.refs += count

    def release(self) -> None:
        if self.refs <= 0:
            return
        self.refs -= 1
        if self.refs == 0:
            self._queue._forget(self)

    def __repr__(self) -> str:
        return f"Entry(id={self.id}, refs={self.refs}, size={self.size})"


def acquire(tokens: Sequence[Entry], count: int = 1) -> None:
    """Take ``count`` more references to each entry of ``tokens``."""
    for token in tokens:
        token.refs += count


def release(tokens: Iterable[Entry]) -> None:
    """Give up one reference to each entry of ``tokens`` (the content went downstream)."""
    for token in tokens:
        token.release()


@dataclass(frozen=True, slots=True)
class StoredRequest:
    """A request a previous run left on disk, read back for replay."""

    entry: Entry
    signal: Signal
    received_ns: int
    data: bytes


@dataclass(slots=True)
class _Put:
    entry_id: int
    signal: str
    received_ns: int
    data: bytes
    future: asyncio.Future[None]


_STOP = object()


class PersistentQueue:
    """The store of :class:`Entry`\\ s: a SQLite database in ``config.directory``, one writer thread.

    ``start()`` opens it (and fails, as :class:`OSError` naming the directory, when it cannot);
    :meth:`write` returns once the request is durable; :meth:`stored` reads back what an earlier
    run left; ``shutdown()`` commits pending deletes and closes. Sizes are the stored bytes (the
    database file itself keeps its high-water mark: SQLite reuses freed pages)."""

    def __init__(self, config: StorageConfig, settings: Settings) -> None:
        self._config = config
        self._settings = settings
        self._directory = Path(config.directory)
        self._max_bytes = config.max_size_mib * 1024 * 1024
        self._window = config.group_commit_window
        self._ops: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock: IO[bytes] | None = None
        self._next_id = 1
        self._replay_upto = 0  # entries with ids up to this one were left by an earlier run
        self._bytes = 0  # stored and pending bytes of live entries
        self._entries = 0
        self._left_entries = 0
        self._left_bytes = 0
        self._failing: str | None = None  # why the last commit failed, logged once per change
        self._refused = False  # a request was refused for space and nothing was freed since
        self._closed = asyncio.Event()

    @property
    def directory(self) -> Path:
        return self._directory

    @property
    def entries(self) -> int:
        """Live entries: on disk or being written."""
        return self._entries

    @property
    def size_bytes(self) -> int:
        return self._bytes

    @property
    def left_over(self) -> tuple[int, int]:
        """``(requests, bytes)`` an earlier run left on disk (known after ``start()``)."""
        return self._left_entries, self._left_bytes

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self._thread is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._closed.clear()
        conn = await asyncio.to_thread(self._open)
        self._thread = threading.Thread(target=self._write_loop, args=(conn,), name="otel-judge-storage", daemon=True)
        self._thread.start()
        self._publish()

    def _open(self) -> sqlite3.Connection:
        where = f"storage.directory {self._directory}"
        try:
            self._directory.mkdir(parents=True, exist_ok=True)
            lock = open(self._directory / LOCK_FILE, "a+b")  # noqa: SIM115 - held until shutdown
        except OSError as exc:
            raise OSError(f"{where}: cannot create or open: {exc.strerror or exc}") from None
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            raise OSError(f"{where} is in use by another otel-judge process (lock {LOCK_FILE})") from None
        try:
            conn = self._connect(self._directory / DATABASE, where)
        except BaseException:
            lock.close()
            raise
        self._lock = lock
        return conn

    def _connect(self, path: Path, where: str) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            if app_id != APPLICATION_ID and (app_id != 0 or tables):
                conn.close()
                raise OSError(f"{where}: {path.name} is not an otel-judge queue")
            if version > SCHEMA_VERSION:
                conn.close()
                raise OSError(f"{where}: {path.name} was written by a newer otel-judge (schema {version})")
            conn.execute(f"PRAGMA page_size={PAGE_SIZE}")  # no effect on an existing database
            # WAL: a commit appends to the log and fsyncs it once (synchronous=FULL); readers do not block it.
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute(f"PRAGMA journal_size_limit={WAL_LIMIT}")
            conn.execute(_SCHEMA)
            conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            count, size, last = conn.execute(
                "SELECT count(*), coalesce(sum(length(data)), 0), coalesce(max(id), 0) FROM entries"
            ).fetchone()
        except sqlite3.DatabaseError as exc:
            raise OSError(f"{where}: cannot open {path.name}: {exc}") from None
        self._left_entries, self._left_bytes = int(count), int(size)
        self._entries, self._bytes = int(count), int(size)
        self._replay_upto = int(last)
        self._next_id = int(last) + 1
        return conn

    async def shutdown(self, deadline: float) -> None:
        """Commit what is pending (deletes of what went out), close. What is still referenced stays on disk."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._ops.put(_STOP)
        remaining = max(0.0, deadline - self._settings.clock.monotonic())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(remaining, 1.0)):  # the last commit is one fsync
                await self._closed.wait()
        if self._lock is not None:
            self._lock.close()
            self._lock = None
        if self._entries:
            self._settings.logger.info(
                "storage: %d request(s) (%.1f MiB) stay in %s for the next start",
                self._entries,
                self._bytes / 2**20,
                self._directory,
                extra=event("storage.kept"),
            )

    # ------------------------------------------------------------------ writes

    def ensure_capacity(self, size: int = 0) -> None:
        """Raise :class:`OverloadedError` when the disk cap is reached (``RequestTooLargeError`` when
        a request of ``size`` bytes could never fit)."""
        if size > self._max_bytes:
            raise RequestTooLargeError(f"request of {size} bytes exceeds storage.max_size_mib")
        if self._bytes + size > self._max_bytes:
            if not self._refused:
                self._refused = True
                self._settings.logger.warning(
                    "storage: %s; receivers answer RESOURCE_EXHAUSTED / 429",
                    self._full_message(),
                    extra=event("storage.full"),
                )
            raise OverloadedError(self._full_message(), RETRY_AFTER)

    def _full_message(self) -> str:
        used = self._bytes / 2**20
        return f"persistent queue is full ({used:.1f} MiB of storage.max_size_mib {self._config.max_size_mib})"

    def ready(self) -> tuple[bool, str]:
        """``(ready, why)`` for readiness probes: not ready once a request was refused for space,
        until something was delivered and deleted."""
        if self._refused:
            return False, self._full_message()
        return True, f"persistent queue has room ({self._bytes / 2**20:.1f} MiB used)"

    async def write(self, signal: Signal, data: bytes, received_ns: int) -> Entry:
        """Store ``data``; returns once it is durable, with one reference (the caller's).

        Raises :class:`RetryableError` when the write failed (the sender should retry)."""
        if self._thread is None or self._loop is None:
            raise RetryableError("persistent queue is not open")
        entry = Entry(self, self._next_id, len(data))
        self._next_id += 1
        self._bytes += entry.size
        self._entries += 1
        future: asyncio.Future[None] = self._loop.create_future()
        self._ops.put(_Put(entry.id, signal, received_ns, data, future))
        try:
            await future
        except asyncio.CancelledError:
            entry.release()  # the sender got no answer and will retry: nothing to keep
            raise
        except RetryableError:
            entry.release()
            raise
        return entry

    def _forget(self, entry: Entry) -> None:
        """The last reference went: delete the entry (committed with the next group)."""
        self._bytes -= entry.size
        self._entries -= 1
        if self._refused:
            self._refused = False
            self._settings.logger.info("storage: persistent queue has room again", extra=event("storage.recovered"))
        if self._thread is not None:
            self._ops.put(entry.id)
        self._publish()

    def _publish(self) -> None:
        telemetry = self._settings.telemetry
        telemetry.set("otel_judge.storage.size", self._bytes)
        telemetry.set("otel_judge.storage.entries", self._entries)

    # ------------------------------------------------------------------ writer thread

    def _write_loop(self, conn: sqlite3.Connection) -> None:
        """Take what is pending (waiting ``group_commit_window`` after the first for more), commit it
        in one transaction, report back on the loop; until told to stop."""
        retry: list[int] = []  # deletes whose commit failed
        stopping = False
        try:
            while not stopping:
                group = self._take_group()
                puts = [op for op in group if isinstance(op, _Put)]
                deletes = retry + [op for op in group if isinstance(op, int)]
                stopping = any(op is _STOP for op in group)
                error = self._commit(conn, puts, deletes)
                retry = deletes if error is not None else []
                self._report(puts, len(deletes), error)
            if retry:
                self._commit(conn, [], retry)
        finally:
            # Stopped (or, through a bug, dead): writes still pending must fail, not wait forever.
            pending: list[_Put] = []
            while True:
                try:
                    op = self._ops.get_nowait()
                except queue.Empty:
                    break
                if isinstance(op, _Put):
                    pending.append(op)
            if pending:
                self._report(pending, 0, "the persistent queue is closed")
            with contextlib.suppress(sqlite3.Error):
                conn.close()
            loop = self._loop
            if loop is not None and not loop.is_closed():
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(self._closed.set)

    def _take_group(self) -> list[Any]:
        """The operations of the next transaction: the first pending one, those that join it while it
        waits (``group_commit_window`` for a write; ``DELETE_LINGER`` for a delete, cut short when a
        write joins), then those already pending; at most ``MAX_GROUP`` and about ``MAX_GROUP_BYTES``."""
        first = self._ops.get()
        group = [first]
        size = len(first.data) if isinstance(first, _Put) else 0
        until = time.monotonic() + (self._window if isinstance(first, _Put) else DELETE_LINGER)
        while first is not _STOP and len(group) < MAX_GROUP and size < MAX_GROUP_BYTES:
            left = until - time.monotonic()
            try:
                op = self._ops.get(timeout=left) if left > 0 else self._ops.get_nowait()
            except queue.Empty:
                break
            group.append(op)
            if op is _STOP:
                break
            if isinstance(op, _Put):
                size += len(op.data)
                until = min(until, time.monotonic() + self._window)
        return group

    @staticmethod
    def _commit(conn: sqlite3.Connection, puts: list[_Put], deletes: list[int]) -> str | None:
        if not puts and not deletes:
            return None
        try:
            conn.execute("BEGIN IMMEDIATE")
            if puts:
                conn.executemany(
                    "INSERT INTO entries (id, signal, received_ns, data) VALUES (?, ?, ?, ?)",
                    [(p.entry_id, p.signal, p.received_ns, p.data) for p in puts],
                )
            if deletes:
                conn.executemany("DELETE FROM entries WHERE id = ?", [(i,) for i in deletes])
            conn.execute("COMMIT")
        except Exception as exc:  # any failure must reach the waiting senders, not end the thread
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            return f"{type(exc).__name__}: {exc}"
        return None

    def _report(self, puts: list[_Put], deletes: int, error: str | None) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed under us: nobody waits any more
            loop.call_soon_threadsafe(self._committed, puts, deletes, error)

    def _committed(self, puts: list[_Put], deletes: int, error: str | None) -> None:
        """On the loop: wake the writers, count, log once per state change."""
        telemetry = self._settings.telemetry
        if puts or deletes:
            telemetry.add("otel_judge.storage.commits", outcome="error" if error else "ok")
        for put in puts:
            if put.future.done():
                continue
            if error is None:
                put.future.set_result(None)
            else:
                put.future.set_exception(RetryableError(f"persistent queue write failed: {error}", RETRY_AFTER))
        if puts and error is None:
            telemetry.add("otel_judge.storage.writes", len(puts))
        if error != self._failing:
            if error is not None:
                self._settings.logger.error(
                    "storage: writing to %s failed: %s; receivers answer UNAVAILABLE / 503",
                    self._directory,
                    error,
                    extra=event("storage.write_failed"),
                )
            else:
                self._settings.logger.warning(
                    "storage: writing to %s works again", self._directory, extra=event("storage.write_recovered")
                )
            self._failing = error

    # ------------------------------------------------------------------ reads

    async def stored(self) -> AsyncGenerator[StoredRequest, None]:
        """What an earlier run left on disk, oldest first, read a chunk at a time; each with one
        reference (the reader's)."""
        if self._replay_upto == 0:
            return
        conn = await asyncio.to_thread(sqlite3.connect, self._directory / DATABASE, check_same_thread=False)
        try:
            after = 0
            while True:
                rows = await asyncio.to_thread(_read_chunk, conn, after, self._replay_upto)
                if not rows:
                    return
                for entry_id, signal, received_ns, data in rows:
                    after = entry_id
                    yield StoredRequest(Entry(self, entry_id, len(data)), signal, received_ns, data)
        finally:
            await asyncio.to_thread(conn.close)


def _read_chunk(conn: sqlite3.Connection, after: int, upto: int) -> list[tuple[int, Signal, int, bytes]]:
    rows = conn.execute(
        "SELECT id, signal, received_ns, data FROM entries WHERE id > ? AND id <= ? ORDER BY id LIMIT ?",
        (after, upto, REPLAY_CHUNK),
    ).fetchall()
    return [(int(i), s, int(t), bytes(d)) for i, s, t, d in rows]


class _Next(Protocol):
    async def consume_traces(self, batch: TraceBatch) -> None: ...

    async def consume_logs(self, batch: LogsBatch) -> None: ...


class PersistentIntake:
    """The stage between the receivers and the judging stage in persistent mode: refuse when full,
    write durably, then hand on (so the receiver answers only after the request is on disk)."""

    def __init__(
        self, next_consumer: _Next, storage: PersistentQueue, capacity: Callable[[], None], settings: Settings
    ) -> None:
        self._next = next_consumer
        self._storage = storage
        self._capacity = capacity  # the exporter's ensure_capacity: refuse before writing, not after
        self._settings = settings

    async def consume_traces(self, batch: TraceBatch) -> None:
        await self._consume(batch, "traces", self._next.consume_traces)

    async def consume_logs(self, batch: LogsBatch) -> None:
        await self._consume(batch, "logs", self._next.consume_logs)

    async def _consume(self, batch: Any, signal: Signal, forward: Callable[[Any], Any]) -> None:
        data = batch.to_bytes()
        self._storage.ensure_capacity(len(data))
        self._capacity()
        entry = await self._storage.write(signal, data, self._settings.clock.time_ns())
        batch.tokens = (entry,)
        try:
            await forward(batch)
        except OverloadedError:
            # Stages refuse before taking anything: the sender retries, so the stored copy must go.
            entry.release()
            raise

    async def replay(self) -> int:
        """Send what an earlier run left on disk through the pipeline, oldest first, each request
        once the exporter queue has room. Returns the requests replayed."""
        count, size = self._storage.left_over
        if not count:
            return 0
        log = self._settings.logger
        log.warning(
            "storage: replaying %d request(s) (%.1f MiB) left in %s by the last run; what had already "
            "been exported is sent again (counted in otel_judge.storage.replayed)",
            count,
            size / 2**20,
            self._storage.directory,
            extra=event("storage.replaying"),
        )
        telemetry = self._settings.telemetry
        replayed = 0
        async with contextlib.aclosing(self._storage.stored()) as stored_requests:
            async for stored in stored_requests:
                kind = TraceBatch if stored.signal == "traces" else LogsBatch
                try:
                    batch = kind.from_bytes(stored.data)
                except MalformedError as exc:  # cannot happen for what we wrote; never block the start on it
                    log.error("storage: dropping unreadable stored request %d: %s", stored.entry.id, exc)
                    stored.entry.release()
                    continue
                batch.tokens = (stored.entry,)
                items = batch.span_count if stored.signal == "traces" else batch.record_count
                forward = self._next.consume_traces if stored.signal == "traces" else self._next.consume_logs
                while True:
                    try:
                        self._capacity()
                        await forward(batch)
                        break
                    except OverloadedError:  # the exporter queue is full (downstream slow or down): wait for room
                        await asyncio.sleep(_CAPACITY_POLL)
                telemetry.add("otel_judge.storage.replayed", items, signal=stored.signal)
                replayed += 1
        log.info("storage: replayed %d request(s)", replayed, extra=event("storage.replayed"))
        return replayed
