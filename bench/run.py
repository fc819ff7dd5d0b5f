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
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    PYTHON,
    RESULTS,
    busy_cpu_seconds,
    environment,
    free_port,
    judge_requests,
    otel_judge_config,
    serve_otel_judge,
    sink_stats,
    sleep_until_ns,
)
from bench.judgepool import PoolPlan, pool_report, run_judge_pool
from bench.persistence import PersistencePlan, persistence_report, run_persistence
from bench.procs import ROOT, Child, ChildError
from bench.report import derive, report
from bench.startup import run_startup, startup_report
from bench.tailbuffer import BufferPlan, buffer_report, run_buffer

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
    with serve_otel_judge(data, config) as child:
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


def run_plan(args: argparse.Namespace) -> int:
    """The default run: throughput and delay scenarios (tables, ``bench/results/latest.json``)."""
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
    write(args.out or RESULTS / "latest.json", document)
    return 0


def run_sampling(args: argparse.Namespace) -> int:
    """``--sampling``: the tail-sampling buffer at ~50,000 traces in flight, then 1,000,000 traces."""
    buffer_plan = BufferPlan(
        traces_per_s=args.sampling_rate,
        decision_wait=args.sampling_wait,
        warmup=args.sampling_wait + 3.0,  # decisions under way before the window
        policy=args.sampling_policy,
        max_held_spans=args.sampling_max_held,
        total_traces=200_000 if args.quick else args.sampling_traces,
        max_seconds=40.0 if args.quick else 150.0,
        quick=args.quick,
    )
    started = time.perf_counter()
    print(f"tail buffer: {buffer_plan.traces_per_s:,.0f} traces/s ...", end=" ", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="otel-judge-bench-") as workdir:
        try:
            result = run_buffer(buffer_plan, Path(workdir))
        except ChildError as exc:
            print(f"failed\n{exc}", file=sys.stderr)
            return 1
    print(f"{result['traces_sent']:,} traces", file=sys.stderr, flush=True)
    table = buffer_report(result)
    print(table)
    document = {
        "environment": environment(),
        "parameters": {"wall_s": round(time.perf_counter() - started, 1)},
        "result": result,
        "table": table,
    }
    write(args.out or RESULTS / "tail-buffer.json", document)
    return 0


def run_pool(args: argparse.Namespace) -> int:
    """``--judge-pool``: judge calls/s and CPU per judgment, otel-judge's pool vs plain httpx."""
    pool_plan = PoolPlan(
        concurrencies=tuple(int(c) for c in args.pool_concurrency.split(",")),
        latencies=tuple(float(lat) for lat in args.pool_latency.split(",")),
        calls=500 if args.quick else args.pool_calls,
    )
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="otel-judge-bench-") as workdir:
        try:
            results = run_judge_pool(pool_plan, Path(workdir), lambda text: print(text, end="", file=sys.stderr))
        except ChildError as exc:
            print(f"failed\n{exc}", file=sys.stderr)
            return 1
    table = pool_report(results)
    print(table)
    document = {
        "environment": environment(),
        "parameters": asdict(pool_plan) | {"wall_s": round(time.perf_counter() - started, 1)},
        "results": results,
        "table": table,
    }
    write(args.out or RESULTS / "judge-pool.json", document)
    return 0


def run_startup_measurement(args: argparse.Namespace) -> int:
    """``--startup``: time to the first accepted Export, RSS idle and with 50,000 traces held."""
    started = time.perf_counter()
    print(f"start-up: {args.startup_traces:,} traces held ...", end=" ", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="otel-judge-bench-") as workdir:
        try:
            result = run_startup(Path(workdir), args.startup_traces)
        except ChildError as exc:
            print(f"failed\n{exc}", file=sys.stderr)
            return 1
    print("done", file=sys.stderr, flush=True)
    table = startup_report(result)
    print(table)
    document = {
        "environment": environment(),
        "parameters": {"traces": args.startup_traces, "wall_s": round(time.perf_counter() - started, 1)},
        "result": result,
        "table": table,
    }
    write(args.out or RESULTS / "startup.json", document)
    return 0


def run_persistence_measurement(args: argparse.Namespace) -> int:
    """``--persistence``: pass-through with the persistent queue on vs off; RSS while the downstream is down."""
    plan = PersistencePlan(
        measure=3.0 if args.quick else 8.0,
        down=15.0 if args.quick else args.persistence_down,
        down_rate=args.persistence_rate,
        repeat=args.repeat,
    )
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="otel-judge-bench-") as workdir:
        try:
            results = run_persistence(
                plan, Path(workdir), lambda text: print(text, end="", file=sys.stderr, flush=True)
            )
        except ChildError as exc:
            print(f"failed\n{exc}", file=sys.stderr)
            return 1
    table = persistence_report(results)
    print(table)
    document = {
        "environment": environment(),
        "parameters": asdict(plan) | {"wall_s": round(time.perf_counter() - started, 1)},
        "results": results,
        "table": table,
    }
    write(args.out or RESULTS / "persistence.json", document)
    return 0


def write(out: Path, document: dict[str, Any]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=2) + "\n")
    shown = out.relative_to(ROOT) if out.is_relative_to(ROOT) else out
    print(f"\nwrote {shown} in {document['parameters']['wall_s']}s", file=sys.stderr)


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
    parser.add_argument(
        "--out", type=Path, help="where to write the JSON results (default: bench/results/<measurement>.json)"
    )
    extra = parser.add_argument_group("separate measurements (not part of the default run)")
    extra.add_argument(
        "--sampling", action="store_true", help="tail-sampling buffer: ~50k traces in flight, then 1M traces"
    )
    extra.add_argument("--sampling-rate", type=float, default=10_000.0, help="--sampling: traces/s offered")
    extra.add_argument(
        "--sampling-wait", type=float, default=5.0, help="--sampling: decision_wait (and after root) in s"
    )
    extra.add_argument(
        "--sampling-policy",
        choices=("root", "span"),
        default="root",
        help="--sampling: root = string_attribute on root.http.route (traces held); span = probabilistic 0%% "
        "(baseline: decided on arrival, nothing held)",
    )
    extra.add_argument("--sampling-traces", type=int, default=1_000_000, help="--sampling: traces sent at most")
    extra.add_argument(
        "--sampling-max-held",
        type=int,
        default=100_000,
        help="--sampling: sampling.max_held_spans (otel-judge's default: 10,000)",
    )
    extra.add_argument(
        "--judge-pool", action="store_true", help="judge calls/s and CPU per call: otel-judge vs httpx, aiohttp"
    )
    extra.add_argument(
        "--startup", action="store_true", help="time to the first accepted Export; RSS idle and with traces held"
    )
    extra.add_argument("--startup-traces", type=int, default=50_000, help="--startup: traces held")
    extra.add_argument(
        "--pool-calls", type=int, default=2000, help="--judge-pool: calls per point (at least 3 x concurrency)"
    )
    extra.add_argument("--pool-concurrency", default="64,256,1024", help="--judge-pool: concurrencies, comma-separated")
    extra.add_argument(
        "--pool-latency", default="0.05,0.5", help="--judge-pool: fake judge latencies (s), comma-separated"
    )
    extra.add_argument(
        "--persistence",
        action="store_true",
        help="persistent queue on vs off: pass-through spans/s, and RSS while the downstream is down",
    )
    extra.add_argument("--persistence-down", type=float, default=60.0, help="--persistence: seconds of outage")
    extra.add_argument(
        "--persistence-rate", type=float, default=40.0, help="--persistence: requests/s offered during the outage"
    )
    args = parser.parse_args()
    if sum((args.sampling, args.judge_pool, args.startup, args.persistence)) > 1 and args.out:
        parser.error("--out with several separate measurements: run them one at a time")
    if not (args.sampling or args.judge_pool or args.startup or args.persistence):
        return run_plan(args)
    code = 0
    if args.startup:
        code = run_startup_measurement(args)
    if args.sampling and code == 0:
        code = run_sampling(args)
    if args.judge_pool and code == 0:
        code = run_pool(args)
    if args.persistence and code == 0:
        code = run_persistence_measurement(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
