"""Tail sampling with traces held: otel-judge's trace buffer at ~50,000 traces in flight, then over
1,000,000 distinct traces (``bench/run.py --sampling``; method in bench/README.md).

otel-judge runs with one policy that reads the trace's root span (``root.http.route``), so it keeps a
record of *every* trace for ``decision_wait`` and holds each trace's LLM-call span until the decision.
The policy matches no route of the payload, so nothing is judged (the judge's address is a closed
port) and what is measured is the buffer. One open-loop run at a fixed rate of traces/s:

* warm-up (longer than ``decision_wait``, so decisions are under way), then window (a) at a steady
  ~rate x decision_wait traces in flight: spans/s at the sink, CPU, delays, peak RSS at its end;
* then the load goes on until ``total_traces`` traces were sent or ``max_seconds`` passed, (b):
  RSS every second, peak RSS at the end, and, after a drain of decision_wait + 3 s, a check that
  every span of every accepted trace reached the sink.

Traces in flight are read at the sink every second: a trace's plain spans arrive at once, its
LLM-call span when the trace is decided, so (plain spans / 3) - LLM-call spans = traces whose
LLM-call span is held (plus the few in transit).
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.common import (
    PYTHON,
    busy_cpu_seconds,
    free_port,
    otel_judge_config,
    serve_otel_judge,
    sink_progress,
    sink_stats,
    sleep_until_ns,
    wait_quiet,
)
from bench.payloads import SPANS_PER_TRACE
from bench.procs import Child

__all__ = ["BufferPlan", "buffer_report", "run_buffer"]

PLAIN_PER_TRACE = SPANS_PER_TRACE - 1  # the payload's traces have one LLM-call span each
POLL = 1.0  # seconds between samples of RSS and of the sink's totals


@dataclass(frozen=True)
class BufferPlan:
    traces_per_s: float = 10_000.0  # x decision_wait = traces in flight
    batch: int = 512  # spans per request (128 traces)
    decision_wait: float = 5.0  # also decision_wait_after_root_received
    num_traces: int = 50_000
    max_held_spans: int = 100_000  # >= traces in flight: every LLM-call span is held (default 10,000)
    total_traces: int = 1_000_000
    max_seconds: float = 150.0  # the load stops at total_traces or after this long
    warmup: float = 8.0  # > decision_wait
    window: float = 10.0
    route: str = "/support"  # matches no trace of the payload: nothing is judged
    # "root": the string_attribute policy on root.http.route (a record per trace, LLM-call spans held);
    # "span": a probabilistic policy at 0% instead, decided on arrival (nothing kept): the baseline.
    policy: str = "root"
    quick: bool = False

    @property
    def rate(self) -> float:
        """Requests per second."""
        return self.traces_per_s * SPANS_PER_TRACE / self.batch

    @property
    def max_requests(self) -> int:
        return math.ceil(self.total_traces * SPANS_PER_TRACE / self.batch)


def buffer_config(port: int, sink_port: int, plan: BufferPlan) -> dict[str, Any]:
    # The judge's address is a port nobody listens on: the policy matches nothing, it is never called.
    config = otel_judge_config(port, sink_port, free_port(), 0.0)
    policy: dict[str, Any] = {
        "name": "support",
        "type": "string_attribute",
        "string_attribute": {"key": "root.http.route", "values": [plan.route]},
    }
    if plan.policy == "span":
        policy = {"name": "none", "type": "probabilistic", "probabilistic": {"sampling_percentage": 0}}
    config["sampling"] = {
        "decision_wait": f"{plan.decision_wait:g}s",
        "decision_wait_after_root_received": f"{plan.decision_wait:g}s",
        "num_traces": plan.num_traces,
        "max_held_spans": plan.max_held_spans,
        "policies": [policy],
    }
    return config


def _rss_bytes(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process, bytes."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            values[line.split(":")[0]] = int(line.split()[1]) * 1024
    return values["VmRSS"], values["VmHWM"]


def run_buffer(plan: BufferPlan, workdir: Path) -> dict[str, Any]:
    with contextlib.ExitStack() as stack:
        sink = stack.enter_context(Child("sink", [PYTHON, "-m", "bench.sink"]))
        sink_port = sink.ready_port()
        port = free_port()
        config = buffer_config(port, sink_port, plan)
        target = stack.enter_context(serve_otel_judge(config, workdir / "tail-buffer.yaml"))
        idle_rss = _rss_bytes(target.pid)[0]
        quiet = wait_quiet()
        load_seconds = plan.max_seconds
        argv = [PYTHON, "-m", "bench.loadgen", "--target", str(port), "--batch", str(plan.batch)]
        argv += ["--warmup", str(plan.warmup), "--measure", str(plan.window)]
        argv += ["--cooldown", str(load_seconds - plan.warmup - plan.window)]
        argv += ["--rate", f"{plan.rate:.4f}", "--concurrency", "64", "--max-requests", str(plan.max_requests)]
        loadgen = stack.enter_context(Child("loadgen", argv))
        start_ns = int(loadgen.wait_line("start ").split()[1])
        window = (start_ns + int(plan.warmup * 1e9), start_ns + int((plan.warmup + plan.window) * 1e9))
        procs = {"target": target, "loadgen": loadgen, "sink": sink}

        def cpu() -> dict[str, float]:
            return {name: p.cpu_seconds() for name, p in procs.items()} | {"machine": busy_cpu_seconds()}

        samples: list[dict[str, Any]] = []

        def sample() -> dict[str, Any]:
            rss, hwm = _rss_bytes(target.pid)
            progress = sink_progress(sink_port)
            held = progress["plain_spans"] / PLAIN_PER_TRACE - progress["genai_spans"]
            entry = {
                "t_s": round((time.time_ns() - start_ns) / 1e9, 2),
                "rss_bytes": rss,
                "hwm_bytes": hwm,
                "traces_received": progress["plain_spans"] // PLAIN_PER_TRACE,
                "held": round(held),
                "target_cpu_s": round(target.cpu_seconds(), 2),
            }
            samples.append(entry)
            return entry

        def sample_until(wall_ns: int, stop_early: Child | None = None) -> None:
            while time.time_ns() < wall_ns:
                if stop_early is not None and stop_early.proc.poll() is not None:
                    return
                sample()
                sleep_until_ns(min(wall_ns, time.time_ns() + int(POLL * 1e9)))

        sample_until(window[0])
        cpu_a0 = cpu()
        sample_until(window[1])
        cpu_a1 = cpu()
        rss_a, hwm_a = _rss_bytes(target.pid)
        sample_until(start_ns + int((load_seconds + 30) * 1e9), stop_early=loadgen)
        load = json.loads(loadgen.wait_line("{", timeout=30.0))
        loadgen.wait_exit(10.0)
        procs.pop("loadgen")
        cpu_b1 = cpu() | {"loadgen": load["process_cpu_s"]}
        end_ns = load["finished_ns"]
        drain_until = time.time_ns() + int((plan.decision_wait + 3.0) * 1e9)
        sample_until(drain_until)
        final = sample()
        window_a = sink_stats(sink_port, *window)
        run_b = sink_stats(sink_port, window[0], end_ns)
        everything = sink_stats(sink_port, 0, time.time_ns())
        rss_end, hwm_end = _rss_bytes(target.pid)
        exit_code = target.stop(grace=15.0)
    accepted = load["calls"].get("ok", 0)
    traces_per_request = plan.batch // SPANS_PER_TRACE
    return {
        "plan": asdict(plan) | {"rate_requests_per_s": plan.rate, "max_requests": plan.max_requests},
        "config_sampling": config["sampling"],
        "load": load,
        "window_a": {
            "from_ns": window[0],
            "to_ns": window[1],
            "sink": window_a,
            "cpu_s": {k: round(cpu_a1[k] - cpu_a0[k], 3) for k in cpu_a1},
            "rss_bytes": rss_a,
            "hwm_bytes": hwm_a,
        },
        "run_b": {
            "from_ns": window[0],
            "to_ns": end_ns,
            "sink": run_b,
            "cpu_s": {k: round(cpu_b1[k] - cpu_a0[k], 3) for k in cpu_b1},
        },
        "all": {"sink": everything},
        "traces_sent": load["sent"] * traces_per_request,
        "traces_accepted": accepted * traces_per_request,
        "idle_rss_bytes": idle_rss,
        "busy_cores_before": round(quiet, 2),
        "end_rss_bytes": rss_end,
        "end_hwm_bytes": hwm_end,
        "final_sample": final,
        "samples": samples,
        "target_exit_code": exit_code,
    }


def _mib(value: float | None) -> str:
    return "-" if value is None else f"{value / 2**20:,.0f}"


def _ms(delays: dict[str, float] | None, key: str) -> str:
    return "-" if not delays or delays.get(key) is None else f"{delays[key]:,.1f}"


def _other(cpu_s: dict[str, float], seconds: float) -> float:
    ours = sum(v for k, v in cpu_s.items() if k != "machine")
    return max(0.0, cpu_s["machine"] - ours) / seconds


def buffer_report(result: dict[str, Any]) -> str:
    """Two rows, (a) the window at ~rate x decision_wait traces in flight and (b) the whole run,
    then the check that nothing was lost and the RSS curve."""
    plan = result["plan"]
    a, b = result["window_a"], result["run_b"]
    samples = result["samples"]
    seconds_a = (a["to_ns"] - a["from_ns"]) / 1e9
    seconds_b = (b["to_ns"] - b["from_ns"]) / 1e9
    in_window = [s for s in samples if plan["warmup"] <= s["t_s"] <= plan["warmup"] + plan["window"]]
    held_a = sum(s["held"] for s in in_window) / len(in_window) if in_window else None
    during_load = [s for s in samples if s["t_s"] >= plan["warmup"] and s["t_s"] <= seconds_b + plan["warmup"]]
    rows = []
    for name, part, seconds, held, hwm in (
        ("(a) window", a, seconds_a, held_a, a["hwm_bytes"]),
        ("(b) whole run", b, seconds_b, max((s["held"] for s in during_load), default=None), result["end_hwm_bytes"]),
    ):
        sink = part["sink"]
        decided = sink["genai_spans"] / seconds
        cpu = part["cpu_s"]
        rows.append(
            [
                name,
                f"{seconds:.0f}",
                f"{sink['spans'] / seconds:,.0f}",
                f"{decided:,.0f}",
                f"{decided * plan['decision_wait']:,.0f}" if plan.get("policy", "root") == "root" else "-",
                "-" if held is None else f"{held:,.0f}" + (" avg" if part is a else " max"),
                f"{cpu['target'] / seconds:.2f}",
                f"{cpu['target'] / sink['spans'] * 1e6:.1f}" if sink["spans"] else "-",
                _mib(hwm),
                _ms(sink["plain_delay_ms"], "p50"),
                _ms(sink["plain_delay_ms"], "p99"),
                _ms(sink["genai_delay_ms"], "p50"),
                _ms(sink["genai_delay_ms"], "p99"),
                f"{_other(cpu, seconds):.2f}",
            ]
        )
    headers = [
        "tail buffer", "s", "spans/s", "decided traces/s", "in flight = x wait", "held (sink)", "cores",
        "CPU us/span", "peak RSS MiB", "plain p50 ms", "p99 ms", "LLM-call p50 ms", "p99 ms", "other",
    ]  # fmt: skip
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))

    sampling = result["config_sampling"]
    policy = sampling["policies"][0]
    what = (
        f"{policy['type']} {policy['string_attribute']['key']} in {policy['string_attribute']['values']}"
        if policy["type"] == "string_attribute"
        else f"{policy['type']} {policy['probabilistic']['sampling_percentage']}%"
    )
    out = [
        f"otel-judge sampling: {what}; decision_wait {sampling['decision_wait']} (also after the root), "
        f"num_traces {sampling['num_traces']:,}, max_held_spans {sampling['max_held_spans']:,}",
        "",
        line(headers),
        line(["-" * w for w in widths]),
        *(line(r) for r in rows),
        "",
    ]
    load, everything = result["load"], result["all"]["sink"]
    accepted = result["traces_accepted"]
    statuses = ", ".join(f"{k} {v:,}" for k, v in sorted(everything["statuses"].items()))
    out.append(
        f"load: {plan['traces_per_s']:,.0f} traces/s offered ({plan['rate_requests_per_s']:.1f} requests/s x "
        f"{plan['batch']} spans) for up to {plan['total_traces']:,} traces / {plan['max_seconds']:g} s: "
        f"{result['traces_sent']:,} traces sent in {seconds_b + plan['warmup']:.0f} s, {accepted:,} accepted; "
        f"calls {dict(load['calls'])}, skipped (64 in flight) {load['skipped']}, late {load['late']}"
    )
    expected_spans = accepted * SPANS_PER_TRACE
    verdict = "all arrived" if everything["spans"] == expected_spans else "MISMATCH"
    out.append(
        f"sink after drain: {everything['spans']:,} spans of {expected_spans:,} expected ({verdict}); "
        f"LLM-call spans {everything['genai_spans']:,} ({statuses})"
    )
    marks = []
    for fraction in (0.05, 0.1, 0.25, 0.5, 0.75, 1.0):
        target = fraction * accepted
        hit = next((s for s in samples if s["traces_received"] >= target), None)
        if hit is not None:
            marks.append(f"{hit['traces_received']:,} traces {_mib(hit['rss_bytes'])}")
    out.append(
        f"RSS MiB: idle {_mib(result['idle_rss_bytes'])}; end of (a) {_mib(a['rss_bytes'])} (peak "
        f"{_mib(a['hwm_bytes'])}); by traces received: " + ", ".join(marks)
    )
    out.append(
        f"         after the drain {_mib(result['end_rss_bytes'])}, peak {_mib(result['end_hwm_bytes'])}; "
        f"most held at once (sink) {max((s['held'] for s in samples), default=0):,}"
    )
    return "\n".join(out)
