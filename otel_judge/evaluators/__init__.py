"""Evaluators: what is checked about a model call, and how the result becomes scores.

An evaluator has a ``name``, a ``config_hash`` and ``async evaluate(exchange) -> list[Score]``; it
raises :class:`~otel_judge.errors.ParseError` when a judge's reply is not a valid result and lets
judge errors (:class:`RetryableError`, :class:`PermanentError`, :class:`JudgeTimeoutError`) through.
Types are chosen by the ``type`` key of each entry under ``evaluators:`` (:data:`EVALUATOR_TYPES`).
"""

from __future__ import annotations

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

__all__ = [
    "EVALUATOR_TYPES",
    "TRUNCATION_MARKER",
    "Evaluator",
    "ScoreEvaluator",
    "build_evaluator",
    "build_prompt",
    "config_hash",
    "parse_score_reply",
    "render_conversation",
    "select_messages",
    "truncate",
]
