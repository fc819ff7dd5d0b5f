"""Pipeline behaviour under holds, overload, bad input, back-pressure, retries, duplicates, shutdown."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from otel_judge import semconv
from otel_judge.component import FakeClock, Settings
from otel_judge.testing import FakeJudge, JudgeAnswer, JudgeRequest, SpanSink

from .conftest import pipeline_config, running
from .otlp_builders import RawClient, genai_span, request, span

STATUS = semconv.OTEL_JUDGE_EVALUATION_STATUS


class Gate:
    """A fake-judge script that holds every request until the test opens the gate."""

    def __init__(self, reply: str = "70") -> None:
        self.reply = reply
        self.opened = asyncio.Event()
        self.arrived = asyncio.Condition()
        self.count = 0

    async def __call__(self, request: JudgeRequest) -> JudgeAnswer:
        async with self.arrived:
            self.count += 1
            self.arrived.notify_all()
        await self.opened.wait()
        return JudgeAnswer(text=self.reply)

    async def wait_for_calls(self, n: int) -> None:
        async with self.arrived:
            await asyncio.wait_for(self.arrived.wait_for(lambda: self.count >= n), 15)


async def test_held_span_is_exported_with_timeout_when_max_hold_passes(sink: SpanSink) -> None:
    """Driven by a fake clock: the span waits max_hold for its judge, then goes out with status timeout."""
    gate = Gate()
    clock = FakeClock()
    settings = Settings(clock=clock)
    async with FakeJudge(gate) as judge:
        config = pipeline_config(sink, judge, judge={"max_hold": "10s", "timeout": "60s"})
        async with running(config, settings, tick=None) as pipeline:
            client = RawClient(pipeline.grpc_port)
            await client.traces(request(genai_span(), span("db query")))
            await pipeline.processor.tick()  # decision_wait is 0: decide now, judging starts
            await gate.wait_for_calls(1)
            await sink.wait_for_spans(1)  # the non-GenAI span is not held back
            await pipeline.processor.tick()
            assert len(sink.spans()) == 1, "not expired yet"

            clock.advance(10.5)
            await pipeline.processor.tick()
            received = await sink.wait_for_spans(2)
            gate.opened.set()
            await client.close()

    genai = [r for r in received if r.span.name.startswith("chat")]
    assert len(genai) == 1
    assert genai[0].attributes[STATUS] == "timeout"
    assert "gen_ai.evaluation.quality.score.value" not in genai[0].attributes


async def test_late_result_after_max_hold_is_counted_not_written(sink: SpanSink) -> None:
    """With outputs.late_results off, a late judgment is only counted (tests/test_outputs.py: on)."""
    gate = Gate()
    clock = FakeClock()
    settings = Settings(clock=clock)
    async with FakeJudge(gate) as judge:
        config = pipeline_config(sink, judge, judge={"max_hold": "1s"}, outputs={"late_results": False})
        async with running(config, settings, tick=None) as pipeline:
            client = RawClient(pipeline.grpc_port)
            await client.traces(request(genai_span()))
            await pipeline.processor.tick()
            await gate.wait_for_calls(1)
            clock.advance(2)
            await pipeline.processor.tick()
            await sink.wait_for_spans(1)
            gate.opened.set()
            await pipeline.shutdown(5)
            await client.close()

    assert settings.telemetry.value("otel_judge.late_results") == 1
    assert len(sink.spans()) == 1, "the late result does not send the span again"


async def test_full_judge_queue_skips_the_judgment_not_the_span(sink: SpanSink) -> None:
    """One worker, queue of one: the third GenAI span of a request is skipped_overload, still exported."""
    gate = Gate()
    async with FakeJudge(gate) as judge:
        config = pipeline_config(sink, judge, judge={"max_concurrency": 1, "queue_size": 1})
        async with running(config) as pipeline:
            client = RawClient(pipeline.grpc_port)
            await client.traces(request(genai_span("A1"), genai_span("A2"), genai_span("A3")))
            received = await sink.wait_for_spans(2)
            statuses = sorted(r.attributes[STATUS] for r in received)
            gate.opened.set()
            received = await sink.wait_for_spans(3)
            await client.close()

    assert statuses == ["skipped_overload", "skipped_overload"]
    assert sorted(r.attributes[STATUS] for r in received) == ["evaluated", "skipped_overload", "skipped_overload"]


async def test_max_held_spans_bounds_memory_without_losing_spans(sink: SpanSink) -> None:
    gate = Gate()
    async with FakeJudge(gate) as judge:
        config = pipeline_config(sink, judge, sampling={"max_held_spans": 2})
        async with running(config) as pipeline:
            client = RawClient(pipeline.grpc_port)
            await client.traces(request(*(genai_span(f"A{i}") for i in range(5))))
            held_now = pipeline.processor.held_count
            gate.opened.set()
            received = await sink.wait_for_spans(5)
            await client.close()

    assert held_now == 2
    assert sorted(r.attributes[STATUS] for r in received).count("skipped_overload") == 3


@pytest.mark.parametrize("signal", ["traces", "logs"])
async def test_malformed_request_gets_invalid_argument(sink: SpanSink, signal: str) -> None:
    """Garbage bytes: INVALID_ARGUMENT, nothing forwarded, the server keeps serving."""
    config = pipeline_config(sink, None)
    async with running(config) as pipeline:
        client = RawClient(pipeline.grpc_port)
        send = client.traces if signal == "traces" else client.logs
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await send(b"\xff\xff\xff\xff not protobuf")
        await client.traces(request(span("after")))
        await sink.wait_for_spans(1)
        await client.close()

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [r.span.name for r in sink.spans()] == ["after"]


async def test_without_a_judge_requests_are_forwarded_byte_for_byte(sink: SpanSink) -> None:
    """Judging off: GenAI spans are not annotated; the exact request reaches the backend."""
    sent = request(genai_span(), span("db"))
    config = pipeline_config(sink, None)
    async with running(config) as pipeline:
        client = RawClient(pipeline.grpc_port)
        await client.traces(sent)
        await sink.wait_for_spans(2)
        await client.close()

    assert sink.trace_requests == [sent]


async def test_logs_are_forwarded_unchanged(sink: SpanSink) -> None:
    sent = ExportLogsServiceRequest()
    record = sent.resource_logs.add().scope_logs.add().log_records.add()
    record.event_name = "gen_ai.client.inference.operation.details"
    record.trace_id, record.span_id = b"\x01" * 16, b"\x02" * 8
    record.body.string_value = "hello"
    config = pipeline_config(sink, None)
    async with running(config) as pipeline:
        client = RawClient(pipeline.grpc_port)
        await client.logs(sent)
        await sink.wait_for(lambda: bool(sink.log_requests))
        await client.close()

    assert sink.log_requests == [sent]


async def test_backend_outage_is_retried_and_nothing_is_lost(sink: SpanSink) -> None:
    """UNAVAILABLE twice (with a RetryInfo hint): the exporter retries; every span arrives once."""
    sink.fail_next(2, grpc.StatusCode.UNAVAILABLE, retry_after=0.01)
    settings = Settings()
    config = pipeline_config(sink, None)
    async with running(config, settings) as pipeline:
        client = RawClient(pipeline.grpc_port)
        await client.traces(request(span("a"), span("b")))
        received = await sink.wait_for_spans(2)
        await client.close()

    assert sorted(r.span.name for r in received) == ["a", "b"]
    assert settings.telemetry.value("otel_judge.exporter.retries") == 2


async def test_full_export_queue_pushes_back_with_resource_exhausted(sink: SpanSink) -> None:
    """Backend down and queue full: the receiver answers RESOURCE_EXHAUSTED instead of accepting and dropping;
    everything it did accept arrives once the backend is back."""
    sink.fail_next(10_000, grpc.StatusCode.UNAVAILABLE, retry_after=0.02)
    config = pipeline_config(
        sink,
        None,
        exporters={
            "otlp": {
                "endpoint": sink.endpoint,
                "tls": {"insecure": True},
                "sending_queue": {"queue_size": 1, "num_consumers": 1},
            }
        },
    )
    accepted, refused = [], []
    async with running(config) as pipeline:
        client = RawClient(pipeline.grpc_port)
        for i in range(4):
            try:
                await client.traces(request(span(f"s{i}")))
                accepted.append(f"s{i}")
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                refused.append(f"s{i}")
        sink.stop_failing()
        received = await sink.wait_for_spans(len(accepted))
        await client.close()

    assert refused, "a full queue must push back"
    assert sorted(r.span.name for r in received) == accepted


async def test_the_same_span_delivered_three_times_is_judged_once(sink: SpanSink) -> None:
    """An OTLP client retry delivers a span again while it is being judged: one judge call, same attributes."""
    gate = Gate(reply='{"score": 91, "explanation": "fine"}')
    duplicate = genai_span("ANSWER")
    async with FakeJudge(gate) as judge:
        config = pipeline_config(sink, judge)
        async with running(config) as pipeline:
            client = RawClient(pipeline.grpc_port)
            for _ in range(3):
                await client.traces(request(duplicate))
            await gate.wait_for_calls(1)
            gate.opened.set()
            received = await sink.wait_for_spans(3)
            await client.close()

    assert gate.count == 1
    assert len(judge.requests) == 1
    assert all(r.span == received[0].span for r in received)
    assert received[0].attributes["gen_ai.evaluation.quality.score.value"] == 91


async def test_shutdown_exports_everything_held_with_status_shutdown(sink: SpanSink) -> None:
    """SIGTERM-style shutdown while the judge hangs: held spans go out, marked shutdown, within the grace."""
    gate = Gate()
    async with FakeJudge(gate) as judge:
        config = pipeline_config(sink, judge)
        async with running(config) as pipeline:
            client = RawClient(pipeline.grpc_port)
            await client.traces(request(genai_span("A"), genai_span("B")))
            await gate.wait_for_calls(2)
            await pipeline.shutdown(grace=0.2)
            await client.close()
        gate.opened.set()

    assert sorted(r.attributes[STATUS] for r in sink.spans()) == ["shutdown", "shutdown"]


async def test_genai_spans_without_content_are_never_sent_to_the_judge(sink: SpanSink, fake_judge: FakeJudge) -> None:
    no_content = span("chat gpt-4o-mini", {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini"})
    config = pipeline_config(sink, fake_judge)
    async with running(config) as pipeline:
        client = RawClient(pipeline.grpc_port)
        await client.traces(request(no_content))
        received = await sink.wait_for_spans(1)
        await client.close()

    assert received[0].attributes[STATUS] == "no_content"
    assert fake_judge.requests == []


async def test_sampled_out_spans_are_marked_and_not_judged(sink: SpanSink, fake_judge: FakeJudge) -> None:
    policies = [{"name": "none", "type": "probabilistic", "probabilistic": {"sampling_percentage": 0}}]
    config = pipeline_config(sink, fake_judge, sampling={"policies": policies})
    async with running(config) as pipeline:
        client = RawClient(pipeline.grpc_port)
        await client.traces(request(genai_span(), genai_span()))
        received = await sink.wait_for_spans(2)
        await client.close()

    assert [r.attributes[STATUS] for r in received] == ["sampled_out", "sampled_out"]
    assert fake_judge.requests == []


async def test_spans_without_content_say_once_a_minute_how_to_turn_capture_on(
    sink: SpanSink, fake_judge: FakeJudge, caplog: pytest.LogCaptureFixture
) -> None:
    """No per-span logging: one warning per format per minute, with the count and the library's switch."""
    clock = FakeClock()
    config = pipeline_config(sink, fake_judge)
    no_content = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini"}
    async with running(config, Settings(clock=clock), tick=None) as pipeline:
        client = RawClient(pipeline.grpc_port)
        for minute in range(2):
            for _ in range(3):
                await client.traces(request(span("chat", no_content)))
                await pipeline.processor.tick()
            clock.advance(61 if minute == 0 else 0)
        await client.traces(request(span("chat", no_content)))
        await pipeline.processor.tick()
        await sink.wait_for_spans(7)
        await client.close()

    hints = [r.getMessage() for r in caplog.records if "without prompt/completion content" in r.getMessage()]
    assert len(hints) == 2
    assert hints[0].startswith("1 otel_genai span(s)") and hints[1].startswith("3 otel_genai span(s)")
    assert "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT" in hints[0]


async def test_a_merged_export_the_backend_refuses_as_too_large_is_split_not_lost() -> None:
    """The backend accepts at most 1 MiB per request; requests queued during an outage are merged (up to
    4 MiB), refused as too large, split and sent one by one: every span arrives."""
    big = "x" * 20_000
    async with SpanSink(max_receive_bytes=1024 * 1024) as sink:
        sink.fail_next(3, grpc.StatusCode.UNAVAILABLE, retry_after=0.05)
        config = pipeline_config(
            sink,
            None,
            exporters={
                "otlp": {
                    "endpoint": sink.endpoint,
                    "tls": {"insecure": True},
                    "compression": "none",
                    "sending_queue": {"num_consumers": 1},
                }
            },
        )
        async with running(config) as pipeline:
            client = RawClient(pipeline.grpc_port)
            for i in range(10):
                await client.traces(request(*(span(f"s{i}-{j}", {"blob": big}) for j in range(10))))  # ~200 KB
            received = await sink.wait_for_spans(100, timeout=30)
            await client.close()

    assert len({r.key for r in received}) == 100
