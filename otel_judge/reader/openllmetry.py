"""OpenLLMetry (Traceloop) up to 0.54: flattened ``gen_ai.prompt.N.*`` / ``gen_ai.completion.N.*``.

Later OpenLLMetry versions write the current GenAI conventions and are read by
:mod:`otel_judge.reader.otel_genai`.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from otel_judge import semconv
from otel_judge.model import Exchange, Message, ToolCall
from otel_judge.reader.base import Claim, SpanView, as_text, fill_semconv_metadata, set_output, system_from_messages

_INDEXED = re.compile(r"(\d+)\.(.+)")
_TOOL = re.compile(r"tool_calls\.(\d+)\.(\w+)")


def indexed_messages(attrs: Mapping[str, Any], prefix: str, default_role: str) -> list[Message]:
    """Rebuild messages from ``<prefix>N.role|content|tool_call_id|tool_calls.M.*|function_call.*``."""
    fields: dict[int, dict[str, Any]] = defaultdict(dict)
    calls: dict[int, dict[int, dict[str, Any]]] = defaultdict(lambda: defaultdict(dict))
    for key, value in attrs.items():
        if not key.startswith(prefix):
            continue
        match = _INDEXED.fullmatch(key[len(prefix) :])
        if match is None:
            continue
        index, rest = int(match.group(1)), match.group(2)
        tool = _TOOL.fullmatch(rest)
        if tool is not None:
            calls[index][int(tool.group(1))][tool.group(2)] = value
        elif rest.startswith("function_call."):
            calls[index][-1][rest.removeprefix("function_call.")] = value
        else:
            fields[index][rest] = value
    out = []
    for index in sorted(set(fields) | set(calls)):
        item = fields.get(index, {})
        tool_calls = tuple(
            ToolCall(c.get("name"), c.get("id"), as_text(c.get("arguments"))) for _, c in sorted(calls[index].items())
        )
        out.append(
            Message(
                str(item.get("role") or default_role),
                as_text(item.get("content")),
                tool_calls,
                item.get("tool_call_id"),
            )
        )
    return out


class OpenLLMetryReader:
    name = "openllmetry_indexed"
    candidate_keys = semconv.CANDIDATE_KEYS
    #: What ``classify`` reads: (keys whose values, keys whose presence, whether the span name).
    classify_reads: tuple[frozenset[str], frozenset[str], bool] = (
        frozenset(),
        frozenset({"gen_ai.prompt.0.role", "gen_ai.prompt.0.content", "gen_ai.completion.0.role"}),
        False,
    )

    def classify(self, view: SpanView) -> Claim | None:
        # Only spans that carry the indexed keys: content-less spans and newer versions are read as
        # GenAI conventions by the generic reader.
        keys = view.attribute_keys()
        if "gen_ai.prompt.0.role" in keys or "gen_ai.prompt.0.content" in keys or "gen_ai.completion.0.role" in keys:
            return Claim.LLM_CALL
        return None

    def read(self, view: SpanView, logs: Sequence[LogRecord]) -> Exchange:
        attrs = view.attrs
        exchange = Exchange(format=self.name)
        exchange.messages = indexed_messages(attrs, semconv.GEN_AI_PROMPT_INDEXED_PREFIX, "user")
        outputs = indexed_messages(attrs, semconv.GEN_AI_COMPLETION_INDEXED_PREFIX, "assistant")
        if exchange.messages:
            exchange.sources.append(f"span:{semconv.GEN_AI_PROMPT_INDEXED_PREFIX}N.*")
        if outputs:
            exchange.sources.append(f"span:{semconv.GEN_AI_COMPLETION_INDEXED_PREFIX}N.*")
        exchange.system = system_from_messages(exchange.messages)
        set_output(exchange, outputs, [attrs.get(semconv.GEN_AI_RESPONSE_FINISH_REASON_LEGACY)])
        return fill_semconv_metadata(exchange, attrs)
