"""The normalised values that flow between stages: an LLM call (:class:`Exchange`) and its judgment."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


class EvaluationStatus(enum.StrEnum):
    """Value of ``otel_judge.evaluation.status``: why a GenAI span has (or has no) score."""

    EVALUATED = "evaluated"
    SAMPLED_OUT = "sampled_out"
    NO_CONTENT = "no_content"
    JUDGE_ERROR = "judge_error"
    PARSE_ERROR = "parse_error"
    TIMEOUT = "timeout"
    SKIPPED_OVERLOAD = "skipped_overload"
    SKIPPED_BUDGET = "skipped_budget"
    SHUTDOWN = "shutdown"
    READ_ERROR = "read_error"
    NESTED_DUPLICATE = "nested_duplicate"  # a nested span carries the same call and is judged instead
    GATED = "gated"  # a gating check failed, so the LLM evaluators were not run


@dataclass(frozen=True, slots=True)
class ToolCall:
    name: str | None
    id: str | None = None
    arguments: str | None = None  # JSON text as the model produced it

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "arguments": self.arguments}


@dataclass(frozen=True, slots=True)
class Message:
    """One message of the conversation, reduced to what a judge reads."""

    role: str
    content: str | None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            out["tool_calls"] = [t.to_json() for t in self.tool_calls]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        return out


@dataclass(slots=True)
class Exchange:
    """One LLM call as read from telemetry, whatever format it came in."""

    format: str
    system: str | None = None
    messages: list[Message] = field(default_factory=list)
    completion: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str | None = None
    request_model: str | None = None
    response_model: str | None = None
    provider: str | None = None
    response_id: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    sources: list[str] = field(default_factory=list)  # attribute keys / records the content came from

    @property
    def has_content(self) -> bool:
        """Something a judge can assess: an output, and an input to assess it against."""
        has_output = bool(self.completion and self.completion.strip()) or bool(self.tool_calls)
        has_input = any(m.content and m.content.strip() for m in self.messages) or bool(self.system)
        return has_output and has_input

    @property
    def model(self) -> str | None:
        return self.response_model or self.request_model

    def to_json(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "model": self.model,
            "request_model": self.request_model,
            "response_model": self.response_model,
            "provider": self.provider,
            "response_id": self.response_id,
            "system": self.system,
            "messages": [m.to_json() for m in self.messages],
            "completion": self.completion,
            "tool_calls": [t.to_json() for t in self.tool_calls],
            "finish_reason": self.finish_reason,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "sources": self.sources,
        }


@dataclass(frozen=True, slots=True)
class Score:
    """One scored dimension. ``key`` is the attribute infix: the evaluator name (or name.criterion)."""

    key: str
    value: float
    label: str | None = None
    explanation: str | None = None
    passed: bool | None = None  # None: label == "pass"
    low: float | None = None  # the scale's range...
    high: float | None = None
    higher_is_better: bool = True  # ...and direction
    extra: tuple[tuple[str, Any], ...] = ()  # written as gen_ai.evaluation.<key>.<name>

    @property
    def is_pass(self) -> bool | None:
        if self.passed is not None:
            return self.passed
        return None if self.label is None else self.label == "pass"


@dataclass(frozen=True, slots=True)
class JudgeUsage:
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None


@dataclass(frozen=True, slots=True)
class EvaluationResult:
    """The outcome of one evaluator on one span: scores when ``status`` is evaluated, else an error."""

    evaluator: str
    status: EvaluationStatus
    scores: tuple[Score, ...] = ()
    error: str | None = None
    judge_model: str | None = None
    evaluation_id: str | None = None
    usage: JudgeUsage = field(default_factory=JudgeUsage)
    # Provenance: what produced the scores, so that a later change of rubric or judge is visible.
    evaluator_type: str | None = None
    evaluator_version: str | None = None  # otel-judge's version (evaluator code)
    config_hash: str | None = None  # hash of the evaluator's settings, prompt/rubric included
    judge_params: tuple[tuple[str, Any], ...] = ()
    completed_ns: int = 0  # when the judgment finished (wall clock): the time of its events


@dataclass(frozen=True, slots=True)
class EvaluationRecord:
    """One evaluator's judgment of one span, as every output after the span sees it (log records,
    metrics, late child spans, the quality store). Built by the judging stage when a judgment is
    complete, whether or not its span is still held."""

    evaluation_id: str
    time_ns: int  # when the judgment finished (wall clock)
    trace_id: bytes
    span_id: bytes
    result: EvaluationResult
    slices: tuple[tuple[str, str], ...] = ()  # (slice name, value) per configured slice that has a value
    sampling_probability: float | None = None  # of the decision that chose the span; weights = 1 / p
    judged_model: str | None = None  # the model that produced the judged answer
    response_id: str | None = None  # gen_ai.response.id of the judged call
    late: bool = False  # finished after judge.max_hold: its span went out without it
    # For outputs that emit OTLP (log records, late child spans): the judged span's resource (an
    # opentelemetry.proto Resource, shared, read-only) and when the judgment started (wall clock).
    resource: Any = field(default=None, compare=False, repr=False)
    started_ns: int = 0

    @property
    def slice_dict(self) -> dict[str, str]:
        return dict(self.slices)


class EvaluationSink(Protocol):
    """Something that receives every completed judgment: an output (log records, metrics) or the store.

    ``record`` is called on the event loop, on the judging stage's path: it must not block or await;
    a sink buffers and does its I/O in its own task. A sink's error is counted, never raised to the span.
    """

    def record(self, records: Sequence[EvaluationRecord]) -> None: ...

    async def start(self) -> None: ...

    async def shutdown(self, deadline: float) -> None: ...
