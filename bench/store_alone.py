"""The persistent queue alone: ``python -m bench.store_alone --size 45000 --concurrency 16 --requests 2000``.

Writes ``requests`` requests of ``size`` random bytes through :class:`otel_judge.storage.PersistentQueue`
(``concurrency`` writes awaiting their commit at a time), releases each as soon as it is durable (so
it is deleted, as after a delivery), shuts down, and prints one JSON line: wall-clock requests/s,
process CPU µs per request (every thread: the event loop and the SQLite writer), writes per commit.
No network, no pipeline: the cost the store adds to each request, less disturbed by the rest of the
machine than a throughput number.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time

from otel_judge.component import Settings
from otel_judge.config import StorageConfig
from otel_judge.storage import PersistentQueue


async def measure(size: int, concurrency: int, requests: int, window: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="otel-judge-store-") as directory:
        settings = Settings()
        store = PersistentQueue(StorageConfig(directory=directory, group_commit_window=window), settings)
        await store.start()
        data = os.urandom(size)
        slots = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with slots:
                entry = await store.write("traces", data, i)
            entry.release()

        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(requests)))
        await store.shutdown(settings.clock.monotonic() + 30)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        commits = settings.telemetry.value("otel_judge.storage.commits")
    return {
        "size": size,
        "concurrency": concurrency,
        "requests": requests,
        "requests_per_s": requests / wall,
        "cpu_us_per_request": cpu / requests * 1e6,
        "writes_per_commit": requests / commits if commits else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--size", type=int, default=45_000, help="bytes per request")
    parser.add_argument("--concurrency", type=int, default=16, help="writes awaiting their commit at a time")
    parser.add_argument("--requests", type=int, default=2000, help="requests written (the bound of the run)")
    parser.add_argument("--window", default="2ms", help="storage.group_commit_window")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(measure(args.size, args.concurrency, args.requests, args.window))), flush=True)


if __name__ == "__main__":
    main()
