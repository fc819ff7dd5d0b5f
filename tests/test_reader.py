"""Reading GenAI content from real captures of public instrumentation libraries (../shared/fixtures)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from otel_judge.otlp import py_to_any_value
from otel_judge.reader import GenAIReader, ReadError, SpanView, is_genai_span


def _span(attributes: dict[str, Any]) -> Span:
    span = Span(name="chat", trace_id=b"\x01" * 16, span_id=b"\x02" * 8)
    for key, value in attributes.items():
        kv = span.attributes.add()
        kv.key = key
        py_to_any_value(value, kv.value)
    return span


@pytest.mark.parametrize(
    ("attributes", "system", "messages", "completion"),
    [
        pytest.param(
            {
                "gen_ai.system_instructions": json.dumps([{"type": "text", "content": "Be brief."}]),
                "gen_ai.input.messages": json.dumps([{"role": "user", "parts": [{"type": "text", "content": "Hi"}]}]),
                "gen_ai.output.messages": json.dumps(
                    [{"role": "assistant", "parts": [{"type": "text", "content": "Hello"}], "finish_reason": "stop"}]
                ),
            },
            "Be brief.",
            [("user", "Hi")],
            "Hello",
            id="semconv-json-strings",
        ),
        pytest.param(
            {
                "gen_ai.input.messages": [{"role": "user", "parts": [{"type": "text", "content": "Hi"}]}],
                "gen_ai.output.messages": [{"role": "assistant", "parts": [{"type": "text", "content": "Yo"}]}],
            },
            None,
            [("user", "Hi")],
            "Yo",
            id="semconv-structured-values",
        ),
        pytest.param(
            {
                "gen_ai.input.messages": json.dumps(
                    [
                        {
                            "role": "user",
                            "parts": [
                                {"type": "text", "content": "What is in this picture?"},
                                {
                                    "type": "blob",
                                    "modality": "image",
                                    "mime_type": "image/png",
                                    "content": "iVBORw0KGgo=",
                                },
                            ],
                        }
                    ]
                ),
                "gen_ai.output.messages": json.dumps(
                    [
                        {
                            "role": "assistant",
                            "parts": [
                                {"type": "reasoning", "content": "hidden thoughts"},
                                {"type": "text", "content": "A cat."},
                            ],
                        }
                    ]
                ),
            },
            None,
            [("user", "What is in this picture?\n[image]")],
            "A cat.",
            id="non-text-parts-become-placeholders",
        ),
        pytest.param(
            {"gen_ai.prompt": "What is 2+2?", "gen_ai.completion": "4"},
            None,
            [("user", "What is 2+2?")],
            "4",
            id="deprecated-plain-text",
        ),
        pytest.param(
            {
                "gen_ai.prompt": json.dumps([{"role": "system", "content": "Sys"}, {"role": "user", "content": "Q"}]),
                "gen_ai.completion": json.dumps([{"index": 0, "message": {"role": "assistant", "content": "A"}}]),
            },
            "Sys",
            [("system", "Sys"), ("user", "Q")],
            "A",
            id="deprecated-json-messages-and-choices",
        ),
    ],
)
def test_reads_each_supported_shape(
    attributes: dict[str, Any], system: str | None, messages: list[tuple[str, str]], completion: str
) -> None:
    """Current conventions as JSON strings or structured values, and the deprecated attributes."""
    exchange = GenAIReader().read(SpanView(_span(attributes)))

    assert exchange is not None
    assert exchange.system == system
    assert [(m.role, m.content) for m in exchange.messages] == messages
    assert exchange.completion == completion


def test_undecodable_content_is_a_read_error_not_a_crash() -> None:
    """Truncated JSON in gen_ai.input.messages raises ReadError (the span then gets status read_error)."""
    span = _span({"gen_ai.input.messages": '[{"role": "user", "parts": [', "gen_ai.output.messages": "[]"})

    with pytest.raises(ReadError):
        GenAIReader().read(SpanView(span))


@pytest.mark.parametrize(
    ("keys", "genai"),
    [
        (["gen_ai.operation.name"], True),
        (["gen_ai.prompt"], True),
        (["gen_ai.input.messages"], True),
        (["http.route", "db.system"], False),
        ([], False),
    ],
    ids=["operation", "legacy-prompt", "input-messages", "http-span", "no-attributes"],
)
def test_genai_detection_looks_at_keys(keys: list[str], genai: bool) -> None:
    assert is_genai_span(_span(dict.fromkeys(keys, "x"))) is genai


def test_content_capture_off_means_no_content() -> None:
    """A GenAI span without content attributes (the instrumentations' default) has nothing to judge."""
    exchange = GenAIReader().read(SpanView(_span({"gen_ai.operation.name": "chat", "gen_ai.request.model": "m"})))

    assert exchange is None or not exchange.has_content
