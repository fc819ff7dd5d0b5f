"""Evaluators: what is checked about a model call, and how the result becomes scores.

An evaluator has a ``name``, a ``config_hash`` and ``async evaluate(exchange) -> list[Score]``; it
raises :class:`~otel_judge.errors.ParseError` when a judge's reply is not a valid result and lets
judge errors (:class:`RetryableError`, :class:`PermanentError`, :class:`JudgeTimeoutError`) through.
Types are chosen by the ``type`` key of each entry under ``evaluators:`` (:data:`EVALUATOR_TYPES`):
``score`` asks the LLM judge (:mod:`.llm`); ``json_valid``, ``length``, ``refusal``, ``regex`` and
``pii`` are deterministic checks that need no judge (:mod:`.checks`, ``judge is None``, ``gate``).
"""

from __future__ import annotations

from otel_judge.evaluators.checks import (
    CHECK_TYPES,
    JsonValidEvaluator,
    LengthEvaluator,
    PiiEvaluator,
    RefusalEvaluator,
    RegexEvaluator,
)
from otel_judge.evaluators.llm import (
    EVALUATOR_TYPES,
    TRUNCATION_MARKER,
    Evaluator,
    ScoreEvaluator,
    build_evaluator,
    build_prompt,
    config_hash,
    parse_score_reply,
    render_conversation,
    select_messages,
    truncate,
)

EVALUATOR_TYPES.update(CHECK_TYPES)

__all__ = [
    "CHECK_TYPES",
    "EVALUATOR_TYPES",
    "TRUNCATION_MARKER",
    "Evaluator",
    "JsonValidEvaluator",
    "LengthEvaluator",
    "PiiEvaluator",
    "RefusalEvaluator",
    "RegexEvaluator",
    "ScoreEvaluator",
    "build_evaluator",
    "build_prompt",
    "config_hash",
    "parse_score_reply",
    "render_conversation",
    "select_messages",
    "truncate",
]
