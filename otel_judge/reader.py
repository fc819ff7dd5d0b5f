"""Reading the conversation out of GenAI spans.

A :class:`ContentReader` turns one span (plus the log records joined to it) into an
:class:`~otel_judge.model.Exchange`. :class:`GenAIReader` holds the list of format readers and asks
them in order; the first that recognises the span wins. Detection of GenAI spans looks at
attribute *keys* only (:func:`is_genai_span`), so spans that are not read cost almost nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from opentelemetry.proto.trace.v1.trace_pb2 import Span

from otel_judge import semconv
from otel_judge.model import Exchange, Message, ToolCall
from otel_judge.otlp import attributes_to_dict

__all__ = [
    "ContentReader",
    "GenAIReader",
    "ReadError",
    "SemconvReader",
    "SpanView",
    "is_genai_span",
]


class ReadError(ValueError):
    """The span claims GenAI content but it cannot be decoded (e.g. truncated JSON)."""


class SpanView:
    """A span with its resource and scope, decoding attributes only when first asked."""

    __slots__ = ("_attrs", "resource", "scope", "span")

    def __init__(self, span: Span, resource: Any = None, scope: Any = None) -> None:
        self.span = span
        self.resource = resource
        self.scope = scope
        self._attrs: dict[str, Any] | None = None

    @property
    def attrs(self) -> dict[str, Any]:
        if self._attrs is None:
            self._attrs = attributes_to_dict(self.span.attributes)
        return self._attrs


class ContentReader(Protocol):
    """One telemetry format. ``name`` is reported as the exchange's ``format``."""

    name: str

    def read(self, view: SpanView, logs: Sequence[Any]) -> Exchange | None:
        """Return the exchange if this format is present on the span (or its logs), else ``None``.

        Raise :class:`ReadError` when the format is present but undecodable.
        """
        ...


def is_genai_span(span: Span, markers: frozenset[str] = semconv.GENAI_MARKER_KEYS) -> bool:
    """True when any attribute key marks a GenAI span. Looks at keys only, never values."""
    return any(kv.key in markers for kv in span.attributes)


# --------------------------------------------------------------------------- helpers


def _as_int(value: Any) -> int | None:
    try:
        return int(value) if value is not None and not isinstance(value, bool) else None
    except (TypeError, ValueError):
        return None


def _as_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _decode_json(value: Any, key: str) -> Any:
    """Values come as JSON strings (span attributes) or structured AnyValues (log records)."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError as exc:
            raise ReadError(f"{key} is not valid JSON: {exc.args[0][:80]}") from None
    return value


_PLACEHOLDERS = {"image": "[image]", "audio": "[audio]", "video": "[video]", "file": "[file]"}


def _placeholder(part: Mapping[str, Any]) -> str:
    ptype = str(part.get("type", "part"))
    modality = str(part.get("modality") or part.get("mime_type") or "").split("/")[0]
    return _PLACEHOLDERS.get(modality) or _PLACEHOLDERS.get(ptype) or f"[{ptype}]"


def _read_parts(parts: Iterable[Any]) -> tuple[str | None, list[ToolCall], str | None]:
    """Text, tool calls and tool-call-response id of a semconv ``parts`` list."""
    texts: list[str] = []
    calls: list[ToolCall] = []
    response_id: str | None = None
    for part in parts:
        if isinstance(part, str):
            texts.append(part)
            continue
        if not isinstance(part, Mapping):
            continue
        ptype = part.get("type")
        if ptype == "text":
            if part.get("content") is not None:
                texts.append(str(part["content"]))
        elif ptype == "tool_call":
            calls.append(ToolCall(name=part.get("name"), id=part.get("id"), arguments=_as_text(part.get("arguments"))))
        elif ptype == "tool_call_response":
            response_id = part.get("id")
            response = part.get("response", part.get("result"))
            if response is not None:
                texts.append(_as_text(response) or "")
        elif ptype == "reasoning":
            continue  # the model's hidden reasoning is not part of the answer being judged
        else:
            texts.append(_placeholder(part))
    return ("\n".join(texts) if texts else None), calls, response_id


def _read_messages(value: Any, key: str) -> list[tuple[str, str | None, list[ToolCall], str | None, str | None]]:
    data = _decode_json(value, key)
    if not isinstance(data, list):
        raise ReadError(f"{key} is not a list of messages")
    out = []
    for item in data:
        if not isinstance(item, Mapping):
            raise ReadError(f"{key} has a message that is not an object")
        role = str(item.get("role") or "user")
        parts = item.get("parts")
        if parts is None and "content" in item:  # OpenAI-style message in a semconv slot
            parts = [{"type": "text", "content": item["content"]}] if item["content"] is not None else []
        text, calls, response_id = _read_parts(parts or [])
        out.append((role, text, calls, response_id, item.get("finish_reason")))
    return out


def _fill_metadata(exchange: Exchange, attrs: Mapping[str, Any]) -> Exchange:
    exchange.request_model = attrs.get(semconv.GEN_AI_REQUEST_MODEL)
    exchange.response_model = attrs.get(semconv.GEN_AI_RESPONSE_MODEL)
    exchange.provider = attrs.get(semconv.GEN_AI_PROVIDER_NAME) or attrs.get(semconv.GEN_AI_SYSTEM)
    exchange.response_id = attrs.get(semconv.GEN_AI_RESPONSE_ID)
    exchange.input_tokens = _as_int(attrs.get(semconv.GEN_AI_USAGE_INPUT_TOKENS))
    exchange.output_tokens = _as_int(attrs.get(semconv.GEN_AI_USAGE_OUTPUT_TOKENS))
    reasons = attrs.get(semconv.GEN_AI_RESPONSE_FINISH_REASONS)
    if isinstance(reasons, list) and reasons and exchange.finish_reason is None:
        exchange.finish_reason = str(reasons[0])
    return exchange


# --------------------------------------------------------------------------- format readers


class SemconvReader:
    """Current GenAI conventions: ``gen_ai.input.messages`` / ``gen_ai.output.messages`` /
    ``gen_ai.system_instructions`` as JSON strings or structured values (role + typed parts)."""

    name = "otel_genai"

    def read(self, view: SpanView, logs: Sequence[Any]) -> Exchange | None:
        attrs = view.attrs
        inputs = attrs.get(semconv.GEN_AI_INPUT_MESSAGES)
        outputs = attrs.get(semconv.GEN_AI_OUTPUT_MESSAGES)
        instructions = attrs.get(semconv.GEN_AI_SYSTEM_INSTRUCTIONS)
        if inputs is None and outputs is None and instructions is None:
            return None
        exchange = Exchange(format=self.name)
        system_texts: list[str] = []
        if instructions is not None:
            exchange.sources.append(semconv.GEN_AI_SYSTEM_INSTRUCTIONS)
            data = (
                _decode_json(instructions, semconv.GEN_AI_SYSTEM_INSTRUCTIONS)
                if isinstance(instructions, str) and instructions.lstrip().startswith(("[", "{"))
                else instructions
            )
            if isinstance(data, str):
                system_texts.append(data)
            elif isinstance(data, list):
                text, _, _ = _read_parts(data)
                if text:
                    system_texts.append(text)
        if inputs is not None:
            exchange.sources.append(semconv.GEN_AI_INPUT_MESSAGES)
            for role, text, calls, response_id, _ in _read_messages(inputs, semconv.GEN_AI_INPUT_MESSAGES):
                exchange.messages.append(Message(role, text, tuple(calls), response_id))
                if role == "system" and text and not instructions:
                    system_texts.append(text)
        if outputs is not None:
            exchange.sources.append(semconv.GEN_AI_OUTPUT_MESSAGES)
            texts: list[str] = []
            for _, text, calls, _, finish in _read_messages(outputs, semconv.GEN_AI_OUTPUT_MESSAGES):
                if text:
                    texts.append(text)
                exchange.tool_calls.extend(calls)
                if finish and exchange.finish_reason is None:
                    exchange.finish_reason = str(finish)
            exchange.completion = "\n".join(texts) if texts else None
        exchange.system = "\n".join(system_texts) if system_texts else None
        return _fill_metadata(exchange, attrs)


class LegacyPromptReader:
    """Deprecated ``gen_ai.prompt`` / ``gen_ai.completion`` attributes: plain text, or JSON
    lists of OpenAI-style messages / choices."""

    name = "otel_genai_legacy"

    def read(self, view: SpanView, logs: Sequence[Any]) -> Exchange | None:
        attrs = view.attrs
        prompt = attrs.get(semconv.GEN_AI_PROMPT)
        completion = attrs.get(semconv.GEN_AI_COMPLETION)
        if prompt is None and completion is None:
            return None
        exchange = Exchange(format=self.name)
        if prompt is not None:
            exchange.sources.append(semconv.GEN_AI_PROMPT)
            for message in self._messages(prompt, "user"):
                if message.role == "system" and message.content and exchange.system is None:
                    exchange.system = message.content
                exchange.messages.append(message)
        if completion is not None:
            exchange.sources.append(semconv.GEN_AI_COMPLETION)
            outs = self._messages(completion, "assistant")
            texts = [m.content for m in outs if m.content]
            exchange.completion = "\n".join(texts) if texts else None
            for m in outs:
                exchange.tool_calls.extend(m.tool_calls)
        return _fill_metadata(exchange, attrs)

    @staticmethod
    def _messages(value: Any, default_role: str) -> list[Message]:
        data: Any = value
        if isinstance(value, str) and value.lstrip().startswith("["):
            try:
                data = json.loads(value)
            except ValueError:
                data = value
        if isinstance(data, str):
            return [Message(default_role, data)]
        if not isinstance(data, list):
            return [Message(default_role, _as_text(data))]
        out: list[Message] = []
        for entry in data:
            is_choice = isinstance(entry, Mapping) and isinstance(entry.get("message"), Mapping)
            item = entry["message"] if is_choice else entry
            if not isinstance(item, Mapping):
                out.append(Message(default_role, _as_text(item)))
                continue
            content = item.get("content")
            if isinstance(content, list):
                content, _, _ = _read_parts(
                    [
                        {"type": "text", "content": c.get("text")} if isinstance(c, Mapping) and "text" in c else c
                        for c in content
                    ]
                )
            calls = tuple(
                ToolCall(
                    name=(c.get("function") or {}).get("name"),
                    id=c.get("id"),
                    arguments=_as_text((c.get("function") or {}).get("arguments")),
                )
                for c in item.get("tool_calls") or []
                if isinstance(c, Mapping)
            )
            role = str(item.get("role") or default_role)
            out.append(Message(role, _as_text(content), calls, item.get("tool_call_id")))
        return out


DEFAULT_READERS: tuple[ContentReader, ...] = (SemconvReader(), LegacyPromptReader())


class GenAIReader:
    """Chooses the format reader per span: the first of ``readers`` that recognises it."""

    def __init__(self, readers: Sequence[ContentReader] = DEFAULT_READERS) -> None:
        self.readers = tuple(readers)

    def read(self, view: SpanView, logs: Sequence[Any] = ()) -> Exchange | None:
        for reader in self.readers:
            exchange = reader.read(view, logs)
            if exchange is not None:
                return exchange
        return None
