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
OTEL_JUDGE_EVALUATION_ERROR: Final = "otel_judge.evaluation.error"
OTEL_JUDGE_JUDGE_MODEL: Final = "otel_judge.judge.model"
OTEL_JUDGE_SAMPLING_PROBABILITY: Final = "otel_judge.sampling.probability"
OTEL_JUDGE_EVALUATION_SAME_FAMILY: Final = "otel_judge.evaluation.same_family"
OTEL_JUDGE_SAMPLING_POLICY: Final = "otel_judge.sampling.policy"

# The GenAI conventions' evaluation event (on the judged span, or as a log record).
EVENT_EVALUATION_RESULT: Final = "gen_ai.evaluation.result"
GEN_AI_EVALUATION_NAME: Final = "gen_ai.evaluation.name"
GEN_AI_EVALUATION_SCORE_VALUE: Final = "gen_ai.evaluation.score.value"
GEN_AI_EVALUATION_SCORE_LABEL: Final = "gen_ai.evaluation.score.label"
GEN_AI_EVALUATION_EXPLANATION: Final = "gen_ai.evaluation.explanation"
ERROR_TYPE: Final = "error.type"  # on the event when the evaluation failed (our status, e.g. judge_error)
# Ours, on the evaluation log record and late child span: the judgment's idempotency key and status.
OTEL_JUDGE_EVALUATION_ID: Final = "otel_judge.evaluation.id"
OTEL_JUDGE_EVALUATION_LATE: Final = "otel_judge.evaluation.late"
# The late child span: "gen_ai.evaluation <gen_ai.evaluation.name>", parented to the judged span.
EVALUATION_SPAN_NAME: Final = "gen_ai.evaluation"

# Resource of otel-judge's own metrics.
SERVICE_VERSION: Final = "service.version"
SERVICE_INSTANCE_ID: Final = "service.instance.id"
OTEL_JUDGE_SERVICE_NAME: Final = "otel-judge"

# Regression alerts as OTLP log records (event name, attributes; the body is the whole alert object).
EVENT_QUALITY_ALERT: Final = "otel_judge.quality.alert"
OTEL_JUDGE_ALERT_ID: Final = "otel_judge.alert.id"
OTEL_JUDGE_ALERT_STATUS: Final = "otel_judge.alert.status"  # firing | resolved
OTEL_JUDGE_ALERT_KIND: Final = "otel_judge.alert.kind"  # window | change
OTEL_JUDGE_ALERT_P_VALUE: Final = "otel_judge.alert.p_value"
OTEL_JUDGE_ALERT_EFFECT: Final = "otel_judge.alert.effect"
OTEL_JUDGE_SLICE_PREFIX: Final = "otel_judge.slice."  # + slice name

# Instrumentation scope of anything otel-judge itself emits.
SCOPE_NAME: Final = "otel_judge"


def score_value_key(evaluator: str) -> str:
    """`gen_ai.evaluation.<evaluator>.score.value` (double)."""
    return f"{EVALUATION_PREFIX}{evaluator}.score.value"


def score_label_key(evaluator: str) -> str:
    """`gen_ai.evaluation.<evaluator>.score.label` (string, e.g. pass/fail)."""
    return f"{EVALUATION_PREFIX}{evaluator}.score.label"


def evaluation_key(evaluator: str, name: str) -> str:
    """`gen_ai.evaluation.<evaluator>.<name>` (e.g. disagreement of a panel)."""
    return f"{EVALUATION_PREFIX}{evaluator}.{name}"


def explanation_key(evaluator: str) -> str:
    """`gen_ai.evaluation.<evaluator>.explanation` (string)."""
    return f"{EVALUATION_PREFIX}{evaluator}.explanation"


# --- What we read: GenAI operations that are model calls (others: embeddings, tools, agents) -----
LLM_OPERATIONS: Final = frozenset({"chat", "text_completion", "generate_content", "completion"})
GEN_AI_RESPONSE_FINISH_REASON_LEGACY: Final = "gen_ai.completion.0.finish_reason"
GEN_AI_USAGE_PROMPT_TOKENS: Final = "gen_ai.usage.prompt_tokens"  # pre-1.27 name
GEN_AI_USAGE_COMPLETION_TOKENS: Final = "gen_ai.usage.completion_tokens"  # pre-1.27 name

# --- What we read: GenAI log events ----------------------------------------------------------------
EVENT_NAME_ATTRIBUTE: Final = "event_name"  # where LiteLLM puts the event name
EVENT_OPERATION_DETAILS: Final = "gen_ai.client.inference.operation.details"
EVENT_SYSTEM_MESSAGE: Final = "gen_ai.system.message"
EVENT_USER_MESSAGE: Final = "gen_ai.user.message"
EVENT_ASSISTANT_MESSAGE: Final = "gen_ai.assistant.message"
EVENT_TOOL_MESSAGE: Final = "gen_ai.tool.message"
EVENT_CHOICE: Final = "gen_ai.choice"
EVENT_CONTENT_PROMPT: Final = "gen_ai.content.prompt"  # v1.27 span event / LiteLLM log
EVENT_CONTENT_COMPLETION: Final = "gen_ai.content.completion"
MESSAGE_EVENTS: Final = {
    EVENT_SYSTEM_MESSAGE: "system",
    EVENT_USER_MESSAGE: "user",
    EVENT_ASSISTANT_MESSAGE: "assistant",
    EVENT_TOOL_MESSAGE: "tool",
}
CONTENT_EVENTS: Final = frozenset(
    {EVENT_OPERATION_DETAILS, EVENT_CHOICE, EVENT_CONTENT_PROMPT, EVENT_CONTENT_COMPLETION, *MESSAGE_EVENTS}
)
LITELLM_MESSAGE_CONTENT: Final = "message.content"

# --- What we read: OpenLLMetry up to 0.54 (flattened, indexed) --------------------------------------
LLM_REQUEST_TYPE: Final = "llm.request.type"
GEN_AI_PROMPT_INDEXED_PREFIX: Final = "gen_ai.prompt."
GEN_AI_COMPLETION_INDEXED_PREFIX: Final = "gen_ai.completion."

# --- What we read: OpenInference -------------------------------------------------------------------
OPENINFERENCE_SPAN_KIND: Final = "openinference.span.kind"
OPENINFERENCE_KIND_LLM: Final = "LLM"
LLM_INPUT_MESSAGES_PREFIX: Final = "llm.input_messages."
LLM_OUTPUT_MESSAGES_PREFIX: Final = "llm.output_messages."
LLM_MODEL_NAME: Final = "llm.model_name"
LLM_PROVIDER: Final = "llm.provider"
LLM_SYSTEM: Final = "llm.system"
LLM_TOKEN_COUNT_PROMPT: Final = "llm.token_count.prompt"
LLM_TOKEN_COUNT_COMPLETION: Final = "llm.token_count.completion"
LLM_FINISH_REASON: Final = "llm.finish_reason"
LLM_INVOCATION_PARAMETERS: Final = "llm.invocation_parameters"
INPUT_VALUE: Final = "input.value"
OUTPUT_VALUE: Final = "output.value"
INPUT_MIME_TYPE: Final = "input.mime_type"
OUTPUT_MIME_TYPE: Final = "output.mime_type"
OPENINFERENCE_REDACTED: Final = "__REDACTED__"

# --- What we read: Vercel AI SDK (experimental_telemetry) -------------------------------------------
AI_OPERATION_ID: Final = "ai.operationId"
AI_PROMPT: Final = "ai.prompt"
AI_PROMPT_MESSAGES: Final = "ai.prompt.messages"
AI_RESPONSE_TEXT: Final = "ai.response.text"
AI_RESPONSE_TOOL_CALLS: Final = "ai.response.toolCalls"
AI_RESPONSE_FINISH_REASON: Final = "ai.response.finishReason"
AI_RESPONSE_ID: Final = "ai.response.id"
AI_RESPONSE_MODEL: Final = "ai.response.model"
AI_MODEL_ID: Final = "ai.model.id"
AI_MODEL_PROVIDER: Final = "ai.model.provider"
AI_USAGE_PROMPT_TOKENS: Final = "ai.usage.promptTokens"
AI_USAGE_COMPLETION_TOKENS: Final = "ai.usage.completionTokens"
VERCEL_MODEL_CALL_OPERATIONS: Final = frozenset(
    {"ai.generateText.doGenerate", "ai.streamText.doStream", "ai.generateObject.doGenerate", "ai.streamObject.doStream"}
)
VERCEL_WRAPPER_OPERATIONS: Final = frozenset(
    {"ai.generateText", "ai.streamText", "ai.generateObject", "ai.streamObject"}
)

# --- What we read: LiteLLM's OpenTelemetry callback -------------------------------------------------
LITELLM_REQUEST_SPAN: Final = "litellm_request"
LITELLM_RAW_REQUEST_SPAN: Final = "raw_gen_ai_request"

# Span attribute keys whose presence makes a span a *candidate* LLM call in some format. Detection
# looks at keys only; indexed formats are caught by their first index.
CANDIDATE_KEYS: Final = GENAI_MARKER_KEYS | frozenset(
    {
        GEN_AI_SYSTEM,
        GEN_AI_PROVIDER_NAME,
        GEN_AI_REQUEST_MODEL,
        "gen_ai.prompt.0.role",
        "gen_ai.prompt.0.content",
        "gen_ai.completion.0.content",
        LLM_REQUEST_TYPE,
        OPENINFERENCE_SPAN_KIND,
        "llm.input_messages.0.message.role",
        AI_OPERATION_ID,
        AI_PROMPT,
        AI_PROMPT_MESSAGES,
    }
)
