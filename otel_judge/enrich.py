"""Writing judgments onto the judged span. Nothing else on the span is touched."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from opentelemetry.proto.trace.v1.trace_pb2 import Span

from otel_judge import semconv
from otel_judge.model import EvaluationResult, EvaluationStatus, Score
from otel_judge.otlp import py_to_any_value, set_attribute

MAX_EXPLANATION_CHARS = 2000


def set_status(span: Span, status: EvaluationStatus, keys: Any = None) -> None:
    """Write the status; ``keys`` (the span's attribute keys, when known) saves looking for an old one."""
    if keys is not None and semconv.OTEL_JUDGE_EVALUATION_STATUS not in keys:
        kv = span.attributes.add()
        kv.key = semconv.OTEL_JUDGE_EVALUATION_STATUS
        kv.value.string_value = status.value
        return
    set_attribute(span.attributes, semconv.OTEL_JUDGE_EVALUATION_STATUS, status.value)


def add_evaluation_event(span: Span, score: Score, time_ns: int, response_id: str | None) -> None:
    event = span.events.add()
    event.name = semconv.EVENT_EVALUATION_RESULT
    event.time_unix_nano = time_ns
    set_attribute(event.attributes, semconv.GEN_AI_EVALUATION_NAME, score.key)
    set_attribute(event.attributes, semconv.GEN_AI_EVALUATION_SCORE_VALUE, float(score.value))
    if score.label is not None:
        set_attribute(event.attributes, semconv.GEN_AI_EVALUATION_SCORE_LABEL, score.label)
    if score.explanation:
        set_attribute(
            event.attributes, semconv.GEN_AI_EVALUATION_EXPLANATION, score.explanation[:MAX_EXPLANATION_CHARS]
        )
    if response_id:
        set_attribute(event.attributes, semconv.GEN_AI_RESPONSE_ID, response_id)


def overall_status(results: Iterable[EvaluationResult]) -> EvaluationStatus:
    """``evaluated`` when every evaluator produced scores, else the first failure's status."""
    for result in results:
        if result.status is not EvaluationStatus.EVALUATED:
            return result.status
    return EvaluationStatus.EVALUATED


def apply_results(
    span: Span,
    results: list[EvaluationResult],
    status: EvaluationStatus,
    *,
    attributes: bool = True,
    events: bool = False,
    time_ns: int = 0,
    response_id: str | None = None,
) -> None:
    """Write scores, labels, explanations (``attributes``), one ``gen_ai.evaluation.result`` span event
    per score (``events``), and the span's evaluation status (always)."""
    if events:
        for result in results:
            for score in result.scores:
                add_evaluation_event(span, score, result.completed_ns or time_ns, response_id)
    attrs = _Attributes(span.attributes)
    for result in results if attributes else ():
        for score in result.scores:
            attrs.set(semconv.score_value_key(score.key), float(score.value))
            if score.label is not None:
                attrs.set(semconv.score_label_key(score.key), score.label)
            if score.explanation:
                attrs.set(semconv.explanation_key(score.key), score.explanation[:MAX_EXPLANATION_CHARS])
            for name, value in score.extra:
                attrs.set(semconv.evaluation_key(score.key, name), value)
    errors = [f"{r.evaluator}: {r.error}" for r in results if r.error]
    if errors:
        attrs.set(semconv.OTEL_JUDGE_EVALUATION_ERROR, "; ".join(errors)[:1000])
    models = sorted({r.judge_model for r in results if r.judge_model})
    if models:
        attrs.set(semconv.OTEL_JUDGE_JUDGE_MODEL, ",".join(models))
    attrs.set(semconv.OTEL_JUDGE_EVALUATION_STATUS, status.value)


class _Attributes:
    """Sets several attributes of one span with one walk over its keys (``set_attribute`` walks them
    for every attribute it sets). Like ``set_attribute``, replaces the first attribute of a key."""

    __slots__ = ("_attributes", "_index")

    def __init__(self, attributes: Any) -> None:
        self._attributes = attributes
        self._index: dict[str, int] = {}
        for i, kv in enumerate(attributes):
            self._index.setdefault(kv.key, i)

    def set(self, key: str, value: Any) -> None:
        position = self._index.get(key)
        if position is None:
            self._index[key] = len(self._attributes)
            kv = self._attributes.add()
            kv.key = key
        else:
            kv = self._attributes[position]
            kv.value.Clear()
        py_to_any_value(value, kv.value)
