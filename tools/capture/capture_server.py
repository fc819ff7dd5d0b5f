"""OTLP/gRPC capture server (127.0.0.1, ephemeral port).

TraceService / LogsService / MetricsService `Export` are served by raw-bytes generic handlers: each request
is written exactly as received to `<signal>-NNN.pb`, plus `<signal>-NNN.json` =
google.protobuf.json_format.MessageToJson of it (proto3 JSON: camelCase, base64 ids, int64 as strings).

Needs grpcio, protobuf and opentelemetry-proto (requirements/harness.txt). Standalone:
`python capture_server.py --out DIR [--port N]`.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from concurrent import futures
from typing import Any

import grpc
from google.protobuf.json_format import MessageToJson
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

SERVICES = {
    "opentelemetry.proto.collector.trace.v1.TraceService": ("traces", ExportTraceServiceRequest),
    "opentelemetry.proto.collector.logs.v1.LogsService": ("logs", ExportLogsServiceRequest),
    "opentelemetry.proto.collector.metrics.v1.MetricsService": ("metrics", ExportMetricsServiceRequest),
}


class CaptureServer:
    def __init__(self, port: int = 0) -> None:
        self._lock = threading.Lock()
        self._out: str | None = None
        self._counters: dict[str, int] = {}
        self.last_received = 0.0
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        handlers = []
        for service, (signal, msg_cls) in SERVICES.items():
            handlers.append(
                grpc.method_handlers_generic_handler(
                    service,
                    {
                        "Export": grpc.unary_unary_rpc_method_handler(
                            self._make_handler(signal, msg_cls),
                            request_deserializer=None,  # raw bytes
                            response_serializer=None,
                        )
                    },
                )
            )
        self.server.add_generic_rpc_handlers(handlers)
        self.port = self.server.add_insecure_port(f"127.0.0.1:{port}")
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def _make_handler(self, signal: str, msg_cls: Any) -> Any:
        def handle(raw: bytes, context: grpc.ServicerContext) -> bytes:
            with self._lock:
                self.last_received = time.monotonic()
                out = self._out
                if out is None:
                    return b""
                n = self._counters.get(signal, 0) + 1
                self._counters[signal] = n
                base = os.path.join(out, f"{signal}-{n:03d}")
                with open(base + ".pb", "wb") as f:
                    f.write(raw)
                msg = msg_cls.FromString(raw)
                with open(base + ".json", "w", encoding="utf-8") as f:
                    f.write(MessageToJson(msg, ensure_ascii=False))
            return b""  # empty Export*ServiceResponse (full success)

        return handle

    def set_output(self, out: str | None) -> None:
        with self._lock:
            self._out = out
            self._counters = {}

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counters)

    def start(self) -> CaptureServer:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop(grace=1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=4317)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    srv = CaptureServer(args.port).start()
    srv.set_output(args.out)
    print(srv.endpoint, flush=True)
    srv.server.wait_for_termination()


if __name__ == "__main__":
    main()
