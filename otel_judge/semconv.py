"""Every attribute, event and scope name otel-judge reads or writes.

No other module spells a raw attribute string: readers, the sampler and the enricher import the
names from here, so a rename in the GenAI semantic conventions is a one-line change.
"""

from __future__ import annotations

from typing import Final

# --- What we read: OpenTelemetry GenAI semantic conventions (current) -----------------------------
GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_SYSTEM: Final = "gen_ai.system"  # deprecated in favour of gen_ai.provider.name
GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GEN_AI_RESPONSE_ID: Final = "gen_ai.response.id"
GEN_AI_RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
GEN_AI_SYSTEM_INSTRUCTIONS: Final = "gen_ai.system_instructions"
GEN_AI_INPUT_MESSAGES: Final = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES: Final = "gen_ai.output.messages"
GEN_AI_TOOL_DEFINITIONS: Final = "gen_ai.tool.definitions"

# --- What we read: deprecated GenAI conventions (v1.27-v1.36) --------------------------------------
GEN_AI_PROMPT: Final = "gen_ai.prompt"
GEN_AI_COMPLETION: Final = "gen_ai.completion"

# Span attribute keys whose mere presence marks a span as a GenAI span. Detection looks at keys
# only (never at values), so it costs one set lookup per attribute.
GENAI_MARKER_KEYS: Final = frozenset(
    {
        GEN_AI_OPERATION_NAME,
        GEN_AI_INPUT_MESSAGES,
        GEN_AI_OUTPUT_MESSAGES,
        GEN_AI_SYSTEM_INSTRUCTIONS,
        GEN_AI_PROMPT,
        GEN_AI_COMPLETION,
    }
)

# --- What we read: resource -----------------------------------------------------------------------
SERVICE_NAME: Final = "service.name"

# --- What we write ----------------------------------------------------------------------------------
# Per evaluator <name>: gen_ai.evaluation.<name>.score.value etc. (built by the helpers below).
EVALUATION_PREFIX: Final = "gen_ai.evaluation."
OTEL_JUDGE_EVALUATION_STATUS: Final = "otel_judge.evaluation.status"
OTEL_JUDGE_EVALUATION_ID: Final = "otel_judge.evaluation.id"
OTEL_JUDGE_EVALUATION_ERROR: Final = "otel_judge.evaluation.error"
OTEL_JUDGE_JUDGE_MODEL: Final = "otel_judge.judge.model"

# Instrumentation scope of anything otel-judge itself emits.
SCOPE_NAME: Final = "otel_judge"


def score_value_key(evaluator: str) -> str:
    """`gen_ai.evaluation.<evaluator>.score.value` (double)."""
    return f"{EVALUATION_PREFIX}{evaluator}.score.value"


def score_label_key(evaluator: str) -> str:
    """`gen_ai.evaluation.<evaluator>.score.label` (string, e.g. pass/fail)."""
    return f"{EVALUATION_PREFIX}{evaluator}.score.label"


def explanation_key(evaluator: str) -> str:
    """`gen_ai.evaluation.<evaluator>.explanation` (string)."""
    return f"{EVALUATION_PREFIX}{evaluator}.explanation"
