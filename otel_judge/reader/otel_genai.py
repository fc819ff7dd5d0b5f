"""The OpenTelemetry GenAI semantic conventions, current and deprecated, on spans and in logs.

One reader for the whole family, because a span tells which generation it follows only by where
its content sits. In order of preference (content is read from one place only, never merged, so a
library that writes it twice, like OpenLIT, is read once):

1. span attributes ``gen_ai.input.messages`` / ``gen_ai.output.messages`` /
   ``gen_ai.system_instructions`` (JSON strings, or structured values);
2. the log event ``gen_ai.client.inference.operation.details`` carrying the same attributes
   (structured values from the official instrumentation and OpenLIT, JSON strings from LiteLLM);
3. v1.30-v1.36 per-message events ``gen_ai.{system,user,assistant,tool}.message`` and
   ``gen_ai.choice`` with the content in the body; LiteLLM's ``gen_ai.content.prompt`` /
   ``gen_ai.content.completion`` records; v1.27 span events of those names;
4. the deprecated span attributes ``gen_ai.prompt`` / ``gen_ai.completion``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from otel_judge import semconv
from otel_judge.model import Exchange, Message, ToolCall
from otel_judge.otlp import attributes_to_dict
from otel_judge.reader.base import (
    Claim,
    SpanView,
    as_text,
    event_name,
    fill_semconv_metadata,
    openai_content,
    openai_message,
    openai_tool_calls,
    record_attrs,
    record_body,
    semconv_messages,
    set_output,
    system_from_messages,
    system_text,
)
from otel_judge.reader.openllmetry import indexed_messages

_CONTENT_ATTRS = (semconv.GEN_AI_INPUT_MESSAGES, semconv.GEN_AI_OUTPUT_MESSAGES, semconv.GEN_AI_SYSTEM_INSTRUCTIONS)
_NON_LLM_OPERATIONS = frozenset({"embeddings", "execute_tool", "create_agent", "invoke_agent", "retrieval"})


class OtelGenAIReader:
    name = "otel_genai"
    candidate_keys = semconv.CANDIDATE_KEYS
    #: What ``classify`` reads: (keys whose values, keys whose presence, whether the span name).
    classify_reads: tuple[frozenset[str], frozenset[str], bool] = (
        frozenset({semconv.GEN_AI_OPERATION_NAME}),
        frozenset(
            {
                *_CONTENT_ATTRS,
                semconv.GEN_AI_PROMPT,
                semconv.GEN_AI_COMPLETION,
                semconv.GEN_AI_REQUEST_MODEL,
                semconv.GEN_AI_SYSTEM,
                semconv.GEN_AI_PROVIDER_NAME,
            }
        ),
        False,
    )

    def classify(self, view: SpanView) -> Claim | None:
        operation = view.get(semconv.GEN_AI_OPERATION_NAME)
        if operation is not None:
            if operation in semconv.LLM_OPERATIONS:
                return Claim.LLM_CALL
            if operation in _NON_LLM_OPERATIONS:
                return Claim.NOT_LLM
        keys = view.attribute_keys()
        if any(k in keys for k in _CONTENT_ATTRS) or semconv.GEN_AI_PROMPT in keys or semconv.GEN_AI_COMPLETION in keys:
            return Claim.LLM_CALL
        if semconv.GEN_AI_REQUEST_MODEL in keys and (
            semconv.GEN_AI_SYSTEM in keys or semconv.GEN_AI_PROVIDER_NAME in keys
        ):
            return Claim.LLM_CALL
        if operation is not None:
            return Claim.LLM_CALL  # an operation we do not know yet: better judged than missed
        return None

    def read(self, view: SpanView, logs: Sequence[LogRecord]) -> Exchange:
        attrs = view.attrs
        exchange = (
            self._from_attributes(attrs, self.name, "span")
            or self._from_operation_details(logs)
            or self._from_message_events(view, logs)
            or self._from_deprecated(attrs)
            or Exchange(format=self.name)
        )
        return fill_semconv_metadata(exchange, attrs)

    # ----------------------------------------------------------------- 1 and 2: current conventions

    @staticmethod
    def _from_attributes(attrs: Mapping[str, Any], fmt: str, where: str) -> Exchange | None:
        inputs = attrs.get(semconv.GEN_AI_INPUT_MESSAGES)
        outputs = attrs.get(semconv.GEN_AI_OUTPUT_MESSAGES)
        instructions = attrs.get(semconv.GEN_AI_SYSTEM_INSTRUCTIONS)
        if inputs is None and outputs is None and instructions is None:
            return None
        exchange = Exchange(format=fmt)
        if instructions is not None:
            exchange.sources.append(f"{where}:{semconv.GEN_AI_SYSTEM_INSTRUCTIONS}")
            exchange.system = system_text(instructions, semconv.GEN_AI_SYSTEM_INSTRUCTIONS)
        if inputs is not None:
            exchange.sources.append(f"{where}:{semconv.GEN_AI_INPUT_MESSAGES}")
            exchange.messages = [m for m, _ in semconv_messages(inputs, semconv.GEN_AI_INPUT_MESSAGES)]
            if exchange.system is None:
                exchange.system = system_from_messages(exchange.messages)
        if outputs is not None:
            exchange.sources.append(f"{where}:{semconv.GEN_AI_OUTPUT_MESSAGES}")
            pairs = semconv_messages(outputs, semconv.GEN_AI_OUTPUT_MESSAGES)
            set_output(exchange, [m for m, _ in pairs], [f for _, f in pairs])
        if outputs is not None and not exchange.tool_calls and not exchange.completion:
            # LiteLLM writes `parts: []` and keeps the tool calls in legacy indexed keys. Only then:
            # when it writes onto a caller's span, stale keys of an earlier call can linger.
            exchange.tool_calls.extend(_legacy_indexed_calls(attrs))
        return exchange

    def _from_operation_details(self, logs: Sequence[LogRecord]) -> Exchange | None:
        for record in logs:
            if event_name(record) != semconv.EVENT_OPERATION_DETAILS:
                continue
            attrs = record_attrs(record)
            exchange = self._from_attributes(attrs, "otel_genai_log", f"log:{semconv.EVENT_OPERATION_DETAILS}")
            if exchange is not None:
                return fill_semconv_metadata(exchange, attrs)
        return None

    # ----------------------------------------------------------------- 3: one event per message

    def _from_message_events(self, view: SpanView, logs: Sequence[LogRecord]) -> Exchange | None:
        events: list[tuple[str, Any, Mapping[str, Any]]] = [
            (event_name(r), record_body(r), record_attrs(r))
            for r in logs
            if event_name(r) != semconv.EVENT_OPERATION_DETAILS
        ]
        if not events:  # v1.27 put prompt/completion on span events
            events = [
                (str(e.name), None, attributes_to_dict(e.attributes))
                for e in view.span.events
                if e.name in (semconv.EVENT_CONTENT_PROMPT, semconv.EVENT_CONTENT_COMPLETION)
            ]
        if not events:
            return None
        exchange = Exchange(format="otel_genai_events")
        outputs: list[Message] = []
        reasons: list[str | None] = []
        for name, body, attrs in events:
            exchange.sources.append(f"event:{name}")
            body_map: Mapping[str, Any] = body if isinstance(body, Mapping) else {}
            if name in semconv.MESSAGE_EVENTS:
                role = semconv.MESSAGE_EVENTS[name]
                calls = tuple(openai_tool_calls(body_map.get("tool_calls")))
                content = openai_content(body_map.get("content")) if body_map else as_text(body)
                tool_call_id = body_map.get("id") if role == "tool" else None
                exchange.messages.append(Message(role, content, calls, tool_call_id))
            elif name == semconv.EVENT_CHOICE:
                choice = body_map.get("message")
                choice_map: Mapping[str, Any] = choice if isinstance(choice, Mapping) else {}
                choice_calls = openai_tool_calls(choice_map.get("tool_calls") or body_map.get("tool_calls"))
                outputs.append(Message("assistant", openai_content(choice_map.get("content")), tuple(choice_calls)))
                reasons.append(body_map.get("finish_reason"))
            elif name == semconv.EVENT_CONTENT_PROMPT:
                exchange.messages.extend(_prompt_event_messages(body, attrs))
            elif name == semconv.EVENT_CONTENT_COMPLETION:
                message = body_map.get("message") if isinstance(body_map.get("message"), Mapping) else None
                if message is not None:
                    outputs.append(openai_message(message, "assistant"))
                else:
                    text = attrs.get(semconv.LITELLM_MESSAGE_CONTENT, attrs.get(semconv.GEN_AI_COMPLETION))
                    outputs.extend(_prompt_event_messages(None, {semconv.GEN_AI_PROMPT: text}, "assistant"))
                reasons.append(body_map.get("finish_reason"))
        exchange.system = system_from_messages(exchange.messages)
        set_output(exchange, outputs, reasons)
        return exchange

    # ----------------------------------------------------------------- 4: gen_ai.prompt / completion

    @staticmethod
    def _from_deprecated(attrs: Mapping[str, Any]) -> Exchange | None:
        prompt = attrs.get(semconv.GEN_AI_PROMPT)
        completion = attrs.get(semconv.GEN_AI_COMPLETION)
        if prompt is None and completion is None:
            return None
        exchange = Exchange(format="otel_genai_legacy")
        if prompt is not None:
            exchange.sources.append(f"span:{semconv.GEN_AI_PROMPT}")
            exchange.messages = _loose_messages(prompt, "user")
            exchange.system = system_from_messages(exchange.messages)
        if completion is not None:
            exchange.sources.append(f"span:{semconv.GEN_AI_COMPLETION}")
            set_output(exchange, _loose_messages(completion, "assistant"))
        return exchange


def _loose_messages(value: Any, default_role: str) -> list[Message]:
    """Plain text, or a JSON list of OpenAI-style messages or choices."""
    data: Any = value
    if isinstance(value, str) and value.lstrip().startswith(("[", "{")):
        try:
            data = json.loads(value)
        except ValueError:
            data = value
    if isinstance(data, Mapping):
        data = [data]
    if not isinstance(data, list):
        return [Message(default_role, as_text(data))]
    out = []
    for entry in data:
        is_choice = isinstance(entry, Mapping) and isinstance(entry.get("message"), Mapping)
        item = entry["message"] if is_choice else entry
        out.append(
            openai_message(item, default_role) if isinstance(item, Mapping) else Message(default_role, as_text(item))
        )
    return out


def _prompt_event_messages(body: Any, attrs: Mapping[str, Any], default_role: str = "user") -> list[Message]:
    if isinstance(body, Mapping) and ("role" in body or "content" in body):
        return [openai_message(body, default_role)]
    text = attrs.get(semconv.GEN_AI_PROMPT)
    return _loose_messages(text, default_role) if text is not None else []


def _legacy_indexed_calls(attrs: Mapping[str, Any]) -> list[Any]:
    """``gen_ai.completion.N.function_call.*`` / ``.tool_calls.M.*`` (LiteLLM, old OpenLLMetry)."""
    calls: list[ToolCall] = []
    for message in indexed_messages(attrs, semconv.GEN_AI_COMPLETION_INDEXED_PREFIX, "assistant"):
        calls.extend(message.tool_calls)
    return calls
