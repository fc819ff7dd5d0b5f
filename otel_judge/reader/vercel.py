"""Vercel AI SDK ``experimental_telemetry``: ``ai.generateText`` / ``ai.streamText`` (outer) wrapping
``…doGenerate`` / ``…doStream`` (one per model call).

The inner span is the model call and is the one judged; the outer span repeats the final answer of a
multi-step tool loop and is classified as a wrapper. Inner spans carry ``ai.prompt.messages`` (JSON
provider messages), ``ai.response.text`` and ``ai.response.toolCalls``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from otel_judge import semconv
from otel_judge.model import Exchange, Message, ToolCall
from otel_judge.reader.base import (
    Claim,
    ReadError,
    SpanView,
    as_int,
    as_text,
    decode_json,
    fill_semconv_metadata,
    first_finish_reason,
    placeholder,
    system_from_messages,
)


def _tool_call(part: Mapping[str, Any]) -> ToolCall:
    args = part.get("input", part.get("args"))
    return ToolCall(part.get("toolName"), part.get("toolCallId"), as_text(args))


def _tool_result(output: Any) -> str | None:
    if isinstance(output, Mapping) and "value" in output:  # {"type": "text"|"json", "value": ...}
        return as_text(output["value"])
    return as_text(output)


def _message(item: Mapping[str, Any]) -> list[Message]:
    role = str(item.get("role") or "user")
    content = item.get("content")
    if isinstance(content, str) or content is None:
        return [Message(role, content)]
    texts: list[str] = []
    calls: list[ToolCall] = []
    results: list[Message] = []
    for part in content if isinstance(content, list) else []:
        if not isinstance(part, Mapping):
            continue
        ptype = part.get("type")
        if ptype == "text":
            texts.append(str(part.get("text", "")))
        elif ptype == "tool-call":
            calls.append(_tool_call(part))
        elif ptype == "tool-result":
            results.append(
                Message(
                    "tool", _tool_result(part.get("output", part.get("result"))), tool_call_id=part.get("toolCallId")
                )
            )
        elif ptype in ("reasoning", "redacted-reasoning"):
            continue
        else:
            texts.append(placeholder(part))
    if results:
        return results
    return [Message(role, "\n".join(texts) if texts else None, tuple(calls))]


class VercelAIReader:
    """``judge_wrapper``: judge ``ai.generateText`` (prompt and final answer of the whole tool loop)
    instead of each ``doGenerate`` model call."""

    name = "vercel_ai"
    candidate_keys = semconv.CANDIDATE_KEYS
    #: What ``classify`` reads: (keys whose values, keys whose presence, whether the span name).
    classify_reads: tuple[frozenset[str], frozenset[str], bool] = (
        frozenset({semconv.AI_OPERATION_ID}),
        frozenset(),
        False,
    )

    def __init__(self, judge_wrapper: bool = False) -> None:
        self._judged = semconv.VERCEL_WRAPPER_OPERATIONS if judge_wrapper else semconv.VERCEL_MODEL_CALL_OPERATIONS

    def classify(self, view: SpanView) -> Claim | None:
        operation = view.get(semconv.AI_OPERATION_ID)
        if operation is None:
            return None
        return Claim.LLM_CALL if operation in self._judged else Claim.NOT_LLM  # tool calls, embeddings too

    def read(self, view: SpanView, logs: Sequence[LogRecord]) -> Exchange:
        attrs = view.attrs
        exchange = Exchange(format=self.name)
        if (raw := attrs.get(semconv.AI_PROMPT_MESSAGES)) is not None:
            exchange.sources.append(f"span:{semconv.AI_PROMPT_MESSAGES}")
            data = decode_json(raw, semconv.AI_PROMPT_MESSAGES)
            if not isinstance(data, list):
                raise ReadError(f"{semconv.AI_PROMPT_MESSAGES} is not a list")
            for item in data:
                if isinstance(item, Mapping):
                    exchange.messages.extend(_message(item))
        elif (raw := attrs.get(semconv.AI_PROMPT)) is not None:
            exchange.sources.append(f"span:{semconv.AI_PROMPT}")
            prompt = decode_json(raw, semconv.AI_PROMPT)
            if isinstance(prompt, Mapping):
                if prompt.get("system"):
                    exchange.messages.append(Message("system", str(prompt["system"])))
                if isinstance(prompt.get("prompt"), str):
                    exchange.messages.append(Message("user", prompt["prompt"]))
                for item in prompt.get("messages") or []:
                    if isinstance(item, Mapping):
                        exchange.messages.extend(_message(item))
        exchange.system = system_from_messages(exchange.messages)
        if (text := attrs.get(semconv.AI_RESPONSE_TEXT)) is not None:
            exchange.sources.append(f"span:{semconv.AI_RESPONSE_TEXT}")
            exchange.completion = str(text) or None
        if (raw := attrs.get(semconv.AI_RESPONSE_TOOL_CALLS)) is not None:
            exchange.sources.append(f"span:{semconv.AI_RESPONSE_TOOL_CALLS}")
            calls = decode_json(raw, semconv.AI_RESPONSE_TOOL_CALLS)
            exchange.tool_calls = [_tool_call(c) for c in calls or [] if isinstance(c, Mapping)]
        exchange.finish_reason = first_finish_reason(attrs.get(semconv.AI_RESPONSE_FINISH_REASON))
        exchange.response_id = attrs.get(semconv.AI_RESPONSE_ID)
        exchange.response_model = attrs.get(semconv.AI_RESPONSE_MODEL)
        exchange.request_model = attrs.get(semconv.AI_MODEL_ID)
        exchange.provider = attrs.get(semconv.AI_MODEL_PROVIDER)
        exchange.input_tokens = as_int(attrs.get(semconv.AI_USAGE_PROMPT_TOKENS))
        exchange.output_tokens = as_int(attrs.get(semconv.AI_USAGE_COMPLETION_TOKENS))
        return fill_semconv_metadata(exchange, attrs)
