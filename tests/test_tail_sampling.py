"""Tail sampling in the running pipeline: trace-aware decisions, weights, budgets, late spans, bounds.
Every test also checks that every span still arrives downstream exactly once."""

from __future__ import annotations

import json

from otel_judge import semconv
from otel_judge.component import FakeClock, Settings
from otel_judge.testing import FakeJudge, JudgeAnswer, SpanSink

from .conftest import pipeline_config, running
from .otlp_builders import RawClient, genai_span, request, span

STATUS = semconv.OTEL_JUDGE_EVALUATION_STATUS
WAITS = {"decision_wait": "5s", "decision_wait_after_root_received": "1s"}


def child_of(parent, child):  # type: ignore[no-untyped-def]
    child.trace_id = parent.trace_id
    child.parent_span_id = parent.span_id
    return child


def once_each(received: list, sent: int) -> None:  # type: ignore[type-arg]
    assert len(received) == sent and len({r.key for r in received}) == sent, "every span exactly once"


async def test_a_policy_on_the_root_route_decides_when_the_root_arrives(sink: SpanSink, fake_judge: FakeJudge) -> None:
    """The LLM span arrives before its root; the root's http.route decides whether it is judged."""
    clock = FakeClock()
    policies = [
        {
            "name": "support",
            "type": "string_attribute",
            "string_attribute": {"key": "root.http.route", "values": ["/support"]},
        }
    ]
    config = pipeline_config(sink, fake_judge, sampling={**WAITS, "policies": policies})
    async with running(config, Settings(clock=clock), tick=None) as pipeline:
        client = RawClient(pipeline.grpc_port)
        roots, llms = [], []
        for route in ("/support", "/billing"):
            root = span("POST", {"http.route": route})
            llm = child_of(root, genai_span(f"answer for {route}"))
            roots.append(root)
            llms.append(llm)
            await client.traces(request(llm))
        await pipeline.processor.tick()
        assert pipeline.processor.held_count == 2, "held until the decision"
        for root in roots:
            await client.traces(request(root))
        clock.advance(1.1)  # decision_wait_after_root_received
        await pipeline.processor.tick()
        received = await sink.wait_for_spans(4)
        await client.close()

    once_each(received, 4)
    statuses = {r.span.span_id: r.attributes.get(STATUS) for r in received}
    assert statuses[llms[0].span_id] == "evaluated"
    assert statuses[llms[1].span_id] == "sampled_out"
    judged = next(r for r in received if r.span.span_id == llms[0].span_id).attributes
    assert judged[semconv.OTEL_JUDGE_SAMPLING_POLICY] == "support"
    assert judged[semconv.OTEL_JUDGE_SAMPLING_PROBABILITY] == 1.0


async def test_judged_spans_carry_the_probability_they_were_chosen_with(sink: SpanSink, fake_judge: FakeJudge) -> None:
    policies = [
        {
            "name": "support-20",
            "type": "slice_rate",
            "slice_rate": {"key": "resource.service.name", "rates": {"app": 100}, "default_percentage": 0},
        }
    ]
    config = pipeline_config(sink, fake_judge, sampling={"policies": policies})
    async with running(config) as pipeline:
        client = RawClient(pipeline.grpc_port)
        await client.traces(request(genai_span()))
        received = await sink.wait_for_spans(1)
        await client.close()

    attrs = received[0].attributes
    assert attrs[STATUS] == "evaluated"
    assert (attrs[semconv.OTEL_JUDGE_SAMPLING_POLICY], attrs[semconv.OTEL_JUDGE_SAMPLING_PROBABILITY]) == (
        "support-20",
        1.0,
    )


async def test_budget_exhausted_means_skipped_budget_not_a_lost_span(sink: SpanSink) -> None:
    """With a priced judge and a $0.01/hour budget, judgments stop once the hour's money is spent."""
    answer = JudgeAnswer(text=json.dumps({"score": 70}), prompt_tokens=1000, completion_tokens=0)
    async with FakeJudge(lambda r: answer) as judge:
        policies = [
            {"name": "all", "type": "always_sample"},
            {"name": "money", "type": "budget", "budget": {"max_usd_per_hour": 0.01}},
        ]
        config = pipeline_config(
            sink,
            judge,
            sampling={"policies": policies},
            judge={"max_concurrency": 1, "pricing": {"input_per_million_tokens": 2.5, "output_per_million_tokens": 0}},
        )  # each judgment costs 1000 * 2.5 / 1e6 = $0.0025: four fit in $0.01
        async with running(config) as pipeline:
            client = RawClient(pipeline.grpc_port)
            for i in range(8):
                await client.traces(request(genai_span(f"A{i}")))
                await sink.wait_for_spans(i + 1)
            await client.close()

    statuses = [r.attributes[STATUS] for r in sink.spans()]
    once_each(sink.spans(), 8)
    assert statuses.count("evaluated") == 4
    assert statuses.count("skipped_budget") == 4
    assert len(judge.requests) == 4


async def test_late_spans_follow_their_traces_decision_at_once(sink: SpanSink, fake_judge: FakeJudge) -> None:
    """A model-call span arriving after its trace was decided is decided at once (decision cache), with
    what was known of the trace (here its root route)."""
    clock = FakeClock()
    settings = Settings(clock=clock)
    policies = [
        {
            "name": "support",
            "type": "string_attribute",
            "string_attribute": {"key": "root.http.route", "values": ["/support"]},
        }
    ]
    config = pipeline_config(sink, fake_judge, sampling={**WAITS, "policies": policies})
    async with running(config, settings, tick=None) as pipeline:
        client = RawClient(pipeline.grpc_port)
        root = span("POST", {"http.route": "/support"})
        await client.traces(request(root, child_of(root, genai_span("first"))))
        clock.advance(1.1)
        await pipeline.processor.tick()
        await sink.wait_for_spans(2)
        late = child_of(root, genai_span("late"))
        await client.traces(request(late))
        received = await sink.wait_for_spans(3)
        await client.close()

    once_each(received, 3)
    assert settings.telemetry.value("otel_judge.spans.late") == 1
    assert next(r for r in received if r.span.span_id == late.span_id).attributes[STATUS] == "evaluated"


async def test_num_traces_bounds_memory_by_deciding_the_oldest_early(sink: SpanSink, fake_judge: FakeJudge) -> None:
    """2,000 traces with decision_wait 5 s and num_traces 100: never more than 100 held, none lost."""
    clock = FakeClock()
    settings = Settings(clock=clock)
    # A policy on the root span: spans must wait for their trace (decision on arrival is not possible).
    policies = [
        {
            "name": "admin",
            "type": "string_attribute",
            "string_attribute": {"key": "root.http.route", "values": ["/admin"]},
        }
    ]
    config = pipeline_config(sink, fake_judge, sampling={**WAITS, "num_traces": 100, "policies": policies})
    peak = 0
    async with running(config, settings, tick=None) as pipeline:
        client = RawClient(pipeline.grpc_port)
        for _ in range(20):
            spans = [span("db", {"db.system": "redis"}) for _ in range(100)]
            llms = [child_of(s, genai_span()) for s in spans]  # children: the root has not arrived yet
            await client.traces(request(*llms))
            peak = max(peak, pipeline.processor.pending_traces)
        received = await sink.wait_for_spans(1900)
        clock.advance(6)
        await pipeline.processor.tick()
        received = await sink.wait_for_spans(2000)
        await client.close()

    once_each(received, 2000)
    assert peak <= 100
    assert settings.telemetry.value("otel_judge.traces.decided_early") == 1900
    assert {r.attributes[STATUS] for r in received} == {"sampled_out"}


async def test_the_judges_own_spans_are_never_judged(sink: SpanSink, fake_judge: FakeJudge) -> None:
    """Loop guard: spans of service otel-judge are exported untouched by judging, with status sampled_out."""
    config = pipeline_config(sink, fake_judge)
    async with running(config) as pipeline:
        client = RawClient(pipeline.grpc_port)
        await client.traces(request(genai_span("mine"), service="otel-judge"))
        await client.traces(request(genai_span("yours"), service="shop"))
        received = await sink.wait_for_spans(2)
        await client.close()

    by_service = {r.resource.attributes[0].value.string_value: r.attributes[STATUS] for r in received}
    assert by_service == {"otel-judge": "sampled_out", "shop": "evaluated"}
    assert len(fake_judge.requests) == 1


async def test_with_policies_that_read_only_the_span_nothing_is_held(sink: SpanSink, fake_judge: FakeJudge) -> None:
    """Probabilistic at 0 %: decided on arrival, so LLM-call spans pass at once, marked sampled_out."""
    clock = FakeClock()
    policies = [{"name": "none", "type": "probabilistic", "probabilistic": {"sampling_percentage": 0}}]
    config = pipeline_config(sink, fake_judge, sampling={**WAITS, "policies": policies})
    async with running(config, Settings(clock=clock), tick=None) as pipeline:
        client = RawClient(pipeline.grpc_port)
        await client.traces(request(*(genai_span() for _ in range(50))))
        received = await sink.wait_for_spans(50)  # no tick, no clock advance: nothing waited
        held = pipeline.processor.held_count
        await client.close()

    assert held == 0
    assert {r.attributes[STATUS] for r in received} == {"sampled_out"}


async def test_chosen_spans_with_content_on_the_span_are_judged_without_waiting(
    sink: SpanSink, fake_judge: FakeJudge
) -> None:
    clock = FakeClock()
    config = pipeline_config(sink, fake_judge, sampling=WAITS)
    async with running(config, Settings(clock=clock), tick=None) as pipeline:
        client = RawClient(pipeline.grpc_port)
        await client.traces(request(genai_span()))
        received = await sink.wait_for_spans(1)  # judged with no tick and no clock advance
        await client.close()

    assert received[0].attributes[STATUS] == "evaluated"


async def test_a_root_span_that_arrives_first_still_shortens_the_wait(sink: SpanSink, fake_judge: FakeJudge) -> None:
    """Root first (an earlier export), then an LLM span whose content may still come as logs: it waits
    decision_wait_after_root_received, not decision_wait."""
    clock = FakeClock()
    config = pipeline_config(sink, fake_judge, sampling=WAITS)
    async with running(config, Settings(clock=clock), tick=None) as pipeline:
        client = RawClient(pipeline.grpc_port)
        root = span("POST", {"http.route": "/support"})
        await client.traces(request(root))
        await client.traces(request(child_of(root, span("chat", {"gen_ai.operation.name": "chat"}))))
        await sink.wait_for_spans(1)
        assert pipeline.processor.held_count == 1, "held: its content may come in log records"
        clock.advance(1.1)
        await pipeline.processor.tick()
        received = await sink.wait_for_spans(2)
        await client.close()

    assert {r.span.name: r.attributes.get(STATUS) for r in received}["chat"] == "no_content"
