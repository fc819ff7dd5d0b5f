"""Start-up and memory: how soon ``otel-judge serve`` takes OTLP, and its RSS idle and with 50,000
traces held (``bench/run.py --startup``; method in bench/README.md).

One run, with a judge configured (``openai/fake-judge`` at a closed port: the fast path, never called)
and one tail-sampling policy on the trace's root span (``root.http.route``, matching nothing) with a
long ``decision_wait``, so each trace's LLM-call span is held for the whole measurement:

1. *start-up*: ``otel-judge serve`` is launched; from the launch, a tiny ``Export`` (one plain span) is
   tried every 10 ms (each attempt fails fast while nothing listens) until one is accepted. Reported:
   the time to that first accepted Export, the process's CPU time by then (robust to other load on
   the machine), and the time to the start-up line on stderr; twice: *cold*, with no bytecode cache
   (this machine sets ``PYTHONDONTWRITEBYTECODE``, so every module is compiled at every launch), and
   *warm*, with a bytecode cache filled beforehand (``PYTHONPYCACHEPREFIX``), as an installed package has;
2. *idle*: once the process is idle (< 5% of a core for 0.5 s), its RSS (``VmRSS``): what it costs
   before the first judgment, heavy imports included if any;
3. *held*: ``traces`` traces (4 spans each, 512 spans per request, 8 requests in flight) are sent;
   once the sink has every plain span of them (their LLM-call spans stay held), RSS and peak RSS.
   *held (sink)* = plain spans / 3 - LLM-call spans arrived, as in the tail-buffer measurement.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from pathlib import Path
from typing import Any

import grpc
import yaml
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench.common import OTEL_JUDGE, PYTHON, free_port, otel_judge_config, sink_progress
from bench.payloads import SPANS_PER_TRACE, TRACE_EXPORT_METHOD
from bench.procs import Child

__all__ = ["run_startup", "startup_report"]

BATCH = 512
DECISION_WAIT = 120.0  # longer than the whole measurement: nothing is released while it runs
FIRST_EXPORT_TIMEOUT = 30.0
LOAD_TIMEOUT = 120.0


def startup_config(port: int, sink_port: int, traces: int) -> dict[str, Any]:
    config = otel_judge_config(port, sink_port, free_port(), 0.0)
    config["sampling"] = {
        "decision_wait": f"{DECISION_WAIT:g}s",
        "decision_wait_after_root_received": f"{DECISION_WAIT:g}s",
        "num_traces": traces + 10_000,
        "max_held_spans": traces + 10_000,
        "policies": [
            {
                "name": "support",
                "type": "string_attribute",
                "string_attribute": {"key": "root.http.route", "values": ["/support"]},
            }
        ],
    }
    config["judge"]["max_hold"] = "300s"
    return config


def _rss(pid: int) -> dict[str, int]:
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            values[line.split(":")[0]] = int(line.split()[1]) * 1024
    return values


def _tiny_request() -> bytes:
    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add()
    span.trace_id, span.span_id, span.name = b"\x01" * 16, b"\x02" * 8, "startup-probe"
    return bytes(request.SerializeToString())


def _first_export(port: int, launched: float, child: Child) -> float:
    """Seconds from ``launched`` until an Export to ``port`` is accepted."""
    payload = _tiny_request()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        export = channel.unary_unary(TRACE_EXPORT_METHOD)
        while time.perf_counter() - launched < FIRST_EXPORT_TIMEOUT:
            if child.proc.poll() is not None:
                raise child.error("exited during start-up")
            try:
                export(payload, timeout=1.0)
                return time.perf_counter() - launched
            except grpc.RpcError:
                time.sleep(0.01)
    raise child.error(f"accepted no Export within {FIRST_EXPORT_TIMEOUT:g}s")


def _launch(path: Path, port: int, env: dict[str, str]) -> tuple[Child, dict[str, float]]:
    """``otel-judge serve``, timed to its first accepted Export (wall and its own CPU) and its line."""
    launched = time.perf_counter()
    target = Child("otel-judge", [OTEL_JUDGE, "serve", "--config", str(path)], env=env)
    try:
        first_export_s = _first_export(port, launched, target)
        cpu_s = target.cpu_seconds()
        target.wait_line("otel-judge: ", stream="stderr")
        line_s = time.perf_counter() - launched  # at most this (the line may have come earlier)
    except BaseException:
        target.stop()
        raise
    return target, {"first_export_s": first_export_s, "first_export_cpu_s": cpu_s, "startup_line_s": line_s}


def run_startup(workdir: Path, traces: int = 50_000) -> dict[str, Any]:
    """Start-up cold (no bytecode cache: this machine sets PYTHONDONTWRITEBYTECODE, so every module is
    compiled at every launch) and warm (bytecode cached, as in an installed package), then RSS idle
    and with ``traces`` held (the warm process)."""
    # A bytecode cache outside the source tree, filled by one import of what `serve` imports.
    warm_env = {"PYTHONDONTWRITEBYTECODE": "", "PYTHONPYCACHEPREFIX": str(workdir / "pycache")}
    with Child("warm-up", [PYTHON, "-c", "import otel_judge.cli, otel_judge.pipeline"], env=warm_env) as warm:
        warm.wait_exit(60.0)
    with contextlib.ExitStack() as stack:
        sink = stack.enter_context(Child("sink", [PYTHON, "-m", "bench.sink"]))
        sink_port = sink.ready_port()
        cold_port = free_port()
        cold_path = workdir / "startup-cold.yaml"
        cold_path.write_text(yaml.safe_dump(startup_config(cold_port, sink_port, traces)))
        cold_target, cold = _launch(cold_path, cold_port, {})
        cold_target.stop(grace=15.0)
        port = free_port()
        path = workdir / "startup.yaml"
        path.write_text(yaml.safe_dump(startup_config(port, sink_port, traces)))
        target, warm_times = _launch(path, port, warm_env)
        stack.callback(target.stop)
        target.wait_idle()
        idle = _rss(target.pid)
        requests = math.ceil(traces * SPANS_PER_TRACE / BATCH)
        argv = [PYTHON, "-m", "bench.loadgen", "--target", str(port), "--batch", str(BATCH), "--concurrency", "8"]
        argv += ["--warmup", "0", "--measure", str(LOAD_TIMEOUT), "--cooldown", "0", "--max-requests", str(requests)]
        loaded = time.perf_counter()
        with Child("loadgen", argv) as loadgen:
            load = json.loads(loadgen.wait_line("{", timeout=LOAD_TIMEOUT + 30.0))
            loadgen.wait_exit(10.0)
        accepted_traces = load["calls"].get("ok", 0) * (BATCH // SPANS_PER_TRACE)
        deadline = time.perf_counter() + 60.0
        progress = sink_progress(sink_port)
        while progress["plain_spans"] < accepted_traces * (SPANS_PER_TRACE - 1) and time.perf_counter() < deadline:
            time.sleep(0.25)
            progress = sink_progress(sink_port)
        load_s = time.perf_counter() - loaded
        target.wait_idle(timeout=60.0)
        held_rss = _rss(target.pid)
        held = round(progress["plain_spans"] / (SPANS_PER_TRACE - 1) - progress["genai_spans"])
        exit_code = target.stop(grace=15.0)
    return {
        "cold": {k: round(v, 3) for k, v in cold.items()},
        "warm": {k: round(v, 3) for k, v in warm_times.items()},
        "idle_rss_bytes": idle["VmRSS"],
        "idle_hwm_bytes": idle["VmHWM"],
        "traces_sent": load["sent"] * (BATCH // SPANS_PER_TRACE),
        "traces_accepted": accepted_traces,
        "held_at_sink": held,
        "load_s": round(load_s, 1),
        "load_calls": load["calls"],
        "held_rss_bytes": held_rss["VmRSS"],
        "held_hwm_bytes": held_rss["VmHWM"],
        "target_exit_code": exit_code,
    }


def startup_report(result: dict[str, Any]) -> str:
    def mib(value: int) -> str:
        return f"{value / 2**20:,.0f}"

    ok = {
        "first": result["warm"]["first_export_s"] <= 1.5,
        "idle": result["idle_rss_bytes"] <= 150 * 2**20,
        "held": result["held_rss_bytes"] <= 300 * 2**20,
    }

    def verdict(key: str) -> str:
        return "meets" if ok[key] else "MISSES"

    return "\n".join(
        [
            *(
                f"{name}: first accepted Export {t['first_export_s']:.2f} s after launch (its CPU by then "
                f"{t['first_export_cpu_s']:.2f} s), start-up line by {t['startup_line_s']:.2f} s"
                for name, t in (
                    ("cold (no bytecode cache)", result["cold"]),
                    ("warm (bytecode cached)", result["warm"]),
                )
            ),
            f"start-up (warm) {verdict('first')} the 1.5 s target",
            f"RSS idle, judge configured, before any judgment: {mib(result['idle_rss_bytes'])} MiB "
            f"({verdict('idle')} <= 150 MiB)",
            f"RSS with {result['held_at_sink']:,} traces held ({result['traces_accepted']:,} sent in "
            f"{result['load_s']:.1f} s): {mib(result['held_rss_bytes'])} MiB, peak {mib(result['held_hwm_bytes'])} "
            f"MiB ({verdict('held')} <= 300 MiB)",
        ]
    )
