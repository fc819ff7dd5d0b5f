"""Content that arrives as log records is joined to its span in the running pipeline, and every real
capture replayed through otel-judge gets exactly one judgment per model call."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from otel_judge import semconv
from otel_judge.component import FakeClock, Settings
from otel_judge.testing import FakeJudge, JudgeRequest, SpanSink

from .conftest import pipeline_config, running
from .otlp_builders import RawClient
from .test_formats import SCENARIOS, UNJUDGEABLE_CALLS, visible_calls

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[1] / "shared" / "fixtures"
STATUS = semconv.OTEL_JUDGE_EVALUATION_STATUS


def capture(name: str) -> Path:
    for root in (SHARED, HERE / "fixtures"):
        if (root / name).exists():
            return root / name
    pytest.skip(f"capture {name} not available")


def echo_score(request: JudgeRequest) -> str:
    return json.dumps({"score": 60, "explanation": request.response_text or ""})


async def send_capture(client: RawClient, directory: Path, logs_first: bool) -> int:
    """Send a capture's exact bytes; returns the number of spans sent."""
    traces = sorted(directory.glob("traces-*.pb"))
    logs = sorted(directory.glob("logs-*.pb"))
    sent = 0
    for path in traces:
        request = ExportTraceServiceRequest.FromString(path.read_bytes())
        sent += sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
    order = [*logs, *traces] if logs_first else [*traces, *logs]
    for path in order:
        if path.name.startswith("logs-"):
            await client.logs(path.read_bytes())
        else:
            await client.traces(path.read_bytes())
    return sent


@pytest.mark.parametrize("logs_first", [True, False], ids=["logs-before-span", "logs-after-span"])
@pytest.mark.parametrize("name", ["otelv2-event_only", "otelv2legacy-true"])
async def test_log_content_is_joined_whichever_arrives_first(sink: SpanSink, name: str, logs_first: bool) -> None:
    """Spans without content plus content log records in separate exports: the judge sees the content."""
    clock = FakeClock()
    directory = capture(name) / "tool_call"
    expected = json.loads((directory / "expected.json").read_text())
    async with FakeJudge(echo_score) as judge:
        config = pipeline_config(
            sink, judge, sampling={"decision_wait": "5s", "decision_wait_after_root_received": "2s"}
        )
        async with running(config, Settings(clock=clock), tick=None) as pipeline:
            client = RawClient(pipeline.grpc_port)
            sent = await send_capture(client, directory, logs_first)
            await sink.wait_for_spans(1)  # the app span is not held
            assert pipeline.processor.held_count == 2
            clock.advance(5.1)
            await pipeline.processor.tick()
            received = await sink.wait_for_spans(sent)
            await client.close()

    llm = [r for r in received if STATUS in r.attributes]
    assert [r.attributes[STATUS] for r in llm] == ["evaluated", "evaluated"]
    explanations = {r.attributes["gen_ai.evaluation.quality.explanation"] for r in llm}
    assert any(expected["completion"] in e for e in explanations), "the judge saw the completion from the logs"
    assert len(judge.requests) == 2
    assert len(sink.log_records()) > 0, "log records are forwarded too"


async def test_records_stamped_with_the_parent_span_id_join_the_one_llm_span_below_it(sink: SpanSink) -> None:
    """OpenLLMetry's streaming gen_ai.choice carries the app span's id: it still reaches its LLM span."""
    directory = capture("traceloop-events") / "streaming"
    expected = json.loads((directory / "expected.json").read_text())
    async with FakeJudge(echo_score) as judge:
        config = pipeline_config(
            sink, judge, sampling={"decision_wait": "5s", "decision_wait_after_root_received": "2s"}
        )
        clock = FakeClock()
        settings = Settings(clock=clock)
        async with running(config, settings, tick=None) as pipeline:
            client = RawClient(pipeline.grpc_port)
            sent = await send_capture(client, directory, logs_first=False)
            clock.advance(5.1)
            await pipeline.processor.tick()
            received = await sink.wait_for_spans(sent)
            await client.close()

    llm = [r for r in received if STATUS in r.attributes]
    assert [r.attributes[STATUS] for r in llm] == ["evaluated"]
    assert expected["completion"] in llm[0].attributes["gen_ai.evaluation.quality.explanation"]
    assert settings.telemetry.value("otel_judge.logs.joined", by="parent_span_id") >= 1


async def test_every_capture_replayed_gets_one_judgment_per_model_call(sink: SpanSink) -> None:
    """All real captures through one running otel-judge: each span arrives once; the judge is called
    exactly once per model call with content, and never for a capture without content."""
    scenarios = list(SCENARIOS)
    want_calls = 0
    sent = 0
    async with FakeJudge(echo_score) as judge:
        # Logs go first; a short real decision_wait keeps them until their span arrives in the next export.
        config = pipeline_config(
            sink, judge, sampling={"decision_wait": "1s", "decision_wait_after_root_received": "1s"}
        )
        async with running(config) as pipeline:
            client = RawClient(pipeline.grpc_port)
            for key, directory in scenarios:
                expected = json.loads((directory / "expected.json").read_text())
                if expected["content_location"] != "none" and not expected["is_error"]:
                    want_calls += visible_calls(key, expected) - UNJUDGEABLE_CALLS.get(key, 0)
                sent += await send_capture(client, directory, logs_first=True)
            received = await sink.wait_for_spans(sent, timeout=60)
            await sink.wait_for(lambda: len(judge.requests) >= want_calls, timeout=60)
            await client.close()

    assert len(received) == sent
    assert len({r.key for r in received}) == sent, "a span arrived twice"
    assert len(judge.requests) == want_calls
    assert all(re.search(r"\S", r.response_text or "") for r in judge.requests), "no empty content reached the judge"
