"""What every format reader shares: the span view, the Protocol, and decoding helpers."""

from __future__ import annotations

import ast
import enum
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from otel_judge import semconv
from otel_judge.model import Exchange, Message, ToolCall
from otel_judge.otlp import any_value_to_py, attributes_to_dict


class ReadError(ValueError):
    """The span claims GenAI content but it cannot be decoded (e.g. truncated JSON)."""


class Claim(enum.Enum):
    """A reader's verdict on a span: a model call in its format, or its format but not a model call."""

    LLM_CALL = "llm_call"
    NOT_LLM = "not_llm"  # e.g. an agent/chain/tool span, a wrapper around the real model call


class SpanView:
    """A span with its resource and scope, decoding attributes only when first asked.

    ``light_attributes``: the span's attributes as a map from key to serialised ``AnyValue``, when
    the caller decoded them already (:mod:`otel_judge.reader.scan`): key lookups then never walk
    the span, and one value is decoded from its own bytes."""

    __slots__ = ("_attrs", "_index", "_light", "_name", "resource", "scope", "span")

    def __init__(
        self, span: Span, resource: Any = None, scope: Any = None, light_attributes: Mapping[str, bytes] | None = None
    ) -> None:
        self.span = span
        self.resource = resource
        self.scope = scope
        self._attrs: dict[str, Any] | None = None
        self._index: dict[str, int] | None = None  # key -> position: one pass over the keys, no values
        self._light = light_attributes
        self._name: str | None = None

    def _positions(self) -> dict[str, int]:
        if self._index is None:
            self._index = {kv.key: i for i, kv in enumerate(self.span.attributes)}
        return self._index

    def attribute_keys(self) -> Any:
        """Attribute keys, without decoding any value (cheap: what classification looks at)."""
        if self._light is not None:
            return self._light
        return self._positions().keys()

    def get(self, key: str, default: Any = None) -> Any:
        """One attribute's value, decoding only that value unless all were decoded already. With a
        repeated key the last one wins, as in :attr:`attrs`."""
        if self._attrs is not None:
            return self._attrs.get(key, default)
        if self._light is not None:
            raw = self._light.get(key)
            if raw is None:
                return default
            if len(raw) > 1 and raw[0] == 0x0A and raw[1] == len(raw) - 2:  # a short string_value alone
                return raw[2:].decode()
            return any_value_to_py(AnyValue.FromString(raw))
        position = self._positions().get(key)
        if position is None:
            return default
        return any_value_to_py(self.span.attributes[position].value)

    @property
    def attrs(self) -> dict[str, Any]:
        if self._attrs is None:
            self._attrs = attributes_to_dict(self.span.attributes)
        return self._attrs

    @property
    def name(self) -> str:
        if self._name is None:
            self._name = str(self.span.name)
        return self._name


class ContentReader(Protocol):
    """One telemetry format. ``name`` is reported as the exchange's ``format``.

    ``classify`` answers ``None`` when the span is not in this format at all. ``read`` is only called
    for spans this reader classified as ``LLM_CALL``; it returns the exchange (possibly without
    content, e.g. when capture was off) and raises :class:`ReadError` for undecodable content.
    ``logs`` are the content log records joined to the span (any of ``semconv.CONTENT_EVENTS``).
    """

    name: str
    #: Attribute keys whose presence makes a span worth classifying (keys only, never values). The
    #: built-in readers' keys are ``semconv.CANDIDATE_KEYS``; a plugin adds its own.
    candidate_keys: frozenset[str]

    def classify(self, view: SpanView) -> Claim | None: ...

    def read(self, view: SpanView, logs: Sequence[LogRecord]) -> Exchange: ...


# --------------------------------------------------------------------------- log records


def event_name(record: LogRecord) -> str:
    """The event name of a log record: ``LogRecord.event_name``, or an ``event_name`` attribute (LiteLLM)."""
    if record.event_name:
        return str(record.event_name)
    for kv in record.attributes:
        if kv.key == semconv.EVENT_NAME_ATTRIBUTE:
            return str(kv.value.string_value)
    return ""


def is_content_record(record: LogRecord) -> bool:
    return event_name(record) in semconv.CONTENT_EVENTS


def record_attrs(record: LogRecord) -> dict[str, Any]:
    return attributes_to_dict(record.attributes)


def record_body(record: LogRecord) -> Any:
    return any_value_to_py(record.body) if record.HasField("body") else None


# --------------------------------------------------------------------------- value decoding


def as_int(value: Any) -> int | None:
    try:
        return int(value) if value is not None and not isinstance(value, bool) else None
    except (TypeError, ValueError):
        return None


def as_text(value: Any) -> str | None:
    """Text as the judge should see it: strings as they are, structures as compact JSON."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def decode_json(value: Any, key: str) -> Any:
    """Values come as JSON strings (span attributes) or structured AnyValues (log records)."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError as exc:
            raise ReadError(f"{key} is not valid JSON: {str(exc)[:80]}") from None
    return value


def decode_json_or_repr(value: Any, key: str) -> Any:
    """JSON, or a Python literal repr (LiteLLM's raw span writes ``str(list_of_dicts)``)."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        try:
            return ast.literal_eval(value)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            raise ReadError(f"{key} is neither JSON nor a Python literal") from None


_PLACEHOLDERS = {"image": "[image]", "audio": "[audio]", "video": "[video]", "file": "[file]", "document": "[file]"}


def placeholder(part: Mapping[str, Any]) -> str:
    """A short stand-in for non-text content (images, audio, files)."""
    ptype = str(part.get("type", "part"))
    modality = str(part.get("modality") or part.get("mime_type") or part.get("mediaType") or "").split("/")[0]
    for candidate in (modality, ptype, ptype.split("_", maxsplit=1)[0]):
        if candidate in _PLACEHOLDERS:
            return _PLACEHOLDERS[candidate]
    return f"[{ptype}]"


def openai_tool_calls(calls: Any) -> list[ToolCall]:
    """Tool calls in OpenAI's shape: ``{"id", "type": "function", "function": {"name", "arguments"}}``."""
    out = []
    for call in calls or []:
        if not isinstance(call, Mapping):
            continue
        nested = call.get("function")
        function: Mapping[str, Any] = nested if isinstance(nested, Mapping) else call
        out.append(ToolCall(name=function.get("name"), id=call.get("id"), arguments=as_text(function.get("arguments"))))
    return out


def openai_content(content: Any) -> str | None:
    """OpenAI message content: a string, or a list of typed parts (text, image_url, input_audio...)."""
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, Mapping):
                if part.get("type") in ("text", "input_text", "output_text") or "text" in part:
                    if part.get("text") is not None:
                        texts.append(str(part["text"]))
                else:
                    texts.append(placeholder(part))
        return "\n".join(texts) if texts else None
    return as_text(content)


def openai_message(item: Mapping[str, Any], default_role: str) -> Message:
    """One OpenAI-style chat message (``role``, ``content``, ``tool_calls``, ``tool_call_id``)."""
    calls = openai_tool_calls(item.get("tool_calls"))
    function_call = item.get("function_call")
    if isinstance(function_call, Mapping):
        calls.append(ToolCall(function_call.get("name"), None, as_text(function_call.get("arguments"))))
    return Message(
        role=str(item.get("role") or default_role),
        content=openai_content(item.get("content")),
        tool_calls=tuple(calls),
        tool_call_id=item.get("tool_call_id"),
    )


def read_parts(parts: Iterable[Any]) -> tuple[str | None, list[ToolCall], str | None]:
    """Text, tool calls and tool-call-response id of a GenAI-conventions ``parts`` list."""
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
            calls.append(ToolCall(part.get("name"), part.get("id"), as_text(part.get("arguments"))))
        elif ptype == "tool_call_response":
            response_id = part.get("id")
            response = part.get("response", part.get("result"))
            if response is not None:
                texts.append(as_text(response) or "")
        elif ptype in ("reasoning", "thinking"):
            continue  # the model's hidden reasoning is not the answer being judged
        else:
            texts.append(placeholder(part))
    return ("\n".join(texts) if texts else None), calls, response_id


def semconv_messages(value: Any, key: str) -> list[tuple[Message, str | None]]:
    """A ``gen_ai.input.messages`` / ``gen_ai.output.messages`` value: messages and finish reasons.

    Also accepts what LiteLLM writes there: OpenAI ``tool_calls`` beside (not inside) ``parts`` and a
    ``tool_call_id`` key on tool messages.
    """
    data = decode_json(value, key)
    if not isinstance(data, list):
        raise ReadError(f"{key} is not a list of messages")
    out = []
    for item in data:
        if not isinstance(item, Mapping):
            raise ReadError(f"{key} has a message that is not an object")
        role = str(item.get("role") or "user")
        parts = item.get("parts")
        if parts is None and "content" in item:  # an OpenAI-style message in a semconv slot
            message = openai_message(item, role)
        else:
            text, calls, response_id = read_parts(parts or [])
            calls.extend(openai_tool_calls(item.get("tool_calls")))
            message = Message(role, text, tuple(calls), response_id or item.get("tool_call_id"))
        out.append((message, item.get("finish_reason")))
    return out


def system_text(value: Any, key: str) -> str | None:
    """``gen_ai.system_instructions``: a list of parts (JSON or structured) or a plain string."""
    data = value
    if isinstance(value, str) and value.lstrip().startswith(("[", "{")):
        data = decode_json(value, key)
    if isinstance(data, str):
        return data or None
    if isinstance(data, Mapping):
        data = [data]
    if isinstance(data, list):
        text, _, _ = read_parts(data)
        return text
    return None


def first_finish_reason(value: Any) -> str | None:
    if isinstance(value, str) and value.startswith("["):  # LiteLLM writes a JSON string
        try:
            value = json.loads(value)
        except ValueError:
            return str(value)
    if isinstance(value, list):
        return str(value[0]) if value else None
    return str(value) if value else None


def fill_semconv_metadata(exchange: Exchange, attrs: Mapping[str, Any]) -> Exchange:
    """Model, provider, response id, tokens and finish reason from GenAI-conventions attributes."""
    exchange.request_model = exchange.request_model or attrs.get(semconv.GEN_AI_REQUEST_MODEL)
    exchange.response_model = exchange.response_model or attrs.get(semconv.GEN_AI_RESPONSE_MODEL)
    exchange.provider = exchange.provider or attrs.get(semconv.GEN_AI_PROVIDER_NAME) or attrs.get(semconv.GEN_AI_SYSTEM)
    exchange.response_id = exchange.response_id or attrs.get(semconv.GEN_AI_RESPONSE_ID)
    if exchange.input_tokens is None:
        exchange.input_tokens = as_int(
            attrs.get(semconv.GEN_AI_USAGE_INPUT_TOKENS, attrs.get(semconv.GEN_AI_USAGE_PROMPT_TOKENS))
        )
    if exchange.output_tokens is None:
        exchange.output_tokens = as_int(
            attrs.get(semconv.GEN_AI_USAGE_OUTPUT_TOKENS, attrs.get(semconv.GEN_AI_USAGE_COMPLETION_TOKENS))
        )
    if exchange.finish_reason is None:
        exchange.finish_reason = first_finish_reason(attrs.get(semconv.GEN_AI_RESPONSE_FINISH_REASONS))
    return exchange


def set_output(exchange: Exchange, messages: Iterable[Message], finish_reasons: Iterable[str | None] = ()) -> None:
    """Fill completion, output tool calls and finish reason from output messages."""
    texts = []
    for message in messages:
        if message.content:
            texts.append(message.content)
        exchange.tool_calls.extend(message.tool_calls)
    exchange.completion = "\n".join(texts) if texts else None
    for reason in finish_reasons:
        if reason and exchange.finish_reason is None:
            exchange.finish_reason = str(reason)


def system_from_messages(messages: Iterable[Message]) -> str | None:
    texts = [m.content for m in messages if m.role in ("system", "developer") and m.content]
    return "\n".join(texts) if texts else None
