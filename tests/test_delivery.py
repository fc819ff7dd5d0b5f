"""Delivery guarantees end to end: a downstream outage, a crash (SIGKILL) with the persistent queue,
back-pressure against the real OTel SDK exporter, and SIGTERM while judging."""

from __future__ import annotations

import asyncio
import logging
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from prometheus_client.parser import text_string_to_metric_families

from otel_judge import semconv
from otel_judge.cli import _start_unless_stopped
from otel_judge.component import FakeClock, Settings
from otel_judge.pipeline import Pipeline
from otel_judge.storage import DATABASE
from otel_judge.testing import FakeJudge, JudgeAnswer, JudgeRequest, SpanSink

from .conftest import SdkClient, pipeline_config, running
from .otlp_builders import RawClient, genai_span, request, span
from .test_cli import _env, _free_port, _start
from .test_health import wait_for_channel_state

STATUS = semconv.OTEL_JUDGE_EVALUATION_STATUS
JUDGED = '{"score": 80, "explanation": "fine"}'


def keys(req: ExportTraceServiceRequest) -> Iterator[tuple[str, str]]:
    for rs in req.resource_spans:
        for ss in rs.scope_spans:
            for s in ss.spans:
                yield s.trace_id.hex(), s.span_id.hex()


def stored_rows(directory: Path) -> int:
    with sqlite3.connect(directory / DATABASE) as conn:
        return int(conn.execute("SELECT count(*) FROM entries").fetchone()[0])


# --------------------------------------------------------------------------- downstream outage


@pytest.mark.parametrize("persistent", [False, True], ids=["in-memory", "persistent"])
async def test_every_span_of_a_20000_span_stream_arrives_across_a_downstream_outage(
    tmp_path: Path, persistent: bool
) -> None:
    """20,000 spans (200 requests, a judged LLM call in every tenth); the sink is stopped after the first
    half, the second half is accepted while it is down, the outage lasts 20 s on the exporter's clock
    (retry_on_failure.max_elapsed_time 30 s), the sink comes back on the same port: every span arrives."""
    clock = FakeClock()
    settings = Settings(clock=clock)
    requests = [
        request(*([genai_span(f"answer {i}")] if i % 10 == 0 else []), *(span(f"s{i}-{j}") for j in range(100)))
        for i in range(200)
    ]
    for i in range(0, 200, 10):  # 100 spans each: the LLM call replaces a plain span
        del requests[i].resource_spans[0].scope_spans[0].spans[-1]
    sent = {k for r in requests for k in keys(r)}
    async with FakeJudge(lambda r: JUDGED) as judge, SpanSink() as first_sink:
        second_sink = SpanSink(port=first_sink.port or 0)
        retry = {"initial_interval": "10ms", "max_interval": "50ms", "max_elapsed_time": "30s"}
        exporters = {"otlp": {"endpoint": first_sink.endpoint, "tls": {"insecure": True}, "retry_on_failure": retry}}
        storage = {"storage": {"directory": str(tmp_path)}} if persistent else {}
        config = pipeline_config(first_sink, judge, exporters=exporters, **storage)
        async with running(config, settings, tick=None) as pipeline:
            client = RawClient(pipeline.grpc_port)

            async def send(batch: list[ExportTraceServiceRequest]) -> None:
                for start in range(0, len(batch), 4):  # 4 requests in flight
                    await asyncio.gather(*(client.traces(r) for r in batch[start : start + 4]))

            await send(requests[:100])
            await first_sink.stop()  # mid-stream: what the exporter has in flight fails
            await send(requests[100:])  # accepted while the downstream is down
            await wait_for_channel_state(pipeline, grpc.ChannelConnectivity.TRANSIENT_FAILURE)
            clock.advance(20.0)
            await second_sink.start()  # back on the same port (and up until otel-judge has shut down)
            await second_sink.wait_for(
                lambda: {r.key for r in first_sink.spans() + second_sink.spans()} >= sent, timeout=60
            )
            received = first_sink.spans() + second_sink.spans()
            await client.close()
        await second_sink.stop()

    assert {r.key for r in received} == sent
    assert len(second_sink.spans()) > 0, "the outage happened mid-stream"
    judged = [r for r in received if r.span.name == "chat gpt-4o-mini"]
    assert len({r.key for r in judged}) == 20
    assert {r.attributes[STATUS] for r in judged} == {"evaluated"}
    assert settings.telemetry.value("otel_judge.exporter.retries") > 0
    assert settings.telemetry.value("otel_judge.exporter.failed", exporter="otlp", signal="traces") == 0
    if persistent:
        assert stored_rows(tmp_path) == 0


# --------------------------------------------------------------------------- crash


def _metric(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


async def _drain(stream: asyncio.StreamReader | None, lines: list[str], seen: asyncio.Condition) -> None:
    """Read a child's stderr to the end (a full pipe would block it), keeping the lines."""
    assert stream is not None
    while line := await stream.readline():
        async with seen:
            lines.append(line.decode())
            seen.notify_all()


def _serve_config(
    path: Path, *, port: int, sink_port: int, judge: FakeJudge, directory: Path, health: int, grace: str = "2s"
) -> Path:
    path.write_text(f"""
receivers: {{otlp: {{protocols: {{grpc: {{endpoint: "127.0.0.1:{port}"}}}}}}}}
exporters:
  otlp:
    endpoint: "127.0.0.1:{sink_port}"
    tls: {{insecure: true}}
    retry_on_failure: {{initial_interval: 20ms, max_interval: 100ms, max_elapsed_time: 0s}}
sampling:
  policies: [{{name: all, type: always_sample}}]
  decision_wait: 0s
judge:
  model: {judge.model}
  api_base: {judge.api_base}
  api_key: ${{env:JUDGE_KEY}}
storage: {{directory: "{directory}"}}
service: {{shutdown_grace: {grace}, health: {{endpoint: "127.0.0.1:{health}"}}, logs: {{level: info}}}}
""")
    return path


@pytest.mark.slow
async def test_sigkill_mid_stream_loses_no_acknowledged_span(tmp_path: Path) -> None:
    """Persistent queue on, the downstream unreachable and the judge hanging: 4 senders stream requests
    of 50 spans (one an LLM call) and otel-judge is SIGKILLed mid-stream. Restarted on the same directory
    with the downstream up, every span it acknowledged arrives (the LLM calls judged), what it replayed
    is counted, and once all is delivered the queue on disk is empty."""
    port, sink_port, health = _free_port(), _free_port(), _free_port()
    directory = tmp_path / "queue"
    hang = True

    async def script(req: JudgeRequest) -> JudgeAnswer:
        return JudgeAnswer(hang=True) if hang else JudgeAnswer(text=JUDGED)

    acked: set[tuple[str, str]] = set()
    genai: set[tuple[str, str]] = set()
    enough = asyncio.Event()
    killed = False
    async with FakeJudge(script) as judge:
        config = _serve_config(
            tmp_path / "otel-judge.yaml",
            port=port,
            sink_port=sink_port,
            judge=judge,
            directory=directory,
            health=health,
        )
        env = _env(JUDGE_KEY="sk-test")
        proc, _ = await _start(["serve", "--config", str(config)], env, tmp_path)
        lines: list[str] = []
        seen = asyncio.Condition()
        drain = asyncio.create_task(_drain(proc.stderr, lines, seen))

        async def sender(n: int) -> None:
            client = RawClient(port)
            try:
                for i in range(100):  # bounded; the kill ends it long before
                    req = request(genai_span(f"answer {n}-{i}"), *(span(f"s{n}-{i}-{j}") for j in range(49)))
                    try:
                        await client.traces(req)
                    except grpc.aio.AioRpcError:
                        assert killed, "refused before the kill"
                        return
                    acked.update(keys(req))
                    genai.update(list(keys(req))[:1])
                    if len(acked) >= 3000:
                        enough.set()
            finally:
                await client.close()

        senders = [asyncio.create_task(sender(n)) for n in range(4)]
        await asyncio.wait_for(enough.wait(), 60)
        killed = True
        proc.kill()  # SIGKILL: no shutdown, nothing flushed
        await proc.wait()
        await asyncio.gather(*senders)
        await drain
        hang = False
        judge.release()

        async with SpanSink(port=sink_port) as sink:
            proc, _ = await _start(["serve", "--config", str(config)], env, tmp_path)
            drain = asyncio.create_task(_drain(proc.stderr, lines, seen))
            await sink.wait_for(lambda: {r.key for r in sink.spans()} >= acked, timeout=60)
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"http://127.0.0.1:{health}/metrics") as response,
            ):
                metrics = await response.text()
            proc.send_signal(signal.SIGTERM)
            rc = await asyncio.wait_for(proc.wait(), 30)
            await drain
            received = sink.spans()

    assert rc == 0, "".join(lines[-20:])
    assert proc.returncode == 0
    by_key = {r.key: r for r in received}
    assert {by_key[k].attributes.get(STATUS) for k in genai} == {"evaluated"}
    replayed = _metric(metrics, "otel_judge_storage_replayed_total", signal="traces")
    assert replayed >= len(acked)
    duplicates = len(received) - len(by_key)
    assert duplicates <= replayed
    assert stored_rows(directory) == 0


# --------------------------------------------------------------------------- back-pressure


class _Refusals(logging.Handler):
    """Sets an event when the OTel SDK exporter logs that it will retry a RESOURCE_EXHAUSTED."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.loop = loop
        self.refused = asyncio.Event()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "RESOURCE_EXHAUSTED" in message:
            self.messages.append(message)
            self.loop.call_soon_threadsafe(self.refused.set)


async def test_a_full_queue_pushes_back_and_the_sdk_exporter_retry_gets_through(sink: SpanSink) -> None:
    """Backend down, exporter queue full: the real OTel SDK OTLP exporter is answered RESOURCE_EXHAUSTED,
    waits the retry hint otel-judge gave (1 s) and, the backend being back, its retry is accepted."""
    sink.fail_next(100_000)
    config = pipeline_config(
        sink,
        None,
        exporters={
            "otlp": {
                "endpoint": sink.endpoint,
                "tls": {"insecure": True},
                "retry_on_failure": {"initial_interval": "10ms", "max_interval": "20ms"},
                "sending_queue": {"queue_size": 1, "num_consumers": 1},
            }
        },
    )
    settings = Settings()
    handler = _Refusals(asyncio.get_running_loop())
    sdk_logger = logging.getLogger("opentelemetry.exporter.otlp.proto.grpc.exporter")
    sdk_logger.addHandler(handler)
    try:
        async with running(config, settings) as pipeline:
            client = RawClient(pipeline.grpc_port)
            for i in range(5):  # fill the queue: one request is being retried, one waits, the next is refused
                try:
                    await client.traces(request(span(f"filler-{i}")))
                except grpc.aio.AioRpcError as exc:
                    assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                    break
            else:
                pytest.fail("the queue never filled")
            sdk = SdkClient([f"127.0.0.1:{pipeline.grpc_port}"])
            with sdk.tracer.start_as_current_span("from the sdk"):
                pass
            flushed = asyncio.create_task(sdk.flush())
            await asyncio.wait_for(handler.refused.wait(), 15)
            sink.stop_failing()
            await flushed
            await sink.wait_for(lambda: "from the sdk" in {r.span.name for r in sink.spans()})
            sdk.close()
            await client.close()
    finally:
        sdk_logger.removeHandler(handler)

    assert "retrying in 1.00s" in handler.messages[0], handler.messages
    assert (
        settings.telemetry.value("otel_judge.receiver.requests", transport="grpc", signal="traces", outcome="refused")
        >= 2
    )


# --------------------------------------------------------------------------- SIGTERM


@pytest.mark.slow
async def test_sigterm_while_judging_exports_everything_held_within_the_grace(tmp_path: Path) -> None:
    """SIGTERM with two judgments in flight (persistent queue on): the one the judge finishes during the
    grace goes out evaluated, the one it never finishes goes out with status shutdown, the plain span
    was out already; the process exits 0 within the grace, leaving nothing on disk."""
    port, health = _free_port(), _free_port()
    directory = tmp_path / "queue"
    finish = asyncio.Event()
    calls = asyncio.Condition()
    arrived: list[str] = []

    async def script(req: JudgeRequest) -> JudgeAnswer:
        async with calls:
            arrived.append(req.response_text or "")
            calls.notify_all()
        if req.response_text == "SLOW":
            return JudgeAnswer(hang=True)
        await finish.wait()
        return JudgeAnswer(text=JUDGED)

    async with SpanSink() as sink, FakeJudge(script) as judge:
        config = _serve_config(
            tmp_path / "otel-judge.yaml",
            port=port,
            sink_port=sink.port or 0,
            judge=judge,
            directory=directory,
            health=health,
            grace="4s",
        )
        proc, _ = await _start(["serve", "--config", str(config)], _env(JUDGE_KEY="sk-test"), tmp_path)
        lines: list[str] = []
        seen = asyncio.Condition()
        drain = asyncio.create_task(_drain(proc.stderr, lines, seen))
        client = RawClient(port)
        fast, slow = genai_span("FAST"), genai_span("SLOW")
        await client.traces(request(fast, slow, span("db")))
        await sink.wait_for_spans(1)
        async with calls:
            await asyncio.wait_for(calls.wait_for(lambda: len(arrived) == 2), 30)
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        async with seen:
            await asyncio.wait_for(seen.wait_for(lambda: any("shutting down" in line for line in lines)), 10)
        finish.set()  # the fast judgment completes during the grace
        rc = await asyncio.wait_for(proc.wait(), 30)
        took = time.monotonic() - signalled
        await drain
        await client.close()
        judge.release()

    assert rc == 0, "".join(lines[-20:])
    assert took < 4.0, f"exit took {took:.1f}s, more than the grace"
    statuses = {r.span.span_id: r.attributes.get(STATUS) for r in sink.spans()}
    assert statuses[fast.span_id] == "evaluated"
    assert statuses[slow.span_id] == "shutdown"
    assert len(statuses) == 3
    assert stored_rows(directory) == 0


class _Events(logging.Handler):
    """Sets an event when otel-judge logs the state change ``name`` (its structured ``event`` field)."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name_ = name
        self.seen = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "event", None) == self.name_:
            self.seen.set()


async def test_a_signal_during_a_long_replay_stops_the_start_and_keeps_the_queue(
    sink: SpanSink, tmp_path: Path
) -> None:
    """Backend down, more requests left on disk than the exporter queue holds: the start waits in the
    replay, receivers closed. A signal then ends the start, shuts down within the grace, and every
    request is still on disk for the next start."""
    sink.fail_next(100_000)

    def config(queue_size: int) -> Any:
        retry = {"initial_interval": "10ms", "max_interval": "20ms", "max_elapsed_time": "0s"}
        queue = {"queue_size": queue_size, "num_consumers": 1}
        exporter = {"endpoint": sink.endpoint, "tls": {"insecure": True}, "retry_on_failure": retry}
        return pipeline_config(
            sink,
            None,
            exporters={"otlp": exporter | {"sending_queue": queue}},
            storage={"directory": str(tmp_path)},
            service={"shutdown_grace": "500ms"},
        )

    async with running(config(queue_size=4)) as first:
        client = RawClient(first.grpc_port)
        for i in range(4):
            await client.traces(request(span(f"old-{i}")))
        await client.close()
        await first.shutdown(grace=0.2)
    left = stored_rows(tmp_path)

    pipeline = Pipeline(config(queue_size=1), Settings())
    replaying = _Events("storage.replaying")
    logger = pipeline.settings.logger
    logger.addHandler(replaying)
    try:
        stop = asyncio.Event()
        started = asyncio.create_task(_start_unless_stopped(pipeline, stop, logger))
        await asyncio.wait_for(replaying.seen.wait(), 15)
        stop.set()
        outcome = await asyncio.wait_for(started, 15)
    finally:
        logger.removeHandler(replaying)

    assert left == 4
    assert outcome is False
    assert pipeline.grpc_port is None, "the receivers never opened"
    assert stored_rows(tmp_path) == 4
