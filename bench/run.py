"""Benchmark otel-judge against a minimal Python OTLP/gRPC forwarder: ``.venv/bin/python bench/run.py``.

Each scenario starts fresh processes (sink, fake judge when judging, the target, a load generator),
waits until the target is ready and idle, sends load for warm-up + window + cool-down, and reads
what the sink received in the window, the CPU time each process used in the window and the target's
peak RSS. Prints two tables and writes ``bench/results/latest.json``. Method: bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import grpc
import yaml

from bench.procs import ROOT, Child, ChildError, child_env
from bench.report import derive, report
from bench.sink import STATS_METHOD

PYTHON = sys.executable
OTEL_JUDGE = str(Path(sys.executable).with_name("otel-judge"))
RESULTS = ROOT / "bench" / "results"
# otel-judge holds LLM-call spans until its sampling decision (sampling.decision_wait, 5 s by
# default): its window starts after the first decisions, so the released spans are counted.
OTEL_JUDGE_WARMUP = 6.0

Target = Literal["direct", "forwarder", "otel-judge"]


@dataclass(frozen=True)
class Timing:
    warmup: float
    measure: float
    cooldown: float = 0.5


@dataclass(frozen=True)
class Scenario:
    """One measurement. ``rate`` 0 = closed loop (throughput), > 0 = open loop (delay)."""

    target: Target
    batch: int
    rate: float = 0.0
    sampling: float | None = None  # otel-judge's sampling_percentage

    @property
    def label(self) -> str:
        return self.target if self.sampling is None else f"{self.target} {self.sampling:g}%"

    @property
    def key(self) -> str:
        sampling = "" if self.sampling is None else f"-s{self.sampling:g}"
        return f"{self.target}{sampling}-b{self.batch}-" + (f"rate{self.rate:g}" if self.rate else "max")


@dataclass(frozen=True)
class Options:
    judge_latency: float
    judge_concurrency: int
    concurrency: int
    workdir: Path
    profile_dir: Path | None = None


PASS_THROUGH: list[tuple[Target, float | None]] = [("direct", None), ("forwarder", None), ("otel-judge", 0.0)]
COMPARED: list[tuple[Target, float | None]] = [("forwarder", None), ("otel-judge", 0.0), ("otel-judge", 100.0)]


def plan(quick: bool, light: tuple[float, int], moderate: tuple[float, int]) -> list[Scenario]:
    """Throughput at 64 and 512 spans/request; delay at a light load (judging stays within its
    capacity) and a moderate one (pass-through targets only, plus ``direct``: the harness alone).
    ``--quick``: forwarder vs otel-judge 0% throughput, and the light-load delay with judging."""
    if quick:
        return [
            Scenario("forwarder", 64),
            Scenario("otel-judge", 64, sampling=0.0),
            Scenario("forwarder", light[1], rate=light[0]),
            Scenario("otel-judge", light[1], rate=light[0], sampling=100.0),
        ]
    out = [Scenario(t, b, sampling=s) for b in (64, 512) for t, s in COMPARED]
    out += [Scenario(t, light[1], rate=light[0], sampling=s) for t, s in COMPARED]
    out += [Scenario(t, moderate[1], rate=moderate[0], sampling=s) for t, s in PASS_THROUGH]
    return out


# --------------------------------------------------------------------------- helpers


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


def sink_stats(port: int, from_ns: int, to_ns: int) -> dict[str, Any]:
    query = json.dumps({"from_ns": from_ns, "to_ns": to_ns}).encode()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = channel.unary_unary(STATS_METHOD)(query, timeout=30.0)
    stats: dict[str, Any] = json.loads(reply)
    return stats


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
def start_target(
    scenario: Scenario, sink_port: int, judge_port: int | None, options: Options
) -> Iterator[tuple[Child | None, int]]:
    """The process under test (None for ``direct``) and the port the load generator sends to."""
    if scenario.target == "direct":
        yield None, sink_port
        return
    if scenario.target == "forwarder":
        with Child("forwarder", [PYTHON, "-m", "bench.forwarder", "--sink", str(sink_port)]) as child:
            port = child.ready_port()
            child.wait_idle()
            yield child, port
        return
    port = free_port()
    config = options.workdir / f"{scenario.key}.yaml"
    # At 0% the judge is never called; its address then points at a port nobody listens on.
    judge = judge_port or free_port()
    data = otel_judge_config(port, sink_port, judge, scenario.sampling or 0.0, options.judge_concurrency)
    config.write_text(yaml.safe_dump(data))
    with Child("otel-judge", [OTEL_JUDGE, "serve", "--config", str(config)]) as child:
        child.wait_line("otel-judge: ", stream="stderr")  # its one start-up line
        child.wait_idle()  # litellm is imported in a thread after start-up
        yield child, port


@contextlib.contextmanager
def profiler(target: Child, seconds: float, out: Path) -> Iterator[None]:
    """py-spy (when installed in the venv) samples the target during the window: collapsed stacks."""
    argv = [str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(target.pid), "--nonblocking"]
    argv += ["--duration", str(max(1, int(seconds))), "--rate", "200", "--format", "raw", "--output", str(out)]
    out.parent.mkdir(parents=True, exist_ok=True)
    with Child("py-spy", argv) as child:
        yield
        child.wait_exit(30.0)


def run_scenario(scenario: Scenario, timing: Timing, options: Options) -> dict[str, Any]:
    with contextlib.ExitStack() as stack:
        sink = stack.enter_context(Child("sink", [PYTHON, "-m", "bench.sink"]))
        sink_port = sink.ready_port()
        judge: Child | None = None
        judge_port: int | None = None
        if scenario.sampling:
            argv = [PYTHON, "-m", "bench.fake_judge", "--latency", str(options.judge_latency)]
            judge = stack.enter_context(Child("fake-judge", argv))
            judge_port = judge.ready_port()
        target, target_port = stack.enter_context(start_target(scenario, sink_port, judge_port, options))
        if scenario.target == "otel-judge":
            timing = replace(timing, warmup=max(timing.warmup, OTEL_JUDGE_WARMUP))
        argv = [PYTHON, "-m", "bench.loadgen", "--target", str(target_port), "--batch", str(scenario.batch)]
        argv += ["--warmup", str(timing.warmup), "--measure", str(timing.measure), "--cooldown", str(timing.cooldown)]
        argv += ["--rate", str(scenario.rate), "--concurrency", str(64 if scenario.rate else options.concurrency)]
        loadgen = stack.enter_context(Child("loadgen", argv))
        start_ns = int(loadgen.wait_line("start ").split()[1])
        window = (start_ns + int(timing.warmup * 1e9), start_ns + int((timing.warmup + timing.measure) * 1e9))
        procs = {"target": target, "loadgen": loadgen, "sink": sink, "fake_judge": judge}

        def cpu() -> dict[str, float]:
            return {name: p.cpu_seconds() for name, p in procs.items() if p is not None} | {
                "machine": busy_cpu_seconds()
            }

        sleep_until_ns(window[0])
        if options.profile_dir is not None and target is not None:
            stack.enter_context(profiler(target, timing.measure, options.profile_dir / f"{scenario.key}.txt"))
        cpu_before, judged_before = cpu(), judge_requests(judge_port) if judge_port else 0
        sleep_until_ns(window[1])
        cpu_after, judged_after = cpu(), judge_requests(judge_port) if judge_port else 0

        load = json.loads(loadgen.wait_line("{", timeout=timing.cooldown + 30.0))
        loadgen.wait_exit(10.0)
        received = sink_stats(sink_port, load["window_from_ns"], load["window_to_ns"])
        peak_rss = target.peak_rss_bytes() if target is not None else None
        exit_code = target.stop(grace=15.0) if target is not None else None
        if exit_code:
            print(f"\n  warning: {scenario.target} exited with code {exit_code} on SIGTERM", file=sys.stderr)
    return {
        "scenario": asdict(scenario) | {"key": scenario.key, "label": scenario.label},
        "window_s": (window[1] - window[0]) / 1e9,
        "load": load,
        "sink": received,
        "judge_requests_in_window": judged_after - judged_before,
        "cpu_s": {name: round(cpu_after[name] - cpu_before[name], 3) for name in cpu_after},
        "target_peak_rss_bytes": peak_rss,
        "target_exit_code": exit_code,
        "timing": asdict(timing),
    }


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smoke run: fewer scenarios, shorter windows")
    parser.add_argument("--only", help="run only the scenarios whose key contains this text")
    parser.add_argument("--concurrency", type=int, default=16, help="calls in flight in the throughput scenarios")
    parser.add_argument("--judge-latency", type=float, default=0.05, help="seconds the fake judge takes to answer")
    parser.add_argument(
        "--repeat", type=int, default=1, help="run the plan N times; tables show the least disturbed run"
    )
    parser.add_argument(
        "--judge-concurrency", type=int, default=64, help="otel-judge's judge.max_concurrency (its default: 64)"
    )
    parser.add_argument("--profile", type=Path, metavar="DIR", help="py-spy the target in each window into DIR")
    parser.add_argument("--out", type=Path, default=RESULTS / "latest.json", help="where to write the JSON results")
    args = parser.parse_args()
    throughput_timing = Timing(warmup=2.0, measure=3.0 if args.quick else 8.0)
    delay_timing = Timing(warmup=2.0, measure=3.0 if args.quick else 6.0)
    light, moderate = (16.0, 16), (100.0, 64)  # (requests/s, spans/request)
    scenarios = [s for s in plan(args.quick, light, moderate) if not args.only or args.only in s.key]
    rounds = [s for _ in range(args.repeat) for s in scenarios]  # interleaved, so drift hits all alike

    started = time.perf_counter()
    results: list[dict[str, Any]] = []
    passthrough_us: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="otel-judge-bench-") as workdir:
        options = Options(args.judge_latency, args.judge_concurrency, args.concurrency, Path(workdir), args.profile)
        for i, scenario in enumerate(rounds, 1):
            print(f"[{i}/{len(rounds)}] {scenario.key} ...", end=" ", file=sys.stderr, flush=True)
            try:
                result = run_scenario(scenario, delay_timing if scenario.rate else throughput_timing, options)
            except ChildError as exc:
                print(f"failed\n{exc}", file=sys.stderr)
                return 1
            result["derived"] = derive(result, passthrough_us)
            if scenario.target == "otel-judge" and scenario.sampling == 0 and not scenario.rate:
                passthrough_us[scenario.batch] = result["derived"]["cpu_us_per_span"]
            results.append(result)
            print(f"{result['derived']['spans_per_s']:,.0f} spans/s", file=sys.stderr, flush=True)

    table = report(results)
    print(table)
    document: dict[str, Any] = {
        "environment": environment(),
        "parameters": {
            "quick": args.quick,
            "repeat": args.repeat,
            "throughput": asdict(throughput_timing) | {"concurrency": args.concurrency},
            "delay": asdict(delay_timing) | {"light": light, "moderate": moderate},
            "judge_latency_s": args.judge_latency,
            "judge_max_concurrency": args.judge_concurrency,
            "wall_s": round(time.perf_counter() - started, 1),
        },
        "results": results,
        "table": table,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=2) + "\n")
    shown = args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out
    print(f"\nwrote {shown} in {document['parameters']['wall_s']}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
