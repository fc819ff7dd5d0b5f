"""Health: the grpc.health.v1 service on the OTLP/gRPC port, and HTTP /healthz (liveness) and /readyz.

Readiness means "a new request would be accepted": started, and each exporter's backend reachable or
its queue not yet full. Real servers, real clients; the health messages are checked against a real
protobuf codec built from their descriptor (the receiver encodes them by hand).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from otel_judge.pipeline import Pipeline
from otel_judge.testing import SpanSink

from .conftest import pipeline_config, running
from .otlp_builders import RawClient, request, span

TRACE_SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
HEALTH = {"health": {"endpoint": "127.0.0.1:0"}}


def _health_messages() -> tuple[Any, Any]:
    """HealthCheckRequest / HealthCheckResponse classes built from their descriptor (grpc/health/v1)."""
    fdp = descriptor_pb2.FileDescriptorProto(name="test_health.proto", package="test.health.v1", syntax="proto3")
    req = fdp.message_type.add(name="HealthCheckRequest")
    req.field.add(name="service", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING)
    resp = fdp.message_type.add(name="HealthCheckResponse")
    enum = resp.enum_type.add(name="ServingStatus")
    for number, name in enumerate(["UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"]):
        enum.value.add(name=name, number=number)
    resp.field.add(
        name="status",
        number=1,
        type=descriptor_pb2.FieldDescriptorProto.TYPE_ENUM,
        type_name=".test.health.v1.HealthCheckResponse.ServingStatus",
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return (
        message_factory.GetMessageClass(pool.FindMessageTypeByName("test.health.v1.HealthCheckRequest")),
        message_factory.GetMessageClass(pool.FindMessageTypeByName("test.health.v1.HealthCheckResponse")),
    )


HealthCheckRequest, HealthCheckResponse = _health_messages()
SERVING, NOT_SERVING = 1, 2


class HealthClient:
    """grpc.health.v1.Health over a raw channel."""

    def __init__(self, port: int) -> None:
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        self._check = self.channel.unary_unary("/grpc.health.v1.Health/Check")
        self._watch = self.channel.unary_stream("/grpc.health.v1.Health/Watch")

    async def check(self, service: str = "") -> int:
        raw = await self._check(HealthCheckRequest(service=service).SerializeToString(), timeout=10)
        return int(HealthCheckResponse.FromString(raw).status)

    async def check_code(self, payload: bytes) -> grpc.StatusCode:
        try:
            await self._check(payload, timeout=10)
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        return grpc.StatusCode.OK

    async def watch_code(self) -> grpc.StatusCode:
        try:
            async for _ in self._watch(HealthCheckRequest().SerializeToString(), timeout=10):
                pass
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        return grpc.StatusCode.OK

    async def close(self) -> None:
        await self.channel.close()


async def probe(session: aiohttp.ClientSession, port: int | None, path: str) -> tuple[int, dict[str, Any]]:
    async with session.get(f"http://127.0.0.1:{port}{path}") as resp:
        return resp.status, await resp.json()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def wait_for_channel_state(pipeline: Pipeline, state: grpc.ChannelConnectivity, timeout: float = 10) -> None:
    """Wait, on the channel's own state-change notifications, until the OTLP exporter's channel is in ``state``."""
    channel = pipeline.exporter._channel  # type: ignore[attr-defined]

    async def watch() -> None:
        current = channel.get_state(try_to_connect=False)
        while current != state:
            await channel.wait_for_state_change(current)
            current = channel.get_state(try_to_connect=False)

    await asyncio.wait_for(watch(), timeout)


async def test_grpc_health_check_answers_on_the_otlp_port_without_credentials(
    sink: SpanSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Check: SERVING for the server ("") and the OTLP services, NOT_FOUND for others; Watch is UNIMPLEMENTED;
    a garbled request is INVALID_ARGUMENT. Probes need no credential even when auth is on."""
    monkeypatch.setenv("OTEL_JUDGE_TEST_HEALTH_KEY", "secret")
    receivers = {
        "otlp": {
            "protocols": {"grpc": {"endpoint": "127.0.0.1:0"}},
            "auth": {"keys_env": ["OTEL_JUDGE_TEST_HEALTH_KEY"]},
        }
    }
    async with running(pipeline_config(sink, None, receivers=receivers)) as pipeline:
        client = HealthClient(pipeline.grpc_port)
        statuses = {
            service: await client.check(service)
            for service in ("", TRACE_SERVICE, "opentelemetry.proto.collector.logs.v1.LogsService")
        }
        unknown = await client.check_code(HealthCheckRequest(service="no.such.Service").SerializeToString())
        garbled = await client.check_code(b"\x0a\xff\xff")
        watch = await client.watch_code()
        await client.close()

    assert statuses == {service: SERVING for service in statuses}
    assert (unknown, garbled, watch) == (
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.UNIMPLEMENTED,
    )


async def test_healthz_and_readyz_when_all_is_well(sink: SpanSink, session: aiohttp.ClientSession) -> None:
    """/healthz is 200 {"status": "ok"}; /readyz is 200 once started; before start the pipeline is not ready."""
    config = pipeline_config(sink, None, service=HEALTH)
    assert not Pipeline(config).readiness().ready
    async with running(config) as pipeline:
        live = await probe(session, pipeline.health_port, "/healthz")
        ready = await probe(session, pipeline.health_port, "/readyz")
        assert "health on 127.0.0.1:0 (/healthz, /readyz, /metrics)" in pipeline.describe()

    assert live == (200, {"status": "ok"})
    assert ready[0] == 200
    assert ready[1]["status"] == "ready"


async def test_exporters_without_a_remote_are_always_ready(
    sink: SpanSink, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """A file exporter has nothing to reach: ready as soon as started."""
    config = pipeline_config(sink, None, service=HEALTH, exporters={"file": {"path": str(tmp_path / "out.jsonl")}})
    async with running(config) as pipeline:
        status, body = await probe(session, pipeline.health_port, "/readyz")
    assert (status, body["status"]) == (200, "ready")


async def test_not_ready_when_the_backend_is_unreachable_and_the_queue_is_full(
    session: aiohttp.ClientSession, sink: SpanSink
) -> None:
    """Exporter pointed at a closed port: still ready while its queue has room (requests are accepted);
    once the queue is full, /readyz is 503 with the reason and the gRPC health check says NOT_SERVING.
    When the backend comes up on that port, the queue drains and otel-judge is ready again."""
    port = closed_port()
    config = pipeline_config(
        sink,
        None,
        service=HEALTH,
        exporters={
            "otlp": {
                "endpoint": f"127.0.0.1:{port}",
                "tls": {"insecure": True},
                "retry_on_failure": {"initial_interval": "10ms", "max_interval": "50ms"},
                "sending_queue": {"queue_size": 2, "num_consumers": 1},
            }
        },
    )
    async with running(config) as pipeline:
        client = RawClient(pipeline.grpc_port)
        health = HealthClient(pipeline.grpc_port)
        before_traffic = await probe(session, pipeline.health_port, "/readyz")

        await client.traces(request(span("first")))  # taken by the one sender, which keeps failing
        await wait_for_channel_state(pipeline, grpc.ChannelConnectivity.TRANSIENT_FAILURE)
        unreachable_with_room = await probe(session, pipeline.health_port, "/readyz")
        serving_with_room = await health.check()

        accepted, refused = ["first"], 0
        for i in range(4):  # fill the queue: the next requests are refused
            try:
                await client.traces(request(span(f"more-{i}")))
                accepted.append(f"more-{i}")
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                refused += 1
        full = await probe(session, pipeline.health_port, "/readyz")
        not_serving = await health.check(TRACE_SERVICE)
        live = await probe(session, pipeline.health_port, "/healthz")

        async with SpanSink(port=port) as backend:  # the backend comes (back) up
            received = await backend.wait_for_spans(len(accepted))
            recovered = await probe(session, pipeline.health_port, "/readyz")
            serving_again = await health.check(TRACE_SERVICE)
        await client.close()
        await health.close()

    assert before_traffic[0] == 200
    assert unreachable_with_room[0] == 200
    assert "TRANSIENT_FAILURE" in unreachable_with_room[1]["reason"]
    assert serving_with_room == SERVING
    assert refused == 2
    assert full[0] == 503
    assert full[1]["status"] == "not ready"
    assert "unreachable (TRANSIENT_FAILURE)" in full[1]["reason"]
    assert "queue is full (2/2)" in full[1]["reason"]
    assert not_serving == NOT_SERVING
    assert live == (200, {"status": "ok"})
    assert sorted(r.span.name for r in received) == sorted(accepted)
    assert recovered[0] == 200
    assert serving_again == SERVING
