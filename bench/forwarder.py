"""The reference: the least a Python OTLP/gRPC pass-through that looks at spans must do.

``python -m bench.forwarder --sink PORT`` listens on 127.0.0.1 (ephemeral port), prints
``ready <port>``, and for every ``TraceService/Export``: parses the request, walks every span's
attribute keys (as GenAI detection does), re-serialises it and forwards it to the sink with one
unary call, answering the sender once the sink has answered. No compression, no queue, no batching.
"""

from __future__ import annotations

import argparse
import asyncio

import grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench.lifecycle import until_terminated
from bench.payloads import TRACE_EXPORT_METHOD
from otel_judge import semconv

__all__ = ["count_genai_spans"]

_MARKERS = semconv.GENAI_MARKER_KEYS


def count_genai_spans(request: ExportTraceServiceRequest) -> int:
    """Walks every attribute key of every span; counts spans with a GenAI marker key."""
    genai = 0
    for rs in request.resource_spans:
        for ss in rs.scope_spans:
            for span in ss.spans:
                marked = False
                for kv in span.attributes:
                    if kv.key in _MARKERS:
                        marked = True
                genai += marked
    return genai


async def serve(sink_port: int) -> None:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{sink_port}", options=[("grpc.max_send_message_length", -1)])
    forward = channel.unary_unary(TRACE_EXPORT_METHOD)

    async def export(raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        request = ExportTraceServiceRequest.FromString(raw)
        count_genai_spans(request)
        try:
            await forward(request.SerializeToString(), timeout=10.0)
        except grpc.aio.AioRpcError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"sink: {exc.code().name}")
        return b""

    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 * 1024 * 1024), ("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "opentelemetry.proto.collector.trace.v1.TraceService",
                {"Export": grpc.unary_unary_rpc_method_handler(export)},
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await channel.channel_ready()
    await server.start()
    print(f"ready {port}", flush=True)
    await until_terminated()
    await server.stop(1.0)
    await channel.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sink", type=int, required=True, help="port of the sink on 127.0.0.1")
    args = parser.parse_args()
    asyncio.run(serve(args.sink))


if __name__ == "__main__":
    main()
