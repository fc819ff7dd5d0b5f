"""The load generator: sends pre-built OTLP trace requests for a fixed time, then reports.

``python -m bench.loadgen --target PORT --batch 64 ...`` builds its requests, connects, prints
``start <time_ns>`` and sends for ``warmup + measure + cooldown`` seconds, either

* closed loop (``--rate 0``): ``--concurrency`` callers each send the next request as soon as the
  previous one is answered (the most the target takes); or
* open loop (``--rate R``): R requests per second on a fixed schedule, at most ``--concurrency`` in
  flight (a send that finds no free slot is counted as skipped, not queued).

``--max-requests N`` also stops it after N requests were sent (a bound in count as well as time).

A request answered RESOURCE_EXHAUSTED (the target pushing back) is counted as rejected and the
caller backs off 10 ms; it is not re-sent. At the end it prints one JSON line: the measurement
window (wall-clock ns) and what was sent in it.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field

import grpc

from bench.payloads import TRACE_EXPORT_METHOD, Template, build_templates

__all__ = ["LoadResult"]

MAX_SECONDS = 180
_BACKOFF = 0.010
_CALL_TIMEOUT = 10.0


@dataclass
class LoadResult:
    window_from_ns: int
    window_to_ns: int
    spans_per_request: int
    calls: Counter[str] = field(default_factory=Counter)  # outcome -> calls (whole run)
    window_calls: Counter[str] = field(default_factory=Counter)  # outcome -> calls sent in the window
    window_spans_sent: int = 0  # spans in requests sent in the window and accepted
    round_trip_ms: list[float] = field(default_factory=list)  # accepted calls sent in the window
    skipped: int = 0  # open loop: no free slot at the scheduled time
    late: int = 0  # open loop: sent more than 5 ms after the scheduled time
    sent: int = 0  # requests sent (whole run)
    finished_ns: int = 0  # when the last request was sent

    def summary(self) -> dict[str, object]:
        rtt = sorted(self.round_trip_ms)

        def pct(q: float) -> float | None:
            return round(rtt[min(len(rtt) - 1, int(q * len(rtt)))], 3) if rtt else None

        return {
            "window_from_ns": self.window_from_ns,
            "window_to_ns": self.window_to_ns,
            "spans_per_request": self.spans_per_request,
            "calls": dict(self.calls),
            "window_calls": dict(self.window_calls),
            "window_spans_sent": self.window_spans_sent,
            "round_trip_ms": {"p50": pct(0.50), "p99": pct(0.99)},
            "skipped": self.skipped,
            "late": self.late,
            "sent": self.sent,
            "finished_ns": self.finished_ns,
            "process_cpu_s": time.process_time(),  # its own CPU time so far (it is gone when read from outside)
        }


class LoadGenerator:
    def __init__(
        self,
        templates: list[Template],
        call: grpc.aio.UnaryUnaryMultiCallable,
        result: LoadResult,
        max_requests: int = 0,
    ) -> None:
        self._templates = itertools.cycle(templates)
        self._call = call
        self._result = result
        self._max_requests = max_requests or None  # None: bounded in time only

    def _may_send(self) -> bool:
        return self._max_requests is None or self._result.sent < self._max_requests

    async def send_one(self) -> None:
        template = next(self._templates)
        buf = template.with_trace_ids(os.urandom(8 * template.trace_count))
        sent_ns = time.time_ns()
        self._result.finished_ns = sent_ns
        payload = template.set_times(buf, sent_ns)
        started = time.perf_counter()
        try:
            await self._call(payload, timeout=_CALL_TIMEOUT)
            outcome = "ok"
        except grpc.aio.AioRpcError as exc:
            outcome = "rejected" if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED else exc.code().name.lower()
        result = self._result
        result.calls[outcome] += 1
        if result.window_from_ns <= sent_ns < result.window_to_ns:
            result.window_calls[outcome] += 1
            if outcome == "ok":
                result.window_spans_sent += template.span_count
                result.round_trip_ms.append((time.perf_counter() - started) * 1e3)
        if outcome != "ok":
            await asyncio.sleep(_BACKOFF)

    async def closed_loop(self, stop_at: float, concurrency: int) -> None:
        async def caller() -> None:
            while time.perf_counter() < stop_at and self._may_send():
                self._result.sent += 1
                await self.send_one()

        await asyncio.gather(*(caller() for _ in range(concurrency)))

    async def open_loop(self, start: float, stop_at: float, rate: float, concurrency: int) -> None:
        in_flight: set[asyncio.Task[None]] = set()
        for i in itertools.count():
            due = start + i / rate
            if due >= stop_at or not self._may_send():
                break
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.005:
                self._result.late += 1
            if len(in_flight) >= concurrency:
                self._result.skipped += 1
                continue
            self._result.sent += 1
            task = asyncio.create_task(self.send_one())
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        if in_flight:
            await asyncio.gather(*in_flight)


async def run(args: argparse.Namespace) -> LoadResult:
    templates = build_templates(args.batch, args.templates, args.seed)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{args.target}", options=[("grpc.max_send_message_length", -1)])
    try:
        await asyncio.wait_for(channel.channel_ready(), 10.0)
        start_ns, start = time.time_ns(), time.perf_counter()
        result = LoadResult(
            window_from_ns=start_ns + int(args.warmup * 1e9),
            window_to_ns=start_ns + int((args.warmup + args.measure) * 1e9),
            spans_per_request=args.batch,
        )
        print(f"start {start_ns}", flush=True)
        generator = LoadGenerator(templates, channel.unary_unary(TRACE_EXPORT_METHOD), result, args.max_requests)
        stop_at = start + args.warmup + args.measure + args.cooldown
        if args.rate > 0:
            await generator.open_loop(start, stop_at, args.rate, args.concurrency)
        else:
            await generator.closed_loop(stop_at, args.concurrency)
        return result
    finally:
        await channel.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--target", type=int, required=True, help="port of the target on 127.0.0.1")
    parser.add_argument("--batch", type=int, default=64, help="spans per Export request (multiple of 4)")
    parser.add_argument("--concurrency", type=int, default=8, help="calls in flight at most")
    parser.add_argument("--rate", type=float, default=0.0, help="requests/s (open loop); 0 = closed loop")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds sent before the window")
    parser.add_argument("--measure", type=float, default=8.0, help="seconds of the measurement window")
    parser.add_argument("--cooldown", type=float, default=0.5, help="seconds sent after the window")
    parser.add_argument("--templates", type=int, default=16, help="distinct requests to cycle through")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-requests", type=int, default=0, help="stop after this many requests (0: no limit)")
    args = parser.parse_args()
    if not 0 < args.warmup + args.measure + args.cooldown <= MAX_SECONDS:
        parser.error(f"the run must last between 0 and {MAX_SECONDS} seconds")  # every load loop is bounded
    result = asyncio.run(run(args))
    print(json.dumps(result.summary()), flush=True)


if __name__ == "__main__":
    main()
