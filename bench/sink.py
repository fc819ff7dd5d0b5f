"""The next hop: a lean OTLP/gRPC trace sink that counts spans and measures their delay.

``python -m bench.sink`` listens on 127.0.0.1 (``--port``, default ephemeral), prints ``ready <port>`` and serves

* ``TraceService/Export`` (raw bytes): per request, the arrival time and, per span, the delay
  ``arrival - end_time_unix_nano`` (the load generator stamps the send time there), split into
  plain spans, GenAI spans (kind CLIENT) and judged GenAI spans (``otel_judge.evaluation.status``
  ``evaluated``), and the count of each status;
* ``/bench.Sink/Stats``: JSON ``{"from_ns": .., "to_ns": ..}`` in, JSON statistics of the requests
  that arrived in that window out;
* ``/bench.Sink/Progress``: running totals since start (spans, plain spans, GenAI spans, requests),
  cheap enough to poll every second during a long run.

Delays are kept as (delay, span count) pairs per distinct send time, not one sample per span.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench.lifecycle import until_terminated
from bench.payloads import GENAI_KIND
from otel_judge import semconv

__all__ = ["PROGRESS_METHOD", "STATS_METHOD", "Arrival", "SpanRecorder", "weighted_percentiles"]

STATS_METHOD = "/bench.Sink/Stats"
PROGRESS_METHOD = "/bench.Sink/Progress"
_STATUS_KEY = semconv.OTEL_JUDGE_EVALUATION_STATUS
_EVALUATED = "evaluated"
_NO_STATUS = "(none)"


@dataclass(slots=True)
class Arrival:
    """What one received request contained."""

    arrival_ns: int
    spans: int
    genai: int
    size: int
    statuses: Counter[str] = field(default_factory=Counter)
    plain_sent: Counter[int] = field(default_factory=Counter)  # send time -> plain spans
    genai_sent: Counter[int] = field(default_factory=Counter)  # send time -> GenAI spans (any status)
    evaluated_sent: Counter[int] = field(default_factory=Counter)  # send time -> judged spans


class SpanRecorder:
    def __init__(self) -> None:
        self.arrivals: list[Arrival] = []
        self.total_spans = 0
        self.total_genai = 0

    def record(self, raw: bytes) -> None:
        arrival_ns = time.time_ns()
        request = ExportTraceServiceRequest.FromString(raw)
        entry = Arrival(arrival_ns, 0, 0, len(raw))
        plain, genai, evaluated, statuses = entry.plain_sent, entry.genai_sent, entry.evaluated_sent, entry.statuses
        for rs in request.resource_spans:
            for ss in rs.scope_spans:
                spans = ss.spans
                entry.spans += len(spans)
                for span in spans:
                    if span.kind != GENAI_KIND:
                        plain[span.end_time_unix_nano] += 1
                        continue
                    entry.genai += 1
                    genai[span.end_time_unix_nano] += 1
                    status = _NO_STATUS
                    for kv in span.attributes:
                        if kv.key == _STATUS_KEY:
                            status = kv.value.string_value
                            break
                    statuses[status] += 1
                    if status == _EVALUATED:
                        evaluated[span.end_time_unix_nano] += 1
        self.arrivals.append(entry)
        self.total_spans += entry.spans
        self.total_genai += entry.genai

    def progress(self) -> dict[str, Any]:
        return {
            "time_ns": time.time_ns(),
            "requests": len(self.arrivals),
            "spans": self.total_spans,
            "genai_spans": self.total_genai,
            "plain_spans": self.total_spans - self.total_genai,
        }

    def stats(self, from_ns: int, to_ns: int) -> dict[str, Any]:
        window = [a for a in self.arrivals if from_ns <= a.arrival_ns < to_ns]
        statuses: Counter[str] = Counter()
        plain: list[tuple[int, int]] = []
        genai: list[tuple[int, int]] = []
        evaluated: list[tuple[int, int]] = []
        for a in window:
            statuses.update(a.statuses)
            plain.extend((a.arrival_ns - sent, n) for sent, n in a.plain_sent.items())
            genai.extend((a.arrival_ns - sent, n) for sent, n in a.genai_sent.items())
            evaluated.extend((a.arrival_ns - sent, n) for sent, n in a.evaluated_sent.items())
        return {
            "requests": len(window),
            "bytes": sum(a.size for a in window),
            "spans": sum(a.spans for a in window),
            "genai_spans": sum(a.genai for a in window),
            "statuses": dict(statuses),
            "plain_delay_ms": weighted_percentiles(plain),
            "genai_delay_ms": weighted_percentiles(genai),
            "evaluated_delay_ms": weighted_percentiles(evaluated),
            "total_requests": len(self.arrivals),
        }


def weighted_percentiles(samples: list[tuple[int, int]]) -> dict[str, float] | None:
    """p50/p90/p99/max in ms of (delay ns, weight) pairs; None when empty."""
    total = sum(n for _, n in samples)
    if not total:
        return None
    samples.sort()
    marks = {"p50": 0.50, "p90": 0.90, "p99": 0.99}
    out: dict[str, float] = {}
    seen = 0
    pending = sorted(marks.items(), key=lambda item: item[1])
    for delay, n in samples:
        seen += n
        while pending and seen >= pending[0][1] * total:
            out[pending.pop(0)[0]] = round(delay / 1e6, 3)
    out["max"] = round(samples[-1][0] / 1e6, 3)
    out["spans"] = total
    return out


async def serve(port: int, max_recv_mib: int) -> None:
    recorder = SpanRecorder()

    async def export(raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        recorder.record(raw)
        return b""  # an empty ExportTraceServiceResponse

    async def stats(raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        query = json.loads(raw)
        return json.dumps(recorder.stats(int(query["from_ns"]), int(query["to_ns"]))).encode()

    async def progress(raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return json.dumps(recorder.progress()).encode()

    server = grpc.aio.server(
        options=[("grpc.max_receive_message_length", max_recv_mib * 1024 * 1024), ("grpc.so_reuseport", 0)]
    )
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "opentelemetry.proto.collector.trace.v1.TraceService",
                {"Export": grpc.unary_unary_rpc_method_handler(export)},
            ),
            grpc.method_handlers_generic_handler(
                "bench.Sink",
                {
                    "Stats": grpc.unary_unary_rpc_method_handler(stats),
                    "Progress": grpc.unary_unary_rpc_method_handler(progress),
                },
            ),
        )
    )
    port = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print(f"ready {port}", flush=True)
    await until_terminated()
    await server.stop(1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any free one)")
    parser.add_argument("--max-recv-mib", type=int, default=64, help="largest request accepted (MiB)")
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.max_recv_mib))


if __name__ == "__main__":
    main()
