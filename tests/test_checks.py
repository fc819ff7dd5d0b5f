"""Deterministic checks (json_valid, length, refusal, regex, pii) end to end on exchanges."""

from __future__ import annotations

from typing import Any

import pytest

from otel_judge.config import (
    JsonValidEvaluatorConfig,
    LengthEvaluatorConfig,
    PiiEvaluatorConfig,
    RefusalEvaluatorConfig,
    RegexEvaluatorConfig,
    validate_config,
)
from otel_judge.errors import ConfigError
from otel_judge.evaluators import (
    EVALUATOR_TYPES,
    JsonValidEvaluator,
    LengthEvaluator,
    PiiEvaluator,
    RefusalEvaluator,
    RegexEvaluator,
    build_evaluator,
    config_hash,
)
from otel_judge.model import Exchange, Message, Score, ToolCall

SECRET = "sk-abc123def456ghi789jkl012mno345"
EMAIL = "jane.doe@example.com"
CARD = "4111 1111 1111 1111"


def _config(evaluator: dict[str, Any]) -> Any:
    """An evaluator config as the YAML loader builds it."""
    return validate_config({"exporters": {"debug": {}}, "evaluators": [evaluator]}).evaluators[0]


def _exchange(completion: str | None, **fields: Any) -> Exchange:
    return Exchange(
        format="test", messages=[Message("user", "Answer in JSON, please.")], completion=completion, **fields
    )


TOOL_CALL_ONLY = Exchange(
    format="test",
    messages=[Message("user", "What is the weather in Paris?")],
    tool_calls=[ToolCall(name="get_weather", id="call_1", arguments='{"city": "Paris"}')],
)


async def _run(evaluator: dict[str, Any], exchange: Exchange) -> Score:
    """Build the evaluator from its YAML form through the registry and evaluate one exchange."""
    scores = await build_evaluator(_config(evaluator), None).evaluate(exchange)
    assert len(scores) == 1
    return scores[0]


# --------------------------------------------------------------------------- shared contract

CHECKS: dict[str, tuple[type, dict[str, Any]]] = {
    "json_valid": (JsonValidEvaluator, {"name": "is_json", "type": "json_valid"}),
    "length": (LengthEvaluator, {"name": "short", "type": "length", "max_chars": 400, "gate": True}),
    "refusal": (RefusalEvaluator, {"name": "no_refusal", "type": "refusal"}),
    "regex": (RegexEvaluator, {"name": "no_urls", "type": "regex", "must_not_match": ["https?://"]}),
    "pii": (PiiEvaluator, {"name": "no_pii", "type": "pii", "gate": True}),
}


@pytest.mark.parametrize("kind", CHECKS)
def test_check_is_registered_and_needs_no_judge(kind: str) -> None:
    """Each check type is in the registry; it has name, config hash and gate from its config and no judge."""
    cls, raw = CHECKS[kind]
    config = _config(raw)

    evaluator = build_evaluator(config, None)

    assert EVALUATOR_TYPES[kind] is cls
    assert isinstance(evaluator, cls)
    assert evaluator.name == raw["name"]
    assert evaluator.config_hash == config_hash(config)
    assert evaluator.gate is raw.get("gate", False)  # type: ignore[attr-defined]
    assert evaluator.judge is None  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("completion", "label", "value"), [('{"a": 1}', "pass", 1.0), ("nope", "fail", 0.0)], ids=["pass", "fail"]
)
async def test_score_shape(completion: str, label: str, value: float) -> None:
    """A check returns one score keyed by its name: 1.0/pass or 0.0/fail, with ``passed`` set."""
    score = await _run({"name": "is_json", "type": "json_valid"}, _exchange(completion))

    assert (score.key, score.value, score.label, score.passed, score.is_pass) == (
        "is_json",
        value,
        label,
        label == "pass",
        label == "pass",
    )


# --------------------------------------------------------------------------- json_valid

ANSWER_SCHEMA = {
    "type": "object",
    "required": ["answer"],
    "properties": {
        "answer": {"type": "string"},
        "score": {"type": "integer", "maximum": 10},
        "items": {"type": "array", "items": {"type": "integer"}},
    },
}


@pytest.mark.parametrize(
    ("completion", "settings", "label", "explanation"),
    [
        ('{"answer": "yes"}', {}, "pass", "valid JSON"),
        ("[1, 2, 3]", {}, "pass", "valid JSON"),
        ('  "just a string"  ', {}, "pass", "valid JSON"),
        ('```json\n{"answer": "yes"}\n```', {}, "pass", "valid JSON"),
        ('```\n{"answer": "yes"}\n```', {}, "pass", "valid JSON"),
        ('```json\n{"answer": "yes"}\n```', {"strip_code_fence": False}, "fail", "not JSON: Expecting value at char 0"),
        ("Sure! Here it is.", {}, "fail", "not JSON: Expecting value at char 0"),
        ('{"answer": "yes"} hope this helps', {}, "fail", "not JSON: Extra data at char 18"),
        ('{"answer": "yes",}', {}, "fail", "not JSON: Expecting property name enclosed in double quotes at char 17"),
        ('{"score": NaN}', {}, "fail", "not JSON: NaN is not allowed in JSON"),
        ("[" * 100_000, {}, "fail", "not JSON: nested too deeply"),
        ("", {}, "fail", "no completion text"),
        (None, {}, "fail", "no completion text"),
        ('{"answer": "yes", "score": 7}', {"json_schema": ANSWER_SCHEMA}, "pass", "valid JSON, satisfies the schema"),
        ('{"score": 7}', {"json_schema": ANSWER_SCHEMA}, "fail", "schema: 'answer' is a required property at $"),
        (
            '{"answer": 42}',
            {"json_schema": ANSWER_SCHEMA},
            "fail",
            "schema: value at $.answer does not satisfy 'type': \"string\"",
        ),
        (
            '{"answer": "a", "score": 11}',
            {"json_schema": ANSWER_SCHEMA},
            "fail",
            "schema: value at $.score does not satisfy 'maximum': 10",
        ),
        (
            '{"answer": "a", "items": [1, "two"]}',
            {"json_schema": ANSWER_SCHEMA},
            "fail",
            "schema: value at $.items[1] does not satisfy 'type': \"integer\"",
        ),
    ],
    ids=[
        "object",
        "array",
        "string-with-whitespace",
        "json-fence",
        "bare-fence",
        "fence-not-stripped",
        "prose",
        "trailing-text",
        "trailing-comma",
        "nan",
        "too-deep",
        "empty",
        "none",
        "schema-pass",
        "schema-required",
        "schema-type",
        "schema-maximum",
        "schema-array-item",
    ],
)
async def test_json_valid(completion: str | None, settings: dict[str, Any], label: str, explanation: str) -> None:
    """Strict JSON, optionally unfenced, optionally against a schema; failures say where and why."""
    score = await _run({"name": "j", "type": "json_valid", **settings}, _exchange(completion))

    assert (score.label, score.explanation) == (label, explanation)


async def test_json_valid_on_tool_call_only_output_fails() -> None:
    """Tool-call arguments are not the completion: an exchange without completion text is not JSON."""
    score = await _run({"name": "j", "type": "json_valid"}, TOOL_CALL_ONLY)

    assert (score.label, score.explanation) == ("fail", "no completion text")


def test_invalid_json_schema_fails_at_construction() -> None:
    """A json_schema that is not a JSON Schema is a ConfigError when the evaluator is built."""
    config = _config({"name": "j", "type": "json_valid", "json_schema": {"type": "objekt"}})

    with pytest.raises(ConfigError) as caught:
        build_evaluator(config, None)

    assert caught.value.problems[0].startswith("evaluator 'j': json_schema is not a valid JSON Schema: ")


# --------------------------------------------------------------------------- length


@pytest.mark.parametrize(
    ("completion", "bounds", "label", "explanation"),
    [
        ("x" * 412, {"max_chars": 400}, "fail", "412 characters, more than max_chars 400"),
        ("x" * 400, {"max_chars": 400}, "pass", "400 characters, within bounds"),
        ("ok", {"min_chars": 10}, "fail", "2 characters, fewer than min_chars 10"),
        ("x" * 10, {"min_chars": 10, "max_chars": 20}, "pass", "10 characters, within bounds"),
        ("é" * 5, {"max_chars": 5}, "pass", "5 characters, within bounds"),
        (None, {"min_chars": 1}, "fail", "0 characters, fewer than min_chars 1"),
        (None, {"max_chars": 5}, "pass", "0 characters, within bounds"),
    ],
    ids=["over-max", "at-max", "under-min", "at-min", "code-points-not-bytes", "none-with-min", "none-with-max"],
)
async def test_length(completion: str | None, bounds: dict[str, int], label: str, explanation: str) -> None:
    """Characters of the completion against inclusive bounds; no completion counts as 0."""
    score = await _run({"name": "length", "type": "length", **bounds}, _exchange(completion))

    assert (score.label, score.explanation) == (label, explanation)


async def test_length_on_tool_call_only_output() -> None:
    """A tool-call-only exchange has 0 characters of completion: a minimum fails it."""
    score = await _run({"name": "length", "type": "length", "min_chars": 1}, TOOL_CALL_ONLY)

    assert score.label == "fail"


# --------------------------------------------------------------------------- refusal


@pytest.mark.parametrize(
    ("completion", "phrases", "label", "explanation"),
    [
        ("I can't help with that request.", None, "fail", 'refusal phrase found: "i can\'t help with"'),
        ("I CANNOT ASSIST with this.", None, "fail", "refusal phrase found: 'i cannot assist'"),
        ("I can\u2019t help  with\nthat.", None, "fail", 'refusal phrase found: "i can\'t help with"'),
        ("As an AI language model, I think...", None, "fail", "refusal phrase found: 'as an ai language model'"),
        ("Sure, here is the summary.", None, "pass", "no refusal phrase found"),
        ("", None, "pass", "no refusal phrase found"),
        ("Computer says no.", ["computer says no"], "fail", "refusal phrase found: 'computer says no'"),
        ("I can't help with that.", ["computer says no"], "pass", "no refusal phrase found"),
    ],
    ids=[
        "default-phrase",
        "upper-case",
        "curly-apostrophe-and-whitespace",
        "ai-language-model",
        "answer",
        "empty",
        "custom-phrase",
        "custom-replaces-defaults",
    ],
)
async def test_refusal(completion: str, phrases: list[str] | None, label: str, explanation: str) -> None:
    """A configured phrase anywhere in the completion, case- and apostrophe-insensitive, fails."""
    raw: dict[str, Any] = {"name": "refusal", "type": "refusal"}
    if phrases is not None:
        raw["phrases"] = phrases

    score = await _run(raw, _exchange(completion))

    assert (score.label, score.explanation) == (label, explanation)


async def test_refusal_on_tool_call_only_output_passes() -> None:
    """Calling a tool is not refusing."""
    score = await _run({"name": "refusal", "type": "refusal"}, TOOL_CALL_ONLY)

    assert score.label == "pass"


# --------------------------------------------------------------------------- regex


@pytest.mark.parametrize(
    ("completion", "patterns", "label", "explanation"),
    [
        ("Order #1234 shipped.", {"must_match": [r"#\d+"]}, "pass", "all patterns satisfied"),
        ("Order shipped.", {"must_match": [r"#\d+"]}, "fail", "must_match pattern 1 not found"),
        ("See http://x.test", {"must_not_match": ["TODO", "https?://"]}, "fail", "must_not_match pattern 2 found"),
        (
            "TODO: http://x.test",
            {"must_match": ["^Answer:", "(?i)thanks"], "must_not_match": ["TODO", "https?://"]},
            "fail",
            "must_match pattern 1 not found; must_match pattern 2 not found; "
            "must_not_match pattern 1 found; must_not_match pattern 2 found",
        ),
        ("THANKS", {"must_match": ["(?i)thanks"]}, "pass", "all patterns satisfied"),
        ("Answer: 4", {"must_match": ["Answer"]}, "pass", "all patterns satisfied"),
        (None, {"must_not_match": ["TODO"]}, "pass", "all patterns satisfied"),
        (None, {"must_match": ["."]}, "fail", "must_match pattern 1 not found"),
    ],
    ids=[
        "must-match-found",
        "must-match-missing",
        "must-not-match-found",
        "every-failure-listed",
        "inline-flag",
        "searched-not-full-matched",
        "none-must-not",
        "none-must",
    ],
)
async def test_regex(completion: str | None, patterns: dict[str, list[str]], label: str, explanation: str) -> None:
    """Patterns are searched; failures are listed by list and 1-based position."""
    score = await _run({"name": "regex", "type": "regex", **patterns}, _exchange(completion))

    assert (score.label, score.explanation) == (label, explanation)


async def test_regex_on_tool_call_only_output() -> None:
    """Tool-call-only output is searched as the empty string: must_not_match passes."""
    score = await _run({"name": "regex", "type": "regex", "must_not_match": ["get_weather"]}, TOOL_CALL_ONLY)

    assert score.label == "pass"


# --------------------------------------------------------------------------- pii

PII_EXCHANGE = Exchange(
    format="test",
    system=f"Escalations go to {EMAIL}.",
    messages=[
        Message("user", "Charge my card please."),
        Message("assistant", None, tool_calls=(ToolCall("lookup", "c1", '{"ssn": "123-45-6789"}'),)),
        Message("tool", '{"ok": true}', tool_call_id="c1"),
    ],
    completion=f"Charged {CARD}.",
    tool_calls=[ToolCall(name="notify", id="c2", arguments='{"phone": "+1 415 555 2671"}')],
)


@pytest.mark.parametrize(
    ("settings", "exchange", "label", "explanation"),
    [
        ({}, PII_EXCHANGE, "fail", "found: credit_card, phone"),
        ({"scope": "input"}, PII_EXCHANGE, "fail", "found: email, national_id"),
        ({"scope": "both"}, PII_EXCHANGE, "fail", "found: credit_card, email, national_id, phone"),
        ({"detectors": ["email", "secret"]}, PII_EXCHANGE, "pass", "none found"),
        ({"scope": "both", "detectors": ["email"]}, PII_EXCHANGE, "fail", "found: email"),
        ({}, _exchange(f"Use {SECRET} and {SECRET}"), "fail", "found: secret"),
        ({}, _exchange("The meeting is on 2024-01-15 at 10:30."), "pass", "none found"),
        ({}, TOOL_CALL_ONLY, "pass", "none found"),
        ({}, _exchange(None), "pass", "none found"),
    ],
    ids=[
        "output-completion-and-tool-calls",
        "input-system-and-tool-arguments",
        "both",
        "chosen-detectors",
        "chosen-detectors-both",
        "kinds-listed-once",
        "no-pii",
        "tool-call-only-clean",
        "no-completion",
    ],
)
async def test_pii(settings: dict[str, Any], exchange: Exchange, label: str, explanation: str) -> None:
    """``scope`` picks the texts, ``detectors`` the kinds; the explanation lists kinds, sorted, once."""
    score = await _run({"name": "pii", "type": "pii", **settings}, exchange)

    assert (score.label, score.explanation) == (label, explanation)


# --------------------------------------------------------------------------- no content in explanations

LEAKY = Exchange(
    format="test",
    system=f"Internal key {SECRET}",
    messages=[Message("user", f"I am {EMAIL}, card {CARD}. I can't help with this, says my bank.")],
    completion=(
        f'{{"{SECRET}": "{EMAIL}", "answer": {CARD.replace(" ", "")}, "note": "I can\'t help with that, {SECRET}"}}'
    ),
    tool_calls=[ToolCall(name="send", arguments=f'{{"to": "{EMAIL}"}}')],
)

LEAKY_PROSE = Exchange(
    format="test",
    messages=[Message("user", "What are my details?")],
    completion=f'Your key is {SECRET}, your e-mail {EMAIL} and card {CARD}: {{"broken',
)

LEAKY_CHECKS = [
    {"name": "j", "type": "json_valid"},
    {"name": "j", "type": "json_valid", "json_schema": ANSWER_SCHEMA},
    {
        "name": "j",
        "type": "json_valid",
        "json_schema": {"type": "object", "additionalProperties": {"type": "integer"}},
    },
    {"name": "j", "type": "json_valid", "json_schema": {"type": "object", "required": ["answer", "x"]}},
    {"name": "j", "type": "json_valid", "json_schema": {"properties": {"note": {"maxLength": 3}}}},
    {"name": "j", "type": "json_valid", "json_schema": {"properties": {"note": {"enum": ["a"]}}}},
    {"name": "l", "type": "length", "max_chars": 10},
    {"name": "r", "type": "refusal"},
    {"name": "x", "type": "regex", "must_match": ["^nothing$"], "must_not_match": ["sk-[a-z0-9]+", "@"]},
    {"name": "p", "type": "pii", "scope": "both"},
]


@pytest.mark.parametrize(
    "raw",
    LEAKY_CHECKS,
    ids=[
        "json",
        "json-schema-type",
        "json-schema-content-key",
        "json-schema-required",
        "json-schema-max-length",
        "json-schema-enum",
        "length",
        "refusal",
        "regex",
        "pii",
    ],
)
async def test_explanations_never_quote_content(raw: dict[str, Any]) -> None:
    """A secret, an e-mail address and a card number in the content appear in no explanation."""
    exchange = LEAKY_PROSE if raw == {"name": "j", "type": "json_valid"} else LEAKY

    score = await _run(raw, exchange)

    assert score.label == "fail"
    assert score.explanation
    for value in (SECRET, "sk-abc", EMAIL, "jane", CARD, CARD.replace(" ", ""), "4111"):
        assert value not in score.explanation


async def test_json_valid_hides_content_chosen_keys_in_locations() -> None:
    """Keys that come from the content (not named by the schema) show as * in locations."""
    config = JsonValidEvaluatorConfig(
        name="j", type="json_valid", json_schema={"additionalProperties": {"type": "integer"}}
    )

    [score] = await JsonValidEvaluator(config, None).evaluate(_exchange(f'{{"{SECRET}": "x"}}'))

    assert score.explanation == "schema: value at $.* does not satisfy 'type': \"integer\""


# --------------------------------------------------------------------------- config validation


@pytest.mark.parametrize(
    ("evaluator", "problem"),
    [
        (
            {"name": "r", "type": "regex", "must_match": ["("]},
            "evaluators[0]: '(' is not a regular expression: missing ), unterminated subpattern at position 0",
        ),
        ({"name": "r", "type": "regex"}, "evaluators[0]: set must_match, must_not_match or both"),
        ({"name": "l", "type": "length"}, "evaluators[0]: set min_chars, max_chars or both"),
        (
            {"name": "l", "type": "length", "min_chars": 10, "max_chars": 5},
            "evaluators[0]: min_chars is greater than max_chars",
        ),
        (
            {"name": "p", "type": "pii", "detectors": ["ssn"]},
            "evaluators[0].detectors[0]: Input should be 'email', 'phone', 'credit_card', 'iban', 'national_id' "
            "or 'secret'",
        ),
        (
            {"name": "p", "type": "pii", "scope": "all"},
            "evaluators[0].scope: Input should be 'output', 'input' or 'both'",
        ),
        ({"name": "j", "type": "json_valid", "schema": {}}, "evaluators[0].schema: unknown key"),
        (
            {"name": "f", "type": "refusal", "phrases": []},
            "evaluators[0].phrases: List should have at least 1 item after validation, not 0",
        ),
    ],
    ids=[
        "regex-bad-pattern",
        "regex-no-patterns",
        "length-no-bounds",
        "length-min-over-max",
        "pii-unknown-detector",
        "pii-unknown-scope",
        "json-valid-unknown-key",
        "refusal-no-phrases",
    ],
)
def test_config_errors_name_the_yaml_path(evaluator: dict[str, Any], problem: str) -> None:
    """Bad check settings fail at start-up with the problem under its YAML path."""
    with pytest.raises(ConfigError) as caught:
        validate_config({"exporters": {"debug": {}}, "evaluators": [evaluator]})

    assert caught.value.problems == [problem]


def test_checks_are_built_from_their_config_models() -> None:
    """The classes take the config models directly, as the registry passes them."""
    checks = [
        JsonValidEvaluator(JsonValidEvaluatorConfig(name="a", type="json_valid"), None),
        LengthEvaluator(LengthEvaluatorConfig(name="b", type="length", max_chars=5), None),
        RefusalEvaluator(RefusalEvaluatorConfig(name="c", type="refusal"), None),
        RegexEvaluator(RegexEvaluatorConfig(name="d", type="regex", must_match=["x"]), None),
        PiiEvaluator(PiiEvaluatorConfig(name="e", type="pii"), None),
    ]

    assert [c.name for c in checks] == ["a", "b", "c", "d", "e"]
    assert len({c.config_hash for c in checks}) == 5
