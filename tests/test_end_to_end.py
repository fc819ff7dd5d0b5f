"""The whole path: the real OTel SDK → otel-judge (gRPC) → fake judge via real litellm → span sink."""

from __future__ import annotations

import json
import re

from opentelemetry.proto.trace.v1.trace_pb2 import Span
from opentelemetry.trace import Status, StatusCode

from otel_judge import semconv
from otel_judge.testing import FakeJudge, JudgeAnswer, JudgeRequest, SpanSink

from .conftest import genai_attributes, pipeline_config, running

OUR_PREFIXES = ("gen_ai.evaluation.", "otel_judge.")


def without_ours(span: Span) -> Span:
    """The span minus the attributes otel-judge adds."""
    copy = Span()
    copy.CopyFrom(span)
    kept = [kv for kv in copy.attributes if not kv.key.startswith(OUR_PREFIXES)]
    del copy.attributes[:]
    copy.attributes.extend(kept)
    events = [e for e in copy.events if e.name != "gen_ai.evaluation.result"]
    del copy.events[:]
    copy.events.extend(events)
    return copy


def score_by_answer(request: JudgeRequest) -> JudgeAnswer:
    """Score 10 + N for an answer 'ANSWER-N': proves the right span's content reached the judge."""
    match = re.search(r"ANSWER-(\d+)", request.response_text or "")
    if match is None:
        return JudgeAnswer(text="not what I expected")
    n = int(match.group(1))
    return JudgeAnswer(text=json.dumps({"score": 10 + n, "explanation": f"answer {n} looks fine"}))


async def test_scores_reach_the_right_spans_and_everything_else_is_unchanged(sink_pair, sdk_client) -> None:
    """Every span arrives once; GenAI spans carry the score for their own content; the rest is intact."""
    sink, direct = sink_pair
    async with FakeJudge(score_by_answer) as judge:
        config = pipeline_config(sink, judge)
        async with running(config) as pipeline:
            client = sdk_client([f"127.0.0.1:{pipeline.grpc_port}", direct.endpoint])
            expected: dict[str, float] = {}
            for n in range(12):
                with client.tracer.start_as_current_span("POST /chat", attributes={"http.route": "/chat"}):
                    with client.tracer.start_as_current_span("retrieve", attributes={"db.system": "redis"}) as db:
                        db.set_status(Status(StatusCode.ERROR, "cache miss storm"))
                        db.add_event("retry", {"attempt": 2})
                    with client.tracer.start_as_current_span(
                        "chat gpt-4o-mini", attributes=genai_attributes(f"question {n}?", f"ANSWER-{n}")
                    ) as span:
                        span.add_event("gen_ai.content.completion.chunk")
                        expected[format(span.get_span_context().span_id, "016x")] = 10 + n
            with client.tracer.start_as_current_span(
                "legacy completion",
                attributes={"gen_ai.prompt": "What is 2+2?", "gen_ai.completion": "ANSWER-50"},
            ) as legacy:
                expected[format(legacy.get_span_context().span_id, "016x")] = 60
            await client.flush()
            await direct.wait_for_spans(37)
            received = await sink.wait_for_spans(37)

    assert len(received) == 37
    assert len({r.key for r in received}) == 37, "a span arrived twice"
    originals = {r.key: r for r in direct.spans()}
    assert set(originals) == {r.key for r in received}
    for got in received:
        original = originals[got.key]
        assert got.resource == original.resource
        assert got.scope == original.scope
        assert without_ours(got.span) == original.span
        attrs = got.attributes
        span_id = got.span.span_id.hex()
        if span_id in expected:
            assert attrs[semconv.OTEL_JUDGE_EVALUATION_STATUS] == "evaluated"
            assert attrs["gen_ai.evaluation.quality.score.value"] == expected[span_id]
            assert attrs["gen_ai.evaluation.quality.score.label"] == ("pass" if expected[span_id] >= 50 else "fail")
            assert attrs["gen_ai.evaluation.quality.explanation"].startswith("answer ")
        else:
            assert got.span == original.span, "a non-GenAI span was changed"
    assert len(judge.requests) == 13, "one judge call per GenAI span"


async def test_judge_failures_cost_a_score_never_a_span(sink: SpanSink, sdk_client) -> None:
    """500, garbage, out of range, negative, empty and a hang: each span arrives with its status."""
    cases = {
        "http-500": (JudgeAnswer(status=500), "judge_error"),
        "garbage": (JudgeAnswer(text="The answer is good, I'd say 8 out of 10."), "parse_error"),
        "out-of-range": (JudgeAnswer(text="999"), "parse_error"),
        "huge": (JudgeAnswer(text='{"score": 9e124}'), "parse_error"),
        "negative": (JudgeAnswer(text="-5"), "parse_error"),
        "empty": (JudgeAnswer(text=""), "parse_error"),
        "auth": (JudgeAnswer(status=401), "judge_error"),
        "hang": (JudgeAnswer(hang=True), "timeout"),
        "ok-fenced": (JudgeAnswer(text='```json\n{"score": 88, "explanation": "good"}\n```'), "evaluated"),
    }

    def script(request: JudgeRequest) -> JudgeAnswer:
        match = re.search(r"CASE-([\w-]+)", request.response_text or "")
        assert match is not None
        return cases[match.group(1)][0]

    async with FakeJudge(script) as judge:
        config = pipeline_config(sink, judge, judge={"timeout": "500ms", "retry_on_failure": {"enabled": False}})
        async with running(config) as pipeline:
            client = sdk_client([f"127.0.0.1:{pipeline.grpc_port}"])
            ids = {}
            for case in cases:
                with client.tracer.start_as_current_span(
                    "chat", attributes=genai_attributes("q?", f"CASE-{case}")
                ) as s:
                    ids[format(s.get_span_context().span_id, "016x")] = case
            await client.flush()
            received = await sink.wait_for_spans(len(cases))
            judge.release()

    assert len(received) == len(cases)
    for got in received:
        case = ids[got.span.span_id.hex()]
        attrs = got.attributes
        assert attrs[semconv.OTEL_JUDGE_EVALUATION_STATUS] == cases[case][1], case
        if cases[case][1] == "evaluated":
            assert attrs["gen_ai.evaluation.quality.score.value"] == 88
            assert attrs["gen_ai.evaluation.quality.score.label"] == "pass"
        else:
            assert "gen_ai.evaluation.quality.score.value" not in attrs, case
    assert len(judge.requests) == len(cases), "a failed judgment must not be retried behind our back"
