"""``bench/run.py --persistence``: what the persistent queue (``storage:``) costs and what an outage costs.

Three measurements; the last two in both delivery modes (``memory``: the default in-memory queue;
``persistent``: ``storage.directory`` set, every request committed to SQLite before it is answered):

* **store alone** (``store_alone.py``, its own process): requests of a 64- and a 512-span size
  through the persistent queue alone, written and deleted: CPU µs per request, requests/s;
* **throughput**: pass-through (0% sampling) spans/s at the sink with the load generator in a closed
  loop, the target's CPU µs per span, the round trip the sender sees, and, persistent, how many
  writes shared one commit (fsync);
* **outage**: the downstream is down (nothing listens on the exporter's port) for ``down`` seconds
  while the load generator offers a steady open-loop load; sampled every second: the target's RSS,
  the requests accepted and refused (RESOURCE_EXHAUSTED), the queue on disk; then the sink comes up
  on that port and the time until every accepted span arrived is measured (bounded).

The machine is shared (2 cores, other work running): each result carries the CPU the rest of the
machine used during its window (``foreign_cores``); CPU µs per span is less disturbed than spans/s.
"""

from __future__ import annotations

import contextlib
import json
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from prometheus_client.parser import text_string_to_metric_families

from bench.common import (
    PYTHON,
    busy_cpu_seconds,
    free_port,
    otel_judge_config,
    serve_otel_judge,
    sink_progress,
    sink_stats,
    sleep_until_ns,
)
from bench.procs import Child

__all__ = ["PersistencePlan", "persistence_report", "run_persistence"]

Mode = Literal["memory", "persistent"]
MODES: tuple[Mode, ...] = ("memory", "persistent")
DRAIN_LIMIT = 120.0  # seconds the outage measurement waits for the backlog to arrive, at most


@dataclass(frozen=True)
class PersistencePlan:
    batch: int = 64
    concurrency: int = 16  # closed loop: calls in flight
    warmup: float = 2.0
    measure: float = 8.0
    down: float = 60.0  # seconds the downstream is down
    down_rate: float = 40.0  # requests/s offered during the outage (open loop)
    queue_size: int = 1000  # exporters.otlp.sending_queue.queue_size (otel-judge's default)
    repeat: int = 1


def _config(
    port: int, sink_port: int, health_port: int, *, mode: Mode, workdir: Path, queue_size: int
) -> dict[str, Any]:
    data = otel_judge_config(port, sink_port, free_port(), 0.0)
    data["exporters"]["otlp"]["retry_on_failure"] = {
        "initial_interval": "100ms",
        "max_interval": "1s",
        "max_elapsed_time": "0s",  # retry for as long as the outage lasts
    }
    data["exporters"]["otlp"]["sending_queue"] = {"queue_size": queue_size}
    data["service"]["health"] = {"endpoint": f"127.0.0.1:{health_port}"}
    if mode == "persistent":
        directory = workdir / f"queue-{time.monotonic_ns()}"
        data["storage"] = {"directory": str(directory)}
    return data


def _metrics(health_port: int) -> dict[str, float]:
    """otel-judge's own counters and gauges (``/metrics``), by sample name, summed over labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{health_port}/metrics", timeout=5.0) as response:
        text = response.read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name] = out.get(sample.name, 0.0) + float(sample.value)
    return out


def _rss_bytes(child: Child) -> int:
    for line in Path(f"/proc/{child.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _disk_bytes(directory: str | None) -> int:
    if directory is None:
        return 0
    return sum(p.stat().st_size for p in Path(directory).glob("*") if p.is_file())


@contextlib.contextmanager
def _target(mode: Mode, sink_port: int, workdir: Path, queue_size: int) -> Iterator[tuple[Child, int, int, str | None]]:
    port, health = free_port(), free_port()
    data = _config(port, sink_port, health, mode=mode, workdir=workdir, queue_size=queue_size)
    path = workdir / f"{mode}-{port}.yaml"
    with serve_otel_judge(data, path) as child:
        yield child, port, health, data.get("storage", {}).get("directory")


def run_throughput(mode: Mode, plan: PersistencePlan, workdir: Path) -> dict[str, Any]:
    """Closed-loop pass-through: spans/s at the sink and the target's CPU per span in the window."""
    with contextlib.ExitStack() as stack:
        sink = stack.enter_context(Child("sink", [PYTHON, "-m", "bench.sink"]))
        sink_port = sink.ready_port()
        target, port, health, _ = stack.enter_context(_target(mode, sink_port, workdir, plan.queue_size))
        argv = [PYTHON, "-m", "bench.loadgen", "--target", str(port), "--batch", str(plan.batch)]
        argv += ["--warmup", str(plan.warmup), "--measure", str(plan.measure), "--cooldown", "0.5"]
        argv += ["--rate", "0", "--concurrency", str(plan.concurrency)]
        loadgen = stack.enter_context(Child("loadgen", argv))
        start_ns = int(loadgen.wait_line("start ").split()[1])
        window = (start_ns + int(plan.warmup * 1e9), start_ns + int((plan.warmup + plan.measure) * 1e9))
        sleep_until_ns(window[0])
        before = (target.cpu_seconds(), sink.cpu_seconds(), loadgen.cpu_seconds(), busy_cpu_seconds())
        metrics_before = _metrics(health)
        sleep_until_ns(window[1])
        after = (target.cpu_seconds(), sink.cpu_seconds(), loadgen.cpu_seconds(), busy_cpu_seconds())
        metrics_after = _metrics(health)
        load = json.loads(loadgen.wait_line("{", timeout=30.0))
        loadgen.wait_exit(10.0)
        received = sink_stats(sink_port, load["window_from_ns"], load["window_to_ns"])
        peak_rss = target.peak_rss_bytes()
        target.stop(grace=15.0)
    seconds = (window[1] - window[0]) / 1e9
    cpu = [a - b for a, b in zip(after, before, strict=True)]
    ours = cpu[0] + cpu[1] + cpu[2]
    spans = received["spans"]

    def delta(name: str) -> float:
        return metrics_after.get(name, 0.0) - metrics_before.get(name, 0.0)

    writes, commits = delta("otel_judge_storage_writes_total"), delta("otel_judge_storage_commits_total")
    return {
        "mode": mode,
        "window_s": seconds,
        "spans_per_s": spans / seconds,
        "cpu_us_per_span": cpu[0] / spans * 1e6 if spans else None,
        "target_cores": cpu[0] / seconds,
        "foreign_cores": max(0.0, cpu[3] - ours) / seconds,
        "round_trip_ms": load["round_trip_ms"],
        "calls": load["window_calls"],
        "writes_per_commit": writes / commits if commits else None,
        "commits_per_s": commits / seconds,
        "target_peak_rss_bytes": peak_rss,
    }


def run_outage(mode: Mode, plan: PersistencePlan, workdir: Path, progress: Callable[[str], None]) -> dict[str, Any]:
    """Downstream down for ``plan.down`` s under a steady load; then up: RSS, refusals, disk, drain time."""
    sink_port = free_port()  # nothing listens there until the outage ends
    with contextlib.ExitStack() as stack:
        target, port, health, directory = stack.enter_context(_target(mode, sink_port, workdir, plan.queue_size))
        rss_idle = _rss_bytes(target)
        argv = [PYTHON, "-m", "bench.loadgen", "--target", str(port), "--batch", str(plan.batch)]
        argv += ["--warmup", "0", "--measure", str(plan.down), "--cooldown", "0"]
        argv += ["--rate", str(plan.down_rate), "--concurrency", "64"]
        loadgen = stack.enter_context(Child("loadgen", argv))
        start_ns = int(loadgen.wait_line("start ").split()[1])
        cpu_before, busy_before = target.cpu_seconds(), busy_cpu_seconds()
        samples: list[dict[str, float]] = []
        for second in range(1, int(plan.down) + 1):  # bounded: one sample a second
            sleep_until_ns(start_ns + second * 1_000_000_000)
            samples.append(
                {"t": second, "rss_mib": _rss_bytes(target) / 2**20, "disk_mib": _disk_bytes(directory) / 2**20}
            )
            if second % 10 == 0:
                progress(f"{second}s ")
        cpu_down = target.cpu_seconds() - cpu_before
        busy_down = busy_cpu_seconds() - busy_before
        load = json.loads(loadgen.wait_line("{", timeout=30.0))
        loadgen.wait_exit(10.0)
        metrics_down = _metrics(health)
        accepted = int(load["calls"].get("ok", 0)) * plan.batch
        up_at = time.monotonic()
        sink = stack.enter_context(Child("sink", [PYTHON, "-m", "bench.sink", "--port", str(sink_port)]))
        sink.ready_port()
        delivered = 0
        drained_after: float | None = None
        while time.monotonic() - up_at < DRAIN_LIMIT:  # bounded wait for the backlog
            delivered = int(sink_progress(sink_port)["spans"])
            if delivered >= accepted:
                drained_after = time.monotonic() - up_at
                break
            time.sleep(0.2)
        peak_rss = target.peak_rss_bytes()
        disk_after = _disk_bytes(directory)
        target.stop(grace=15.0)
    return {
        "mode": mode,
        "down_s": plan.down,
        "offered_spans_per_s": plan.down_rate * plan.batch,
        "calls": load["calls"],
        "accepted_spans": accepted,
        "delivered_spans": delivered,
        "drained_after_s": drained_after,
        "rss_idle_mib": rss_idle / 2**20,
        "rss_peak_mib": peak_rss / 2**20,
        "rss_end_of_outage_mib": samples[-1]["rss_mib"] if samples else None,
        "disk_peak_mib": max((s["disk_mib"] for s in samples), default=0.0),
        "disk_after_drain_mib": disk_after / 2**20,
        "stored_requests_end_of_outage": metrics_down.get("otel_judge_storage_entries"),
        "target_cores_while_down": cpu_down / plan.down,
        "foreign_cores": max(0.0, busy_down - cpu_down - float(load.get("process_cpu_s", 0.0))) / plan.down,
        "samples": samples,
    }


STORE_POINTS = ((45_000, 1), (45_000, 16), (45_000, 64), (330_000, 16))  # (bytes, concurrency): 64 / 512 spans


def run_store_alone(requests: int) -> list[dict[str, Any]]:
    out = []
    for size, concurrency in STORE_POINTS:
        argv = [PYTHON, "-m", "bench.store_alone", "--size", str(size), "--concurrency", str(concurrency)]
        argv += ["--requests", str(requests if concurrency > 1 else requests // 4)]
        with Child("store-alone", argv) as child:
            busy = busy_cpu_seconds()
            started = time.monotonic()
            result: dict[str, Any] = json.loads(child.wait_line("{", timeout=300.0))
            child.wait_exit(10.0)
            elapsed = time.monotonic() - started
        result["machine_cores"] = (busy_cpu_seconds() - busy) / elapsed
        out.append(result)
    return out


def run_persistence(plan: PersistencePlan, workdir: Path, progress: Callable[[str], None]) -> dict[str, Any]:
    progress("store alone ... ")
    store = run_store_alone(500 if plan.measure < 5 else 2000)
    progress(f"{store[1]['cpu_us_per_request']:.0f} µs/request\n")
    throughput: list[dict[str, Any]] = []
    for _ in range(plan.repeat):
        for mode in MODES:  # interleaved, so drift hits both alike
            progress(f"throughput {mode} ... ")
            result = run_throughput(mode, plan, workdir)
            throughput.append(result)
            progress(f"{result['spans_per_s']:,.0f} spans/s\n")
    outage: list[dict[str, Any]] = []
    for mode in MODES:
        progress(f"outage {mode} ({plan.down:g}s) ... ")
        result = run_outage(mode, plan, workdir, progress)
        outage.append(result)
        progress(f"peak RSS {result['rss_peak_mib']:.0f} MiB\n")
    return {"store_alone": store, "throughput": throughput, "outage": outage}


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def persistence_report(results: dict[str, Any]) -> str:
    from bench.report import _table  # the bench's table layout

    rows = [
        [
            f"{r['size'] / 1000:.0f} KB",
            str(r["concurrency"]),
            _fmt(r["requests_per_s"], ",.0f"),
            _fmt(r["cpu_us_per_request"], ",.0f"),
            _fmt(r["cpu_us_per_request"] / (64 if r["size"] < 100_000 else 512), ".1f"),
            _fmt(r["writes_per_commit"], ".1f"),
            _fmt(r["machine_cores"], ".2f"),
        ]
        for r in results.get("store_alone", [])
    ]
    zero = _table(
        ["store alone", "in flight", "requests/s", "CPU µs/request", "CPU µs/span", "writes/fsync", "machine cores"],
        rows,
    )
    rows = []
    for r in results["throughput"]:
        rows.append(
            [
                r["mode"],
                _fmt(r["spans_per_s"], ",.0f"),
                _fmt(r["cpu_us_per_span"], ".1f"),
                _fmt(r["round_trip_ms"]["p50"], ".1f"),
                _fmt(r["round_trip_ms"]["p99"], ".1f"),
                _fmt(r["writes_per_commit"], ".1f"),
                _fmt(r["target_peak_rss_bytes"] / 2**20, ".0f"),
                _fmt(r["foreign_cores"], ".2f"),
            ]
        )
    first = _table(
        [
            "pass-through",
            "spans/s",
            "CPU µs/span",
            "rtt p50 ms",
            "rtt p99 ms",
            "writes/fsync",
            "peak RSS MiB",
            "other cores",
        ],
        rows,
    )
    rows = []
    for r in results["outage"]:
        calls = r["calls"]
        rows.append(
            [
                r["mode"],
                f"{r['offered_spans_per_s']:,.0f}",
                str(calls.get("ok", 0)),
                str(calls.get("rejected", 0)),
                _fmt(r["rss_idle_mib"], ".0f"),
                _fmt(r["rss_peak_mib"], ".0f"),
                _fmt(r["disk_peak_mib"], ".1f"),
                _fmt(r["drained_after_s"], ".1f"),
                f"{r['delivered_spans']:,}/{r['accepted_spans']:,}",
                _fmt(r["foreign_cores"], ".2f"),
            ]
        )
    second = _table(
        [
            f"downstream down {results['outage'][0]['down_s']:g}s" if results["outage"] else "outage",
            "offered spans/s",
            "accepted",
            "refused",
            "RSS idle MiB",
            "RSS peak MiB",
            "disk MiB",
            "drain s",
            "delivered",
            "other cores",
        ],
        rows,
    )
    return zero + "\n\n" + first + "\n\n" + second
