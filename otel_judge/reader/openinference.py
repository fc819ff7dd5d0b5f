"""OpenInference (Arize Phoenix) conventions, incl. its LangChain instrumentation.

Content: ``llm.input_messages.N.message.role|content|contents.M.message_content.*|tool_calls.M.tool_call.*|
tool_call_id`` and ``llm.output_messages.N.message.*``; ``input.value`` / ``output.value`` only as a
fallback. ``__REDACTED__`` (hide_io) means there is no content.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from otel_judge import semconv
from otel_judge.model import Exchange, Message, ToolCall
from otel_judge.reader.base import (
    Claim,
    SpanView,
    as_int,
    as_text,
    openai_message,
    placeholder,
    set_output,
    system_from_messages,
)

_MESSAGE_KEY = re.compile(r"(\d+)\.message\.(.+)")
_TOOL_KEY = re.compile(r"tool_calls\.(\d+)\.tool_call\.(.+)")
_CONTENTS_KEY = re.compile(r"contents\.(\d+)\.message_content\.(.+)")


def _messages(attrs: Mapping[str, Any], prefix: str, default_role: str) -> list[Message]:
    fields: dict[int, dict[str, Any]] = defaultdict(dict)
    tools: dict[int, dict[int, dict[str, Any]]] = defaultdict(lambda: defaultdict(dict))
    contents: dict[int, dict[int, dict[str, Any]]] = defaultdict(lambda: defaultdict(dict))
    for key, value in attrs.items():
        if not key.startswith(prefix):
            continue
        match = _MESSAGE_KEY.fullmatch(key[len(prefix) :])
        if match is None:
            continue
        index, rest = int(match.group(1)), match.group(2)
        if tool := _TOOL_KEY.fullmatch(rest):
            tools[index][int(tool.group(1))][tool.group(2)] = value
        elif part := _CONTENTS_KEY.fullmatch(rest):
            contents[index][int(part.group(1))][part.group(2)] = value
        else:
            fields[index][rest] = value
    out = []
    for index in sorted(set(fields) | set(tools) | set(contents)):
        item = fields.get(index, {})
        text = as_text(item.get("content"))
        if text is None and contents.get(index):
            texts = []
            for _, content_part in sorted(contents[index].items()):
                is_text = content_part.get("type") == "text" and "text" in content_part
                texts.append(str(content_part["text"]) if is_text else placeholder(content_part))
            text = "\n".join(texts) if texts else None
        calls = tuple(
            ToolCall(c.get("function.name"), c.get("id"), as_text(c.get("function.arguments")))
            for _, c in sorted(tools[index].items())
        )
        out.append(Message(str(item.get("role") or default_role), text, calls, item.get("tool_call_id")))
    return out


def _fallback_json(value: Any) -> Any:
    if not isinstance(value, str) or value == semconv.OPENINFERENCE_REDACTED:
        return None
    try:
        return json.loads(value)
    except ValueError:
        return None


_FIRST_INPUT_ROLE = f"{semconv.LLM_INPUT_MESSAGES_PREFIX}0.message.role"


class OpenInferenceReader:
    name = "openinference"
    candidate_keys = semconv.CANDIDATE_KEYS
    #: What ``classify`` reads: (keys whose values, keys whose presence, whether the span name).
    classify_reads: tuple[frozenset[str], frozenset[str], bool] = (
        frozenset({semconv.OPENINFERENCE_SPAN_KIND}),
        frozenset({_FIRST_INPUT_ROLE}),
        False,
    )

    def classify(self, view: SpanView) -> Claim | None:
        kind = view.get(semconv.OPENINFERENCE_SPAN_KIND)
        if kind is not None:
            return Claim.LLM_CALL if str(kind).upper() == semconv.OPENINFERENCE_KIND_LLM else Claim.NOT_LLM
        if _FIRST_INPUT_ROLE in view.attribute_keys():  # indices start at 0
            return Claim.LLM_CALL
        return None

    def read(self, view: SpanView, logs: Sequence[LogRecord]) -> Exchange:
        attrs = view.attrs
        exchange = Exchange(format=self.name)
        exchange.messages = _messages(attrs, semconv.LLM_INPUT_MESSAGES_PREFIX, "user")
        outputs = _messages(attrs, semconv.LLM_OUTPUT_MESSAGES_PREFIX, "assistant")
        if exchange.messages:
            exchange.sources.append(f"span:{semconv.LLM_INPUT_MESSAGES_PREFIX}N.message.*")
        if outputs:
            exchange.sources.append(f"span:{semconv.LLM_OUTPUT_MESSAGES_PREFIX}N.message.*")
        request = _fallback_json(attrs.get(semconv.INPUT_VALUE))
        response = _fallback_json(attrs.get(semconv.OUTPUT_VALUE))
        if not exchange.messages and isinstance(request, Mapping) and isinstance(request.get("messages"), list):
            exchange.sources.append(f"span:{semconv.INPUT_VALUE}")
            exchange.messages = [openai_message(m, "user") for m in request["messages"] if isinstance(m, Mapping)]
        if not outputs and isinstance(response, Mapping) and isinstance(response.get("choices"), list):
            exchange.sources.append(f"span:{semconv.OUTPUT_VALUE}")
            outputs = [
                openai_message(c["message"], "assistant")
                for c in response["choices"]
                if isinstance(c, Mapping) and isinstance(c.get("message"), Mapping)
            ]
        exchange.system = system_from_messages(exchange.messages)
        set_output(exchange, outputs, [attrs.get(semconv.LLM_FINISH_REASON)])
        params = _fallback_json(attrs.get(semconv.LLM_INVOCATION_PARAMETERS))
        exchange.request_model = (params.get("model") if isinstance(params, Mapping) else None) or (
            request.get("model") if isinstance(request, Mapping) else None
        )
        exchange.response_model = attrs.get(semconv.LLM_MODEL_NAME)
        exchange.provider = attrs.get(semconv.LLM_PROVIDER) or attrs.get(semconv.LLM_SYSTEM)
        exchange.response_id = response.get("id") if isinstance(response, Mapping) else None
        exchange.input_tokens = as_int(attrs.get(semconv.LLM_TOKEN_COUNT_PROMPT))
        exchange.output_tokens = as_int(attrs.get(semconv.LLM_TOKEN_COUNT_COMPLETION))
        return exchange
