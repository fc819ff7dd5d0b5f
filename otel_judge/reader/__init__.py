"""Reading the conversation out of GenAI spans, whatever instrumentation wrote them.

A :class:`ContentReader` is one telemetry format: it *classifies* a span (a model call in its
format, its format but not a model call, or not its format) and *reads* the call into an
:class:`~otel_judge.model.Exchange`, using the content log records joined to the span when the
format puts content in logs. :class:`GenAIReader` asks the readers in order; the first that
recognises the span decides. Third-party readers register under the entry-point group
``otel_judge.readers`` (an object or a zero-argument factory) and are asked first.

Candidate spans are found by attribute *keys* only (:func:`is_candidate`), so spans that are not
GenAI cost one set lookup per attribute and are never decoded.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib.metadata import entry_points
from typing import Any

from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from otel_judge import semconv
from otel_judge.config import ReaderConfig
from otel_judge.errors import ConfigError
from otel_judge.model import Exchange
from otel_judge.reader.base import Claim, ContentReader, ReadError, SpanView, event_name, is_content_record
from otel_judge.reader.litellm import LiteLLMReader
from otel_judge.reader.openinference import OpenInferenceReader
from otel_judge.reader.openllmetry import OpenLLMetryReader
from otel_judge.reader.otel_genai import OtelGenAIReader
from otel_judge.reader.vercel import VercelAIReader

__all__ = [
    "CONTENT_CAPTURE_HINTS",
    "Claim",
    "ContentReader",
    "GenAIReader",
    "ReadError",
    "SpanView",
    "builtin_readers",
    "event_name",
    "is_candidate",
    "is_content_record",
    "is_genai_span",
]

ENTRY_POINT_GROUP = "otel_judge.readers"
MEMO_SIZE = 4096  # span shapes whose classification is remembered
_UNKNOWN = object()

#: How to turn content capture on, per reader: shown when spans of that format arrive without content.
CONTENT_CAPTURE_HINTS: dict[str, str] = {
    "otel_genai": (
        "official OpenTelemetry instrumentations: OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=SPAN_ONLY "
        "(or EVENT_ONLY / SPAN_AND_EVENT and send logs too; older versions: =true); "
        "OpenLLMetry: TRACELOOP_TRACE_CONTENT=true; OpenLIT: capture_message_content=True"
    ),
    "openllmetry_indexed": "OpenLLMetry: TRACELOOP_TRACE_CONTENT=true",
    "openinference": "OpenInference: unset OPENINFERENCE_HIDE_INPUTS / OPENINFERENCE_HIDE_OUTPUTS (and *_MESSAGES)",
    "vercel_ai": "Vercel AI SDK: experimental_telemetry: {isEnabled: true, recordInputs: true, recordOutputs: true}",
    "litellm": "LiteLLM: do not set litellm.turn_off_message_logging; with EVENT_ONLY also export logs",
}


def is_candidate(span: Span, keys: frozenset[str] = semconv.CANDIDATE_KEYS) -> bool:
    """True when an attribute key suggests an LLM call in some format. Keys only, never values."""
    for kv in span.attributes:  # noqa: SIM110 - a plain loop is faster than any(genexpr), per span
        if kv.key in keys:
            return True
    return False


is_genai_span = is_candidate


def builtin_readers(nested_calls: str = "innermost") -> list[ContentReader]:
    """Specific formats first; the generic GenAI-conventions reader last."""
    return [
        LiteLLMReader(),
        VercelAIReader(judge_wrapper=nested_calls == "outermost"),
        OpenInferenceReader(),
        OpenLLMetryReader(),
        OtelGenAIReader(),
    ]


def plugin_readers() -> list[ContentReader]:
    readers = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        obj: Any = ep.load()
        readers.append(obj() if isinstance(obj, type) or (callable(obj) and not hasattr(obj, "read")) else obj)
    return readers


class GenAIReader:
    """Chooses the format reader per span: the first of ``readers`` that recognises it.

    ``nested_calls`` says which of two nested spans carrying one call is judged (see ``join``).
    """

    def __init__(self, readers: Sequence[ContentReader] | None = None, nested_calls: str = "innermost") -> None:
        self.readers = (
            tuple(readers) if readers is not None else tuple(plugin_readers() + builtin_readers(nested_calls))
        )
        self.nested_calls = nested_calls
        self.candidate_keys: frozenset[str] = frozenset().union(
            *(getattr(r, "candidate_keys", frozenset()) for r in self.readers)
        )
        # Classification remembered per span shape, when every reader says what its classify reads
        # (``classify_reads``: keys whose values, keys whose presence, whether the span name): the
        # same shape always gets the same answer, and looking it up is cheaper than asking each reader.
        reads = [getattr(r, "classify_reads", None) for r in self.readers]
        self._memo: dict[Any, tuple[Claim, ContentReader] | None] | None = None
        self._memo_values: tuple[str, ...] = ()
        self._memo_keys: tuple[str, ...] = ()
        self._memo_name = False
        if all(r is not None for r in reads):
            self._memo = {}
            self._memo_values = tuple(sorted(frozenset().union(*(r[0] for r in reads if r is not None))))
            self._memo_keys = tuple(sorted(frozenset().union(*(r[1] for r in reads if r is not None))))
            self._memo_name = any(r[2] for r in reads if r is not None)

    def is_candidate(self, span: Span) -> bool:
        """Whether any reader's candidate key is on the span (keys only)."""
        return is_candidate(span, self.candidate_keys)

    @classmethod
    def from_config(cls, config: ReaderConfig) -> GenAIReader:
        """Readers named in ``config.formats`` (all when unset); ConfigError for unknown names."""
        available = plugin_readers() + builtin_readers(config.nested_calls)
        if config.formats is None:
            return cls(available, config.nested_calls)
        by_name = {r.name: r for r in available}
        unknown = [name for name in config.formats if name not in by_name]
        if unknown:
            raise ConfigError(
                [f"reader.formats: unknown reader(s) {', '.join(unknown)} (available: {', '.join(by_name)})"]
            )
        return cls([by_name[name] for name in config.formats], config.nested_calls)

    def classify(self, view: SpanView) -> tuple[Claim, ContentReader] | None:
        for reader in self.readers:
            claim = reader.classify(view)
            if claim is not None:
                return claim, reader
        return None

    def classify_light(self, view: SpanView, attributes: Any) -> tuple[Claim, ContentReader] | None:
        """:meth:`classify` of a span whose attributes are the light key map ``attributes`` (key ->
        serialised ``AnyValue``, :mod:`otel_judge.reader.scan`), remembered per span shape: the name
        (when a reader reads it), the raw values of the keys whose values are read, and the presence of
        the keys whose presence is read."""
        memo = self._memo
        if memo is None:
            return self.classify(view)
        shape = (
            view.name if self._memo_name else None,
            tuple(map(attributes.get, self._memo_values)),
            tuple(map(attributes.__contains__, self._memo_keys)),
        )
        found = memo.get(shape, _UNKNOWN)
        if found is _UNKNOWN:
            found = self.classify(view)
            if len(memo) >= MEMO_SIZE:  # bounded: many distinct shapes (e.g. names) start it over
                memo.clear()
            memo[shape] = found
        return found  # type: ignore[return-value]

    def read(self, view: SpanView, logs: Sequence[LogRecord] = ()) -> Exchange | None:
        """The exchange of a model-call span (possibly without content); None for anything else."""
        found = self.classify(view)
        if found is None or found[0] is not Claim.LLM_CALL:
            return None
        return found[1].read(view, logs)
