"""What the measurements share: interpreter paths, ports, machine CPU, the servers' counters, the
otel-judge config of a scenario, and the environment recorded with every result."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import yaml

from bench.procs import ROOT, Child, child_env
from bench.sink import PROGRESS_METHOD, STATS_METHOD

__all__ = [
    "OTEL_JUDGE",
    "PYTHON",
    "RESULTS",
    "busy_cpu_seconds",
    "environment",
    "free_port",
    "judge_requests",
    "otel_judge_config",
    "serve_otel_judge",
    "sink_progress",
    "sink_stats",
    "sleep_until_ns",
    "wait_quiet",
]

PYTHON = sys.executable
OTEL_JUDGE = str(Path(sys.executable).with_name("otel-judge"))
RESULTS = ROOT / "bench" / "results"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sleep_until_ns(wall_ns: int) -> None:
    delay = (wall_ns - time.time_ns()) / 1e9
    if delay > 0:
        time.sleep(delay)


def busy_cpu_seconds() -> float:
    """CPU seconds the whole machine has spent not idle (``/proc/stat``), to see foreign load."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    user, nice, system, irq, softirq = ticks[0], ticks[1], ticks[2], ticks[5], ticks[6]
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def wait_quiet(below: float = 0.2, over: float = 2.0, timeout: float = 120.0) -> float:
    """Wait (at most ``timeout`` s) until the machine used less than ``below`` cores during ``over``
    seconds, so a long measurement does not start in the middle of someone else's burst. Returns the
    busy cores last seen."""
    deadline = time.monotonic() + timeout
    while True:
        before = busy_cpu_seconds()
        time.sleep(over)
        cores = (busy_cpu_seconds() - before) / over
        if cores < below or time.monotonic() >= deadline:
            return cores


def _sink_call(port: int, method: str, query: bytes) -> dict[str, Any]:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = channel.unary_unary(method)(query, timeout=30.0)
    out: dict[str, Any] = json.loads(reply)
    return out


def sink_stats(port: int, from_ns: int, to_ns: int) -> dict[str, Any]:
    """What arrived at the sink in ``[from_ns, to_ns)``: counts, statuses, delay percentiles."""
    return _sink_call(port, STATS_METHOD, json.dumps({"from_ns": from_ns, "to_ns": to_ns}).encode())


def sink_progress(port: int) -> dict[str, Any]:
    """The sink's running totals since it started (cheap: no walk over the arrivals)."""
    return _sink_call(port, PROGRESS_METHOD, b"{}")


def judge_requests(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=5.0) as response:
        return int(json.load(response)["requests"])


def otel_judge_config(
    port: int, sink_port: int, judge_port: int, sampling: float, judge_concurrency: int = 64
) -> dict[str, Any]:
    """The config of a scenario: plaintext and uncompressed export, as the forwarder does."""
    return {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{port}", "max_recv_msg_size_mib": 64}}}},
        "exporters": {
            "otlp": {
                "endpoint": f"127.0.0.1:{sink_port}",
                "tls": {"insecure": True},
                "compression": "none",
                "timeout": "10s",
            }
        },
        "sampling": {
            "policies": [{"name": "bench", "type": "probabilistic", "probabilistic": {"sampling_percentage": sampling}}]
        },
        "judge": {
            "model": "openai/fake-judge",
            "api_base": f"http://127.0.0.1:{judge_port}/v1",
            "api_key": "sk-bench",
            "max_concurrency": judge_concurrency,
            "queue_size": 50_000,
            "timeout": "10s",
            "max_hold": "60s",
        },
        "service": {"shutdown_grace": "2s", "logs": {"level": "warning"}},
    }


@contextlib.contextmanager
def serve_otel_judge(config: dict[str, Any], path: Path) -> Iterator[Child]:
    """``otel-judge serve`` with ``config`` (written to ``path``), ready and idle."""
    path.write_text(yaml.safe_dump(config))
    with Child("otel-judge", [OTEL_JUDGE, "serve", "--config", str(path)]) as child:
        child.wait_line("otel-judge: ", stream="stderr")  # its one start-up line
        child.wait_idle()  # litellm is imported in a thread after start-up
        yield child


def environment() -> dict[str, Any]:
    from google.protobuf import __version__ as protobuf_version
    from google.protobuf.internal import api_implementation

    def output(*argv: str, cwd: Path = ROOT) -> str:
        return subprocess.run(
            argv, cwd=cwd, env=child_env(), capture_output=True, text=True, check=False
        ).stdout.strip()

    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    # What `otel-judge serve` imports: this tree, or another one put first on PYTHONPATH.
    source = Path(output(PYTHON, "-c", "import otel_judge; print(otel_judge.__path__[0])", cwd=Path("/")))
    in_tree = source.is_relative_to(ROOT)
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "cpu_model": next((line.split(":", 1)[1].strip() for line in cpuinfo if "model name" in line), "?"),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
        "protobuf": f"{protobuf_version} ({api_implementation.Type()})",
        "git_commit": output("git", "rev-parse", "--short", "HEAD"),
        "otel_judge_path": str(source),
        "otel_judge_changed_since_commit": (
            bool(output("git", "status", "--porcelain", "--", "otel_judge")) if in_tree else None
        ),
    }
