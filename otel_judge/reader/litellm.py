"""LiteLLM's own OpenTelemetry callback (``litellm.callbacks=["otel"]``).

``litellm_request`` spans carry GenAI-conventions attributes (read by the generic reader, which also
handles LiteLLM's tool calls outside ``parts`` and in ``gen_ai.completion.N.function_call.*``).
Their ``raw_gen_ai_request`` child repeats the same call as Python reprs and is never judged.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from otel_judge import semconv
from otel_judge.model import Exchange
from otel_judge.reader.base import Claim, SpanView
from otel_judge.reader.otel_genai import OtelGenAIReader


class LiteLLMReader:
    name = "litellm"
    candidate_keys = semconv.CANDIDATE_KEYS
    #: What ``classify`` reads: (keys whose values, keys whose presence, whether the span name).
    classify_reads: tuple[frozenset[str], frozenset[str], bool] = (frozenset(), frozenset(), True)

    def __init__(self) -> None:
        self._semconv = OtelGenAIReader()

    def classify(self, view: SpanView) -> Claim | None:
        if view.name == semconv.LITELLM_RAW_REQUEST_SPAN:
            return Claim.NOT_LLM
        if view.name == semconv.LITELLM_REQUEST_SPAN:
            return Claim.LLM_CALL
        return None

    def read(self, view: SpanView, logs: Sequence[LogRecord]) -> Exchange:
        exchange = self._semconv.read(view, logs)
        exchange.format = f"{self.name}:{exchange.format}"
        return exchange
