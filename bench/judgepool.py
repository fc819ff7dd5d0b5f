"""Judge pool CPU: otel-judge's judging path alone against a plain ``httpx.AsyncClient`` and a plain
``aiohttp.ClientSession`` (``bench/run.py --judge-pool``; method in bench/README.md).

One point = one client, one concurrency, one fake-judge latency, in a fresh worker process
(``python -m bench.judgepool --client otel-judge|httpx|aiohttp ...``):

* ``otel-judge``: the real judging code in-process: ``validate_config`` -> ``JudgeRouter`` (the fast
  path: a pooled aiohttp POST, ``judge.client: auto``) -> ``build_evaluator`` (a ``score``
  evaluator) -> ``JudgePool`` with ``max_concurrency`` workers; every judgment is submitted at once
  (unique evaluation ids) and its callback counts the statuses;
* ``otel-judge-litellm``: the same with ``judge.client: litellm`` (``litellm.acompletion``);
* ``httpx``: ``concurrency`` tasks POST the very request otel-judge sent (body captured by the fake
  judge) with one ``httpx.AsyncClient`` (as many connections as tasks) and parse the score;
* ``aiohttp``: the same with one ``aiohttp.ClientSession`` (litellm sends through aiohttp too: its
  default transport under the openai SDK's httpx client).

The worker first makes ``concurrency`` calls that are not measured (start-up, connections), prints
``measuring``, makes ``count`` calls and prints one JSON line: wall time, its own CPU time
(``time.process_time``: every thread of the process), statuses. Bounded: ``max_seconds`` per point.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import time
import urllib.request
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import PYTHON, busy_cpu_seconds, wait_quiet
from bench.procs import Child

__all__ = ["PoolPlan", "pool_report", "run_judge_pool"]

CLIENTS = ("otel-judge", "otel-judge-litellm", "httpx", "aiohttp")
WARMUP_SECONDS = 20.0  # the unmeasured calls before a point stop after this long


@dataclass(frozen=True)
class PoolPlan:
    latencies: tuple[float, ...] = (0.05, 0.5)
    concurrencies: tuple[int, ...] = (64, 256, 1024)
    calls: int = 2000  # per point; at least 3 x concurrency
    max_seconds: float = 60.0

    def count(self, concurrency: int) -> int:
        return max(self.calls, 3 * concurrency)


# --------------------------------------------------------------------------- worker (its own process)


@dataclass
class _Tally:
    statuses: Counter[str]
    done: int = 0


async def _measure(
    label: str, count: int, max_seconds: float, run: Callable[[int, _Tally], Awaitable[None]]
) -> dict[str, Any]:
    """``run(count, tally)`` under a deadline; wall and CPU time of this process."""
    tally = _Tally(Counter())
    print(f"measuring {label}", flush=True)
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        async with asyncio.timeout(max_seconds):
            await run(count, tally)
        finished = True
    except TimeoutError:
        finished = False
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "calls": tally.done,
        "requested": count,
        "finished": finished,
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "statuses": dict(tally.statuses),
    }


def _peak_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


async def otel_judge_point(
    port: int, concurrency: int, count: int, max_seconds: float, client: str = "auto"
) -> dict[str, Any]:
    # Never fetch litellm's price list from the internet (otel-judge sets this too, at its import).
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    from otel_judge.component import Settings
    from otel_judge.config import validate_config
    from otel_judge.evaluators import build_evaluator
    from otel_judge.judge import JudgeRouter
    from otel_judge.model import Exchange, Message
    from otel_judge.pool import JudgePool

    config = validate_config(
        {
            "exporters": {"debug": {}},
            "judge": {
                "model": "openai/fake-judge",
                "api_base": f"http://127.0.0.1:{port}/v1",
                "api_key": "sk-bench",
                "max_concurrency": concurrency,
                "queue_size": 100_000,
                "timeout": "30s",
                "retry_on_failure": {"enabled": False},
                "client": client,
            },
            "evaluators": [{"name": "quality", "type": "score"}],
        }
    )
    settings = Settings()
    judge = JudgeRouter(config.judge, settings)
    await judge.start()
    await judge.ready()
    evaluator = build_evaluator(config.evaluators[0], judge)
    pool = JudgePool(max_concurrency=concurrency, queue_size=100_000, timeout=60, settings=settings)
    await pool.start()
    exchange = Exchange(format="bench", messages=[Message("user", "q")], completion="a")
    batch = 0

    async def run(n: int, tally: _Tally) -> None:
        nonlocal batch
        batch += 1
        all_done = asyncio.Event()

        def on_done(result: Any) -> None:
            tally.statuses[str(result.status.value)] += 1
            tally.done += 1
            if tally.done == n:
                all_done.set()

        for i in range(n):
            if not pool.submit(f"bench-{batch}-{i}", evaluator, exchange, on_done):
                tally.statuses["not_submitted"] += 1
                tally.done += 1
        if tally.done < n:
            await all_done.wait()

    await _measure("warm-up", concurrency, min(max_seconds, WARMUP_SECONDS), run)  # not reported
    result = await _measure("otel-judge" if client == "auto" else "otel-judge-litellm", count, max_seconds, run)
    await pool.shutdown(time.monotonic() + 1.0)
    await judge.shutdown(time.monotonic() + 1.0)
    return result


async def _plain_point(
    label: str, concurrency: int, count: int, max_seconds: float, post: Callable[[], Awaitable[str]]
) -> dict[str, Any]:
    """``concurrency`` tasks take calls from a shared count (as the pool's workers do); each call is
    ``post()``, which returns the reply's content; a score that parses counts as evaluated."""

    async def run(n: int, tally: _Tally) -> None:
        remaining = n

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                try:
                    float(await post())
                    tally.statuses["evaluated"] += 1
                except Exception as exc:
                    tally.statuses[type(exc).__name__] += 1
                tally.done += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))

    await _measure("warm-up", concurrency, min(max_seconds, WARMUP_SECONDS), run)
    return await _measure(label, count, max_seconds, run)


_HEADERS = {"content-type": "application/json", "authorization": "Bearer sk-bench"}


async def httpx_point(
    port: int, concurrency: int, count: int, max_seconds: float, request: dict[str, Any]
) -> dict[str, Any]:
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    url = f"http://127.0.0.1:{port}{request['path']}"
    body = request["body"].encode()
    async with httpx.AsyncClient(limits=limits, timeout=30.0, trust_env=False) as client:

        async def post() -> str:
            response = await client.post(url, content=body, headers=_HEADERS)
            response.raise_for_status()
            return str(response.json()["choices"][0]["message"]["content"])

        return await _plain_point("httpx", concurrency, count, max_seconds, post)


async def aiohttp_point(
    port: int, concurrency: int, count: int, max_seconds: float, request: dict[str, Any]
) -> dict[str, Any]:
    import aiohttp

    url = f"http://127.0.0.1:{port}{request['path']}"
    body = request["body"].encode()
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=30.0)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=False) as session:

        async def post() -> str:
            async with session.post(url, data=body, headers=_HEADERS) as response:
                response.raise_for_status()
                data = await response.json()
            return str(data["choices"][0]["message"]["content"])

        return await _plain_point("aiohttp", concurrency, count, max_seconds, post)


def worker_main() -> None:
    parser = argparse.ArgumentParser(description="one point of the judge pool benchmark")
    parser.add_argument("--client", choices=CLIENTS, required=True)
    parser.add_argument("--port", type=int, required=True, help="the fake judge on 127.0.0.1")
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--max-seconds", type=float, default=60.0)
    parser.add_argument("--request", type=Path, help="httpx, aiohttp: JSON {path, body} of the request to send")
    args = parser.parse_args()
    if not 0 < args.max_seconds <= 120:
        parser.error("--max-seconds must be within (0, 120]")  # every load loop is bounded
    if args.client.startswith("otel-judge"):
        client = "litellm" if args.client == "otel-judge-litellm" else "auto"
        result = asyncio.run(otel_judge_point(args.port, args.concurrency, args.count, args.max_seconds, client))
    else:
        if args.request is None:
            parser.error(f"--client {args.client} needs --request")
        request = json.loads(args.request.read_text())
        point = httpx_point if args.client == "httpx" else aiohttp_point
        result = asyncio.run(point(args.port, args.concurrency, args.count, args.max_seconds, request))
    print(json.dumps(result | {"peak_rss_bytes": _peak_rss()}), flush=True)


# --------------------------------------------------------------------------- orchestration


def _get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=5.0) as response:
        data: dict[str, Any] = json.load(response)
    return data


def run_point(
    client: str, concurrency: int, plan: PoolPlan, *, judge: Child, judge_port: int, request: Path | None
) -> dict[str, Any]:
    argv = [PYTHON, "-m", "bench.judgepool", "--client", client, "--port", str(judge_port)]
    argv += ["--concurrency", str(concurrency), "--count", str(plan.count(concurrency))]
    argv += ["--max-seconds", str(plan.max_seconds)]
    if request is not None:
        argv += ["--request", str(request)]
    with Child(f"judge-pool-{client}", argv) as worker:
        worker.wait_line("measuring warm-up", timeout=120.0)
        worker.wait_line(f"measuring {client}", timeout=plan.max_seconds + 30.0)

        def cpu() -> dict[str, float]:
            return {"worker": worker.cpu_seconds(), "fake_judge": judge.cpu_seconds(), "machine": busy_cpu_seconds()}

        before, requests_before = cpu(), _get_json(f"http://127.0.0.1:{judge_port}/stats")["requests"]
        result: dict[str, Any] = json.loads(worker.wait_line("{", timeout=plan.max_seconds + 30.0))
        after, requests_after = cpu(), _get_json(f"http://127.0.0.1:{judge_port}/stats")["requests"]
        worker.wait_exit(30.0)
    return result | {
        "client": client,
        "concurrency": concurrency,
        "cpu_s_outside": {k: round(after[k] - before[k], 3) for k in after},
        "judge_requests": requests_after - requests_before,
    }


def run_judge_pool(plan: PoolPlan, workdir: Path, progress: Callable[[str], None]) -> list[dict[str, Any]]:
    points = [(lat, c, client) for lat in plan.latencies for c in plan.concurrencies for client in CLIENTS]
    results: list[dict[str, Any]] = []
    done = 0
    for latency in plan.latencies:
        with contextlib.ExitStack() as stack:
            argv = [PYTHON, "-m", "bench.fake_judge", "--latency", str(latency)]
            judge = stack.enter_context(Child("fake-judge", argv))
            judge_port = judge.ready_port()
            request: Path | None = None
            for concurrency in plan.concurrencies:
                for client in CLIENTS:  # interleaved, so drift hits both alike
                    done += 1
                    progress(f"[{done}/{len(points)}] {client} c{concurrency} {latency * 1e3:g}ms ... ")
                    if not client.startswith("otel-judge") and request is None:
                        # What otel-judge sent (the same on both judge paths), as the fake judge received it.
                        last = _get_json(f"http://127.0.0.1:{judge_port}/last")
                        request = workdir / "judge-request.json"
                        request.write_text(json.dumps({"path": last["path"], "body": last["body"]}))
                    wait_quiet()
                    result = run_point(client, concurrency, plan, judge=judge, judge_port=judge_port, request=request)
                    result["latency_s"] = latency
                    result["derived"] = _derive(result)
                    results.append(result)
                    progress(f"{result['derived']['calls_per_s']:,.0f} calls/s\n")
    return results


def _derive(result: dict[str, Any]) -> dict[str, Any]:
    calls, wall = result["calls"], result["wall_s"]
    outside = result["cpu_s_outside"]
    ours = outside["worker"] + outside["fake_judge"]
    return {
        "calls_per_s": calls / wall if wall else 0.0,
        "cpu_ms_per_call": result["cpu_s"] / calls * 1e3 if calls else None,
        "worker_cores": result["cpu_s"] / wall if wall else None,
        "fake_judge_cores": outside["fake_judge"] / wall if wall else None,
        "fake_judge_ms_per_call": outside["fake_judge"] / calls * 1e3 if calls else None,
        "foreign_cores": max(0.0, outside["machine"] - ours) / wall if wall else 0.0,
    }


def pool_report(results: list[dict[str, Any]]) -> str:
    cpu_ms: dict[tuple[float, int, str], float | None] = {
        (r["latency_s"], r["concurrency"], r["client"]): r["derived"]["cpu_ms_per_call"] for r in results
    }
    rows = []
    for r in results:
        d = r["derived"]
        ratios: list[float | None] = []
        for plain in ("httpx", "aiohttp"):
            base = cpu_ms.get((r["latency_s"], r["concurrency"], plain))
            ours = d["cpu_ms_per_call"]
            ratios.append(ours / base if r["client"] != plain and base and ours is not None else None)
        other = {k: v for k, v in r["statuses"].items() if k != "evaluated"}
        rows.append(
            [
                f"{r['latency_s'] * 1e3:g} ms",
                str(r["concurrency"]),
                r["client"],
                f"{r['calls']:,}" + ("" if r["finished"] else f" of {r['requested']:,} (time limit)"),
                f"{d['calls_per_s']:,.0f}",
                f"{d['cpu_ms_per_call']:.2f}" if d["cpu_ms_per_call"] is not None else "-",
                *("-" if ratio is None else f"{ratio:.2f}x" for ratio in ratios),
                f"{d['worker_cores']:.2f}",
                f"{d['fake_judge_ms_per_call']:.2f}" if d["fake_judge_ms_per_call"] is not None else "-",
                f"{r['peak_rss_bytes'] / 2**20:,.0f}",
                ", ".join(f"{k} {v}" for k, v in sorted(other.items())) or "-",
                f"{d['foreign_cores']:.2f}" + ("!" if d["foreign_cores"] > 0.2 else ""),
            ]
        )
    headers = [
        "judge latency", "concurrency", "client", "calls", "calls/s", "CPU ms/call", "vs httpx", "vs aiohttp", "cores",
        "fake judge ms/call", "peak RSS MiB", "not evaluated", "other",
    ]  # fmt: skip
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if i > 2 else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(row) for row in rows)])


if __name__ == "__main__":
    worker_main()
