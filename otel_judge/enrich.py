"""Writing judgments onto the judged span. Nothing else on the span is touched."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from opentelemetry.proto.trace.v1.trace_pb2 import Span

from otel_judge import semconv
from otel_judge.model import EvaluationResult, EvaluationStatus
from otel_judge.otlp import set_attribute

MAX_EXPLANATION_CHARS = 2000


def set_status(span: Span, status: EvaluationStatus, keys: Any = None) -> None:
    """Write the status; ``keys`` (the span's attribute keys, when known) saves looking for an old one."""
    if keys is not None and semconv.OTEL_JUDGE_EVALUATION_STATUS not in keys:
        kv = span.attributes.add()
        kv.key = semconv.OTEL_JUDGE_EVALUATION_STATUS
        kv.value.string_value = status.value
        return
    set_attribute(span.attributes, semconv.OTEL_JUDGE_EVALUATION_STATUS, status.value)


def overall_status(results: Iterable[EvaluationResult]) -> EvaluationStatus:
    """``evaluated`` when every evaluator produced scores, else the first failure's status."""
    for result in results:
        if result.status is not EvaluationStatus.EVALUATED:
            return result.status
    return EvaluationStatus.EVALUATED


def apply_results(span: Span, results: list[EvaluationResult], status: EvaluationStatus) -> None:
    """Write scores, labels, explanations and the span's evaluation status."""
    for result in results:
        for score in result.scores:
            set_attribute(span.attributes, semconv.score_value_key(score.key), float(score.value))
            if score.label is not None:
                set_attribute(span.attributes, semconv.score_label_key(score.key), score.label)
            if score.explanation:
                set_attribute(
                    span.attributes, semconv.explanation_key(score.key), score.explanation[:MAX_EXPLANATION_CHARS]
                )
            for name, value in score.extra:
                set_attribute(span.attributes, semconv.evaluation_key(score.key, name), value)
    errors = [f"{r.evaluator}: {r.error}" for r in results if r.error]
    if errors:
        set_attribute(span.attributes, semconv.OTEL_JUDGE_EVALUATION_ERROR, "; ".join(errors)[:1000])
    models = sorted({r.judge_model for r in results if r.judge_model})
    if models:
        set_attribute(span.attributes, semconv.OTEL_JUDGE_JUDGE_MODEL, ",".join(models))
    set_status(span, status)
