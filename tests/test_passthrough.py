"""The pass-through fast path gives the same spans as the plain one.

The judging stage finds candidate spans from a second, light decoding of the received bytes and
re-encodes only the scopes whose spans got a status (:mod:`otel_judge.reader.scan`). Every request
here goes through the stage twice, once as received bytes (fast path) and once as a message whose
bytes are gone (every span's keys walked, the whole request re-encoded): the spans that reach the
sink must be the same, with the statuses the readers decide.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from otel_judge import semconv
from otel_judge.otlp import TraceBatch, attributes_to_dict, py_to_any_value
from otel_judge.reader import GenAIReader, SpanView
from otel_judge.reader.scan import append_to_spans, light_request, scope_layout, splice_scopes
from otel_judge.testing import SpanSink

from .conftest import genai_attributes, pipeline_config, running
from .otlp_builders import span

STATUS = semconv.OTEL_JUDGE_EVALUATION_STATUS
CHAT = genai_attributes("Where is Paris?", "In France.")
AGENT = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "planner", "gen_ai.system": "openai"}
HTTP = {"http.request.method": "GET", "url.path": "/chat", "http.response.status_code": 200}


def build(*resources: list[list[Span]]) -> ExportTraceServiceRequest:
    """A request: one resource per argument, one scope per list of spans in it."""
    request = ExportTraceServiceRequest()
    for r, scopes in enumerate(resources):
        rs = request.resource_spans.add()
        rs.resource.attributes.add(key="service.name").value.string_value = f"svc-{r}"
        for s, spans in enumerate(scopes):
            ss = rs.scope_spans.add()
            ss.scope.name = f"scope-{r}-{s}"
            ss.spans.extend(spans)
    return request


def named(name: str, attributes: dict[str, Any]) -> Span:
    return span(name, attributes)


def with_duplicate(name: str, attributes: dict[str, Any], key: str, first: Any) -> Span:
    """A span where ``key`` appears twice: ``first``, then its value in ``attributes``."""
    out = span(name, {})
    kv = out.attributes.add()
    kv.key = key
    py_to_any_value(first, kv.value)
    for k, v in attributes.items():
        kv = out.attributes.add()
        kv.key = k
        py_to_any_value(v, kv.value)
    return out


# (id, request, expected status per span name: None = no status written)
CASES: list[tuple[str, ExportTraceServiceRequest, dict[str, str | None]]] = [
    (
        "genai-in-its-own-scope",
        build([[named("GET /chat", HTTP), named("db", {"db.system": "postgresql"})], [named("chat", CHAT)]]),
        {"GET /chat": None, "db": None, "chat": "sampled_out"},
    ),
    (
        "mixed-scope",
        build([[named("GET /chat", HTTP), named("chat", CHAT), named("agent", AGENT), named("bare", {})]]),
        {"GET /chat": None, "chat": "sampled_out", "agent": None, "bare": None},
    ),
    (
        "key-text-only-in-values",  # the bytes hold a candidate key, but only inside values and non-candidate keys
        build([[named("note", {"message": "gen_ai.operation.name=chat", "gen_ai.usage.input_tokens": 3})]]),
        {"note": None},
    ),
    (
        "duplicate-operation-key",  # the last value wins, as when all attributes are decoded
        build([[with_duplicate("dup-chat", CHAT, "gen_ai.operation.name", "invoke_agent")]]),
        {"dup-chat": "sampled_out"},
    ),
    (
        "duplicate-operation-key-agent-last",
        build([[with_duplicate("dup-agent", AGENT, "gen_ai.operation.name", "chat")]]),
        {"dup-agent": None},
    ),
    (
        "several-resources-empty-scope-unicode",
        build(
            [[named("GET /", HTTP)], []],
            [[], [named("chat-ü", CHAT | {"ключ.ü": "значение"})], [named("plain-ü", {"ключ": 1})]],
        ),
        {"GET /": None, "chat-ü": "sampled_out", "plain-ü": None},
    ),
    (
        "status-already-on-the-span",  # replaced, not appended twice: the fast path writes the message
        build([[named("chat", CHAT | {STATUS: "evaluated"}), named("chat-2", CHAT)]]),
        {"chat": "sampled_out", "chat-2": "sampled_out"},
    ),
    (
        "litellm-names",
        build([[named("litellm_request", {"gen_ai.system": "openai"}), named("raw_gen_ai_request", CHAT)]]),
        {"litellm_request": "sampled_out", "raw_gen_ai_request": None},
    ),
    (
        "openinference-and-vercel",
        build(
            [
                [
                    named("llm", {"openinference.span.kind": "LLM", "llm.model_name": "gpt-4o"}),
                    named("chain", {"openinference.span.kind": "CHAIN"}),
                ],
                [
                    named("ai.generateText.doGenerate", {"ai.operationId": "ai.generateText.doGenerate"}),
                    named("ai.toolCall", {"ai.operationId": "ai.toolCall"}),
                ],
            ]
        ),
        {"llm": "sampled_out", "chain": None, "ai.generateText.doGenerate": "sampled_out", "ai.toolCall": None},
    ),
]


def statuses(request: ExportTraceServiceRequest) -> dict[str, str | None]:
    return {
        s.name: attributes_to_dict(s.attributes).get(STATUS)
        for rs in request.resource_spans
        for ss in rs.scope_spans
        for s in ss.spans
    }


@pytest.mark.parametrize(("request_", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
async def test_fast_and_plain_paths_export_the_same_spans(
    request_: ExportTraceServiceRequest, expected: dict[str, str | None], sink: SpanSink
) -> None:
    """Received bytes (light keys, changed scopes re-encoded) and a message without bytes (every
    key walked, the request re-encoded) export equal requests, with the readers' statuses."""
    policies = [{"name": "none", "type": "probabilistic", "probabilistic": {"sampling_percentage": 0}}]
    config = pipeline_config(sink, None, sampling={"policies": policies}, judge={"model": "openai/unused"})
    async with running(config, tick=None) as pipeline:
        fast = TraceBatch.from_bytes(request_.SerializeToString())
        await pipeline.processor.consume_traces(fast)
        await sink.wait_for(lambda: len(sink.trace_requests) == 1)  # before the next: not merged with it
        plain = TraceBatch(copy.deepcopy(request_))
        await pipeline.processor.consume_traces(plain)
        await sink.wait_for(lambda: len(sink.trace_requests) == 2)

    fast_out, plain_out = sink.trace_requests
    assert fast_out == plain_out
    assert statuses(fast_out) == expected
    assert not fast.is_modified or not any(expected.values())  # sent as spliced bytes, not a new encoding


def test_splicing_keeps_unchanged_scopes_byte_for_byte() -> None:
    """Only the replaced scope is re-encoded; the enclosing lengths follow (also across a varint
    size change), and every other byte is the received one."""
    big = named("chat", CHAT | {"padding": "x" * 100})  # pushes its scope's length past one varint byte
    request = build([[named("a", HTTP)], [named("b", HTTP)]], [[big], [named("c", HTTP)]])
    raw = request.SerializeToString()
    layout = scope_layout(raw)
    assert layout is not None and [len(scopes) for _, scopes in layout] == [2, 2]

    changed = copy.deepcopy(request)
    changed.resource_spans[1].scope_spans[0].spans[0].attributes.add(key=STATUS).value.string_value = "x" * 200
    spliced = splice_scopes(raw, layout, {(1, 0): changed.resource_spans[1].scope_spans[0].SerializeToString()})

    assert ExportTraceServiceRequest.FromString(spliced) == changed
    first = layout[0][0]
    assert spliced[: first[3]] == raw[: first[3]]  # the first resource, untouched
    last = layout[1][1][1]
    assert spliced.endswith(raw[last[0] : last[3]])  # the last scope, untouched


@pytest.mark.parametrize(
    "value",
    ["chat", "", "é" * 70, "x" * 300, 42, -1, 3.5, True, b"\x00\x01", ["a", 1], {"k": "v"}],
    ids=lambda v: type(v).__name__ + str(len(v) if isinstance(v, str | bytes | list | dict) else v),
)
def test_light_values_decode_as_the_span_attributes(value: Any) -> None:
    """A value read through the light key map equals the span's own attribute value."""
    out = span("s", {"k": value})
    light = light_request(build([[out]]).SerializeToString())
    assert light is not None
    view = SpanView(out, light_attributes=light.resource_spans[0].scope_spans[0].spans[0].attributes)

    assert view.get("k") == attributes_to_dict(out.attributes)["k"]
    assert view.get("missing", "default") == "default"
    assert "k" in view.attribute_keys()


def test_undecodable_bytes_give_no_light_request() -> None:
    """Bytes that are not a request give None (the stage then walks the spans' keys itself)."""
    assert light_request(b"\xff\xff\xff") is None
    assert scope_layout(b"\x0a\xff") is None


def test_appending_to_spans_keeps_every_other_byte() -> None:
    """A field appended to some spans' bytes decodes as that attribute added last; the enclosing
    lengths follow (also across a varint size change) and unchanged scopes keep their bytes."""
    big = named("chat", CHAT | {"padding": "x" * 100})
    request = build([[named("a", HTTP)], [named("b", HTTP), big, named("c", HTTP)]], [[named("d", HTTP)]])
    raw = request.SerializeToString()
    layout = scope_layout(raw)
    assert layout is not None
    expected = copy.deepcopy(request)
    status = expected.resource_spans[0].scope_spans[1].spans[1].attributes.add(key=STATUS)
    status.value.string_value = "y" * 150
    entry = status.SerializeToString()
    field = b"\x4a" + bytes(((len(entry) & 0x7F) | 0x80, len(entry) >> 7)) + entry

    spliced = append_to_spans(raw, layout, {(0, 1): {1: field}})

    assert spliced is not None
    assert ExportTraceServiceRequest.FromString(spliced) == expected
    first = layout[0][1][0]
    assert raw[first[0] : first[3]] in spliced  # the first scope, untouched (its resource's length changed)
    assert spliced.endswith(raw[layout[1][0][0] :])  # the second resource, untouched
    assert append_to_spans(raw, layout, {(0, 1): {7: field}}) is None  # no such span: None, not garbage


def test_remembered_classification_equals_asking_the_readers() -> None:
    """Classification remembered per span shape answers as the readers do, for every shape, twice."""
    spans = [
        named("chat", CHAT),
        named("agent", AGENT),
        named("litellm_request", {"gen_ai.system": "openai"}),
        named("raw_gen_ai_request", CHAT),
        named("llm", {"openinference.span.kind": "LLM"}),
        named("chain", {"openinference.span.kind": "CHAIN"}),
        named("oi", {"llm.input_messages.0.message.role": "user", "llm.request.type": "chat"}),
        named("indexed", {"gen_ai.prompt.0.role": "user", "gen_ai.system": "openai"}),
        named("model-only", {"gen_ai.request.model": "m", "gen_ai.provider.name": "p"}),
        named("model-alone", {"gen_ai.request.model": "m"}),
        named("unknown-op", {"gen_ai.operation.name": "brand_new"}),
        named("embeddings", {"gen_ai.operation.name": "embeddings"}),
        named("vercel", {"ai.operationId": "ai.generateText.doGenerate"}),
        named("vercel-tool", {"ai.operationId": "ai.toolCall"}),
        with_duplicate("dup", AGENT, "gen_ai.operation.name", "chat"),
    ]
    light = light_request(build([spans]).SerializeToString())
    assert light is not None
    maps = [s.attributes for s in light.resource_spans[0].scope_spans[0].spans]
    remembering, plain = GenAIReader(), GenAIReader()
    for _ in range(2):
        for span_, attributes in zip(spans, maps, strict=True):
            found = remembering.classify_light(SpanView(span_, light_attributes=attributes), attributes)
            expected = plain.classify(SpanView(span_))
            assert (found and (found[0], found[1].name)) == (expected and (expected[0], expected[1].name)), span_.name
