"""Outputs of judgments besides the judged span, asserted on the wire: the gen_ai.evaluation.result
log records, late results (a child span and a log record), evaluation metrics over OTLP (gRPC and
HTTP) with slices and the cardinality cap, and /metrics read back with prometheus_client."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1.metrics_pb2 import AGGREGATION_TEMPORALITY_CUMULATIVE
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from prometheus_client.parser import text_string_to_metric_families

from otel_judge import semconv
from otel_judge.component import FakeClock, Settings
from otel_judge.exporter import FileExporter
from otel_judge.model import EvaluationRecord, EvaluationResult, EvaluationStatus, Score
from otel_judge.otlp import MetricsBatch, attributes_to_dict, py_to_any_value
from otel_judge.outputs import MAX_BUFFERED, OTHER, OtlpEvaluationOutput, SliceResolver, normalised_score
from otel_judge.pipeline import Pipeline
from otel_judge.testing import FakeJudge, HttpSpanSink, JudgeAnswer, SpanSink

from .conftest import pipeline_config, running
from .otlp_builders import RawClient, genai_span, request, span
from .test_pipeline import Gate

EVENT_ATTRIBUTES = {
    "gen_ai.evaluation.name",
    "gen_ai.evaluation.score.value",
    "gen_ai.evaluation.score.label",
    "gen_ai.evaluation.explanation",
    "gen_ai.response.id",
    "otel_judge.evaluation.id",
    "otel_judge.evaluation.status",
    "otel_judge.judge.model",
    "otel_judge.sampling.probability",
}
SCORE = json.dumps({"score": 80, "explanation": "helpful"})


def trace(model: str = "gpt-4o-mini", route: str | None = "/chat", answer: str = "ANSWER") -> list[Span]:
    """An LLM-call span (child) followed by its trace's root span, as the SDK exports them."""
    root = span("POST /chat", {"http.route": route} if route else {})
    llm = genai_span(answer, trace_id=root.trace_id)
    llm.parent_span_id = root.span_id
    for kv in llm.attributes:
        if kv.key == "gen_ai.response.model":
            kv.value.string_value = model
    return [llm, root]


def attrs(message: Any) -> dict[str, Any]:
    return attributes_to_dict(message.attributes)


# --------------------------------------------------------------------------- log records


@pytest.mark.parametrize(
    ("outputs", "log_records"),
    [({"log_records": True}, True), ({}, False)],
    ids=["log-records-on", "default-off"],
)
async def test_evaluation_log_records_follow_the_genai_event(
    sink: SpanSink, outputs: dict[str, Any], log_records: bool
) -> None:
    """One gen_ai.evaluation.result log record per score, with exactly the semconv names, the
    judged span's trace and span id and its resource; the span event is on the span either way."""
    async with FakeJudge(lambda r: SCORE) as judge:
        config = pipeline_config(sink, judge, outputs=outputs)
        async with running(config) as pipeline:
            client = RawClient(pipeline.grpc_port)
            llm, root = trace()
            await client.traces(request(llm, root, service="shop"))
            received = await sink.wait_for_spans(2)
            if log_records:
                await sink.wait_for(lambda: len(sink.log_records()) >= 1)
            await client.close()

    judged = next(r for r in received if r.span.span_id == llm.span_id)
    [event] = [e for e in judged.span.events if e.name == "gen_ai.evaluation.result"]
    assert set(attrs(event)) == {
        "gen_ai.evaluation.name",
        "gen_ai.evaluation.score.value",
        "gen_ai.evaluation.score.label",
        "gen_ai.evaluation.explanation",
        "gen_ai.response.id",
    }
    if not log_records:
        assert sink.log_requests == []
        return
    [log_request] = sink.log_requests
    [resource_logs] = log_request.resource_logs
    assert resource_logs.resource == judged.resource
    [scope_logs] = resource_logs.scope_logs
    assert scope_logs.scope.name == "otel_judge"
    [record] = scope_logs.log_records
    assert record.event_name == "gen_ai.evaluation.result"
    assert (record.trace_id, record.span_id) == (llm.trace_id, llm.span_id)
    values = attrs(record)
    assert set(values) == EVENT_ATTRIBUTES
    assert values["gen_ai.evaluation.name"] == "quality"
    assert values["gen_ai.evaluation.score.value"] == 80.0
    assert values["gen_ai.evaluation.score.label"] == "pass"
    assert values["gen_ai.evaluation.explanation"] == "helpful"
    assert values["gen_ai.response.id"] == "chatcmpl-123"
    assert values["otel_judge.evaluation.status"] == "evaluated"
    assert len(values["otel_judge.evaluation.id"]) == 32
    assert values["otel_judge.sampling.probability"] == 1.0
    assert record.time_unix_nano > 0 and record.severity_text == "INFO"


async def test_a_failed_judgment_is_a_log_record_with_error_type(sink: SpanSink) -> None:
    """A judge error: one record named after the evaluator, error.type = the status, no score."""
    async with FakeJudge(lambda r: JudgeAnswer(status=500)) as judge:
        config = pipeline_config(
            sink, judge, outputs={"log_records": True}, judge={"retry_on_failure": {"enabled": False}}
        )
        async with running(config) as pipeline:
            client = RawClient(pipeline.grpc_port)
            llm = genai_span()
            await client.traces(request(llm))
            await sink.wait_for(lambda: len(sink.log_records()) >= 1)
            await client.close()

    [record] = sink.log_records()
    values = attrs(record)
    assert values["gen_ai.evaluation.name"] == "quality"
    assert values["error.type"] == values["otel_judge.evaluation.status"] == "judge_error"
    assert "gen_ai.evaluation.score.value" not in values
    assert record.severity_text == "WARN"


# --------------------------------------------------------------------------- late results


@pytest.mark.parametrize("log_records", [False, True], ids=["log-records-off", "log-records-on"])
async def test_late_result_is_a_child_span_and_a_log_record(sink: SpanSink, log_records: bool) -> None:
    """max_hold expires (fake clock), the span goes out with status timeout; when the judge answers
    later, a span 'gen_ai.evaluation quality' parented to it and a log record follow, once each."""
    gate = Gate(SCORE)
    clock = FakeClock()
    settings = Settings(clock=clock)
    async with FakeJudge(gate) as judge:
        config = pipeline_config(sink, judge, judge={"max_hold": "1s"}, outputs={"log_records": log_records})
        async with running(config, settings, tick=None) as pipeline:
            client = RawClient(pipeline.grpc_port)
            llm = genai_span()
            await client.traces(request(llm))
            await gate.wait_for_calls(1)
            clock.advance(2)
            await pipeline.processor.tick()
            await sink.wait_for_spans(1)
            gate.opened.set()
            await sink.wait_for(lambda: len(sink.spans()) >= 2 and len(sink.log_records()) >= 1)
            await client.close()

    judged, child = sink.spans()
    assert judged.span.span_id == llm.span_id
    assert judged.attributes[semconv.OTEL_JUDGE_EVALUATION_STATUS] == "timeout"
    assert child.span.name == "gen_ai.evaluation quality"
    assert child.span.trace_id == llm.trace_id
    assert child.span.parent_span_id == llm.span_id
    assert child.span.span_id not in (llm.span_id, b"\0" * 8) and len(child.span.span_id) == 8
    assert child.span.kind == Span.SPAN_KIND_INTERNAL
    assert child.span.start_time_unix_nano <= child.span.end_time_unix_nano
    assert child.resource == judged.resource and child.scope.name == "otel_judge"
    values = child.attributes
    assert set(values) == EVENT_ATTRIBUTES | {"otel_judge.evaluation.late"}
    assert values["gen_ai.evaluation.score.value"] == 80.0 and values["otel_judge.evaluation.late"] is True
    [record] = sink.log_records()
    assert (record.trace_id, record.span_id) == (llm.trace_id, llm.span_id)
    assert record.event_name == "gen_ai.evaluation.result"
    assert attrs(record)["otel_judge.evaluation.id"] == values["otel_judge.evaluation.id"]
    assert settings.telemetry.value("otel_judge.late_results") == 1


# --------------------------------------------------------------------------- metrics over OTLP


def _points(requests: Sequence[ExportMetricsServiceRequest], name: str) -> list[Any]:
    """The data points of the last request that carries ``name``."""
    for req in reversed(requests):
        for rm in req.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name == name:
                        return list(getattr(metric, metric.WhichOneof("data")).data_points)
    return []


@pytest.mark.parametrize("transport", ["grpc", "http"])
async def test_evaluation_metrics_arrive_over_otlp_with_slices_and_the_other_bucket(transport: str) -> None:
    """Five traces with four models, cap 2: the score histogram, results and pass counters carry
    gen_ai.evaluation.name, model (two values, then 'other'), route (from the root span) and service;
    the overflow is counted; every outputs.metrics.interval one cumulative request, a last at shutdown."""
    clock = FakeClock()
    settings = Settings(clock=clock)
    async with SpanSink() as grpc_sink, HttpSpanSink() as http_sink, FakeJudge(lambda r: SCORE) as judge:
        sink: SpanSink | HttpSpanSink = grpc_sink if transport == "grpc" else http_sink
        exporters: dict[str, Any] = (
            {}
            if transport == "grpc"
            else {"otlp": None, "otlphttp": {"endpoint": http_sink.endpoint, "compression": "none"}}
        )
        config = pipeline_config(
            grpc_sink,
            judge,
            exporters=exporters,
            outputs={"metrics": {"otlp": True, "interval": "30s", "cardinality_limit": 2}},
        )
        async with running(config, settings, tick=None) as pipeline:
            client = RawClient(pipeline.grpc_port)
            for model in ("m1", "m2", "m3", "m4", "m1"):
                await client.traces(request(*trace(model), service="shop"))
            await sink.wait_for_spans(10)
            await pipeline.tick()  # not due yet
            assert sink.metric_requests == []
            clock.advance(30)
            await pipeline.tick()
            await sink.wait_for(lambda: len(sink.metric_requests) == 1)
            await client.close()
        assert len(sink.metric_requests) == 2, "a last export at shutdown"

    [resource_metrics] = sink.metric_requests[0].resource_metrics
    assert attrs(resource_metrics.resource)["service.name"] == "otel-judge"
    scores = _points(sink.metric_requests, "otel_judge.evaluation.score")
    by_model = {attrs(p)["model"]: p for p in scores}
    assert set(by_model) == {"m1", "m2", OTHER}
    assert (by_model["m1"].count, by_model[OTHER].count) == (2, 2)
    for point in scores:
        assert attrs(point) == {
            "gen_ai.evaluation.name": "quality",
            "model": attrs(point)["model"],
            "route": "/chat",
            "service": "shop",
        }
        assert list(point.explicit_bounds) == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
        assert point.sum == pytest.approx(point.count * (80 - 1) / 99)
    results = _points(sink.metric_requests, "otel_judge.evaluation.results")
    assert sum(p.as_int for p in results) == 5
    assert {attrs(p)["otel_judge.evaluation.status"] for p in results} == {"evaluated"}
    passed = _points(sink.metric_requests, "otel_judge.evaluation.passed")
    assert {(attrs(p)["model"], attrs(p)["outcome"], p.as_int) for p in passed} == {
        ("m1", "pass", 2),
        ("m2", "pass", 1),
        (OTHER, "pass", 2),
    }
    overflow = _points(sink.metric_requests, "otel_judge.metrics.overflow")
    assert [(attrs(p), p.as_int) for p in overflow] == [({"slice": "model"}, 2)]
    durations = _points(sink.metric_requests, "otel_judge.evaluation.duration")  # judge latency per slice
    assert sum(p.count for p in durations) == 5
    assert {attrs(p)["model"] for p in durations} == {"m1", "m2", OTHER}
    assert all(attrs(p)["gen_ai.evaluation.name"] == "quality" and p.sum >= 0 for p in durations)
    metrics = {m.name: m for m in sink.metrics()}
    assert metrics["otel_judge.evaluation.results"].sum.is_monotonic
    assert metrics["otel_judge.evaluation.results"].sum.aggregation_temporality == AGGREGATION_TEMPORALITY_CUMULATIVE
    assert metrics["otel_judge.held.spans"].WhichOneof("data") == "gauge"
    assert metrics["otel_judge.evaluation.score"].histogram.aggregation_temporality == (
        AGGREGATION_TEMPORALITY_CUMULATIVE
    )


@pytest.mark.parametrize(
    ("arrival", "decision_wait", "expected_route"),
    [
        ("root-after-in-request", "0s", "/later"),
        ("root-first-other-scope", "0s", "/later"),
        ("root-in-next-request", "5s", "/later"),
        ("root-never-arrives", "5s", None),
    ],
)
async def test_slices_read_the_root_span_whenever_it_arrives(
    sink: SpanSink, arrival: str, decision_wait: str, expected_route: str | None
) -> None:
    """A check judges the span on arrival, before its root may be seen: the record waits for the
    root (to the end of the request, or decision_wait), then carries the root's route; without a
    root it goes out without one once decision_wait has passed."""
    clock = FakeClock()
    settings = Settings(clock=clock)
    config = pipeline_config(
        sink,
        None,
        evaluators=[{"name": "length", "type": "length", "min_chars": 1}],
        sampling={"decision_wait": decision_wait},
    )
    async with running(config, settings, tick=None) as pipeline:
        client = RawClient(pipeline.grpc_port)
        llm, root = trace(route="/later")
        if arrival == "root-after-in-request":
            await client.traces(request(llm, root))
        elif arrival == "root-first-other-scope":
            both = request(root)
            both.resource_spans[0].scope_spans.add(scope=both.resource_spans[0].scope_spans[0].scope).spans.append(llm)
            await client.traces(both)
        else:
            await client.traces(request(llm))
            await sink.wait_for_spans(1)
            assert settings.telemetry.series("otel_judge.evaluation.results") == {}, "waits for the root"
            if arrival == "root-in-next-request":
                await client.traces(request(root))
            else:
                clock.advance(5)
                await pipeline.processor.tick()
        await client.close()
        series = settings.telemetry.series("otel_judge.evaluation.results")

    [key] = series
    assert dict(key).get("route") == expected_route
    assert dict(key)["model"] == "gpt-4o-mini"


async def test_a_failing_sink_costs_its_records_never_a_span(sink: SpanSink) -> None:
    """An evaluation sink that raises is counted in otel_judge.outputs.dropped; the span still goes out."""

    class Broken:
        name = "broken"

        def record(self, records: Sequence[EvaluationRecord]) -> None:
            raise RuntimeError("bug")

        async def start(self) -> None:
            return None

        async def shutdown(self, deadline: float) -> None:
            return None

    settings = Settings()
    async with FakeJudge(lambda r: SCORE) as judge:
        pipeline = Pipeline(pipeline_config(sink, judge), settings)
        pipeline.sinks.append(Broken())
        await pipeline.start(tick_interval=0.05)
        try:
            client = RawClient(pipeline.grpc_port)
            await client.traces(request(genai_span()))
            [received] = await sink.wait_for_spans(1)
            await client.close()
        finally:
            await pipeline.shutdown(5)

    assert received.attributes[semconv.OTEL_JUDGE_EVALUATION_STATUS] == "evaluated"
    assert settings.telemetry.value("otel_judge.outputs.dropped", output="broken", reason="error") == 1
    assert settings.telemetry.value("otel_judge.evaluation.results") == 1, "the other sinks still got it"


# --------------------------------------------------------------------------- /metrics


async def test_prometheus_endpoint_parses_with_the_evaluation_metrics(sink: SpanSink) -> None:
    """After a judged run, /metrics parses with prometheus_client and has the evaluation families
    with the evaluator and slice labels."""
    async with FakeJudge(lambda r: SCORE) as judge:
        config = pipeline_config(sink, judge, service={"health": {"endpoint": "127.0.0.1:0"}})
        async with running(config) as pipeline:
            client = RawClient(pipeline.grpc_port)
            await client.traces(request(*trace("m1"), service="shop"))
            await sink.wait_for_spans(2)
            await client.close()
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"http://127.0.0.1:{pipeline.health_port}/metrics") as response,
            ):
                text = await response.text()

    families = {f.name: f for f in text_string_to_metric_families(text)}
    score = families["otel_judge_evaluation_score"]
    assert score.type == "histogram"
    [count] = [s for s in score.samples if s.name.endswith("_count")]
    assert count.labels == {"gen_ai_evaluation_name": "quality", "model": "m1", "route": "/chat", "service": "shop"}
    assert count.value == 1
    results = families["otel_judge_evaluation_results"]
    assert results.type == "counter"
    [total] = [s for s in results.samples if s.name.endswith("_total")]
    assert total.labels["otel_judge_evaluation_status"] == "evaluated" and total.value == 1
    assert families["otel_judge_evaluation_passed"].samples[0].labels["outcome"] == "pass"
    duration = families["otel_judge_evaluation_duration_seconds"]
    [count] = [s for s in duration.samples if s.name.endswith("_count")]
    assert (count.labels["gen_ai_evaluation_name"], count.labels["model"], count.value) == ("quality", "m1", 1)


# --------------------------------------------------------------------------- units


@pytest.mark.parametrize(
    ("score", "expected"),
    [
        (Score("q", 75, low=1, high=100), 74 / 99),
        (Score("q", 1, low=0, high=1), 1.0),
        (Score("q", 2, low=1, high=5, higher_is_better=False), 0.75),
        (Score("q", 150, low=0, high=100), 1.0),
        (Score("q", 0.5), None),
        (Score("q", 3, low=3, high=3), None),
        (Score("q", math.nan, low=0, high=1), None),
    ],
    ids=["1-100", "0-1", "lower-is-better", "clamped", "no-scale", "empty-scale", "nan"],
)
def test_scores_are_normalised_so_that_one_is_best(score: Score, expected: float | None) -> None:
    """0 = worst, 1 = best of the evaluator's scale; no scale, no histogram value."""
    assert normalised_score(score) == (pytest.approx(expected) if expected is not None else None)


def _kvs(values: dict[str, Any]) -> Any:
    span = Span()
    for key, value in values.items():
        kv = span.attributes.add()
        kv.key = key
        py_to_any_value(value, kv.value)
    return span


@pytest.mark.parametrize(
    ("lookup", "span_attrs", "resource_attrs", "root_attrs", "expected"),
    [
        ("gen_ai.response.model | gen_ai.request.model", {"gen_ai.request.model": "a"}, {}, {}, "a"),
        ("resource.service.name", {"service.name": "span"}, {"service.name": "svc"}, {}, "svc"),
        ("root.http.route", {"http.route": "/span"}, {}, {"http.route": "/root"}, "/root"),
        ("tenant", {}, {}, {"tenant": "acme"}, "acme"),
        ("span.version", {"version": 3.0}, {}, {}, "3"),
        ("span.flag", {"flag": True}, {}, {}, "true"),
        ("span.missing", {}, {}, {}, None),
    ],
    ids=["alternatives", "resource", "root", "bare-falls-back-to-root", "number", "bool", "missing"],
)
def test_slice_lookups_read_span_resource_and_root(
    lookup: str,
    span_attrs: dict[str, Any],
    resource_attrs: dict[str, Any],
    root_attrs: dict[str, Any],
    expected: str | None,
) -> None:
    """The sampling policies' lookup syntax, on only the keys kept of each part."""
    resolver = SliceResolver({"s": lookup})
    resource = Resource()
    resource.attributes.extend(_kvs(resource_attrs).attributes)
    root = resolver.root_subset(_kvs(root_attrs), Resource())
    found = resolver.resolve(resolver.span_subset(_kvs(span_attrs)), resolver.resource_subset(resource), root)
    assert found == ((("s", expected),) if expected is not None else ())


async def test_file_exporter_writes_metrics_as_otlp_json(tmp_path: Path) -> None:
    """consume_metrics on the file exporter appends one OTLP/JSON resourceMetrics line."""
    request = ExportMetricsServiceRequest()
    metric = request.resource_metrics.add().scope_metrics.add().metrics.add(name="m")
    metric.gauge.data_points.add(as_int=3)
    exporter = FileExporter(str(tmp_path / "out.jsonl"), Settings())
    await exporter.start()
    await exporter.consume_metrics(MetricsBatch(request))
    await exporter.shutdown(0)

    [line] = (tmp_path / "out.jsonl").read_text().splitlines()
    assert json.loads(line)["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0]["gauge"]["dataPoints"] == [
        {"asInt": "3"}
    ]


def test_records_carry_the_judgment_unchanged() -> None:
    """EvaluationRecord equality ignores the resource (an OTLP message shared by reference)."""
    result = EvaluationResult("q", EvaluationStatus.EVALUATED, (Score("q", 1.0),))
    a = EvaluationRecord("id", 1, b"t" * 16, b"s" * 8, result, resource=Resource())
    b = EvaluationRecord("id", 1, b"t" * 16, b"s" * 8, result)
    assert a == b


async def test_the_otlp_output_buffer_is_bounded_and_refuses_after_shutdown(tmp_path: Path) -> None:
    """Past MAX_BUFFERED waiting records, and after shutdown, records are dropped and counted,
    never blocking the judging stage; what was buffered is flushed at shutdown."""
    settings = Settings()
    exporter = FileExporter(str(tmp_path / "out.jsonl"), settings)
    await exporter.start()
    output = OtlpEvaluationOutput(exporter, settings, log_records=True, late_results=True)
    result = EvaluationResult("q", EvaluationStatus.EVALUATED, (Score("q", 1.0),))
    record = EvaluationRecord("id", 1, b"t" * 16, b"s" * 8, result)
    output.record([record] * (MAX_BUFFERED + 5))  # not started: nothing is sent yet
    await output.shutdown(0)
    output.record([record])
    await exporter.shutdown(0)

    telemetry = settings.telemetry
    assert telemetry.value("otel_judge.outputs.dropped", output="log_records", reason="full") == 5
    assert telemetry.value("otel_judge.outputs.dropped", output="log_records", reason="stopped") == 1
    assert telemetry.value("otel_judge.exporter.sent", exporter="file", signal="logs") == MAX_BUFFERED
