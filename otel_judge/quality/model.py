"""What the quality side reads back from the store: one row per score of one evaluation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class StoredEvaluation:
    """One score of one evaluation as stored. ``(evaluation_id, score_key)`` is unique."""

    evaluation_id: str
    score_key: str  # the evaluator name, or name.criterion for rubric criteria
    evaluator: str
    time_ns: int
    trace_id: str  # hex
    span_id: str  # hex
    status: str  # otel_judge.evaluation.status of this evaluation
    value: float | None = None  # None unless status is evaluated
    label: str | None = None
    passed: bool | None = None
    low: float | None = None  # the score's scale, for effect sizes as a fraction of the scale
    high: float | None = None
    sampling_probability: float | None = None
    slices: dict[str, str] = field(default_factory=dict)
    judged_model: str | None = None
    judge_model: str | None = None
    cost_usd: float | None = None  # the evaluation's judge cost, on each of its scores: sum per evaluation_id
    explanation: str | None = None
    evaluator_type: str | None = None
    config_hash: str | None = None
    # Added with the store (all optional): enough to rebuild the EvaluationResult for the judge's cache.
    higher_is_better: bool = True  # direction of the scale: a "drop" is an increase when False
    error: str | None = None  # why there is no score, for error statuses
    score_index: int = 0  # position of the score within its evaluation
    evaluator_version: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # Score.extra (e.g. a panel's disagreement)
    judge_params: dict[str, Any] = field(default_factory=dict)
    response_id: str | None = None  # gen_ai.response.id of the judged call
    late: bool = False  # finished after judge.max_hold: its span went out without it
    input_tokens: int | None = None  # the evaluation's judge tokens, repeated on each of its scores
    output_tokens: int | None = None

    @property
    def weight(self) -> float:
        """Inverse-probability weight: a span sampled at 10% stands for ten."""
        p = self.sampling_probability
        return 1.0 / p if p is not None and p > 0 else 1.0
