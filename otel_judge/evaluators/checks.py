"""Deterministic checks: evaluators that need no LLM, cheap enough to run on every sampled span.

Each check is built like any evaluator, ``(config, judge)``, but ignores the judge and sets
``self.judge = None``: that is how the judging stage tells a check from an LLM evaluator. It
returns one :class:`~otel_judge.model.Score` keyed by its name: value 1.0 and label ``pass``, or
0.0 and ``fail``, with an explanation that says what failed **without quoting the content** (counts,
offsets, pattern numbers, schema keywords, PII kinds), so explanations can be exported as span
attributes like any other score. ``gate`` (from the config) asks the judging stage to skip the LLM
evaluators of a span when this check fails.

What is checked: ``json_valid``, ``length``, ``refusal`` and ``regex`` look at the completion text
only (``exchange.completion``), not at tool-call arguments. An exchange without completion text
(tool calls only) is checked as the empty string: ``json_valid`` fails, ``length`` fails when
``min_chars`` > 0, ``refusal`` passes, ``regex`` passes its ``must_not_match`` and fails a
``must_match`` that needs a character. ``pii`` chooses its texts with ``scope`` (see
:class:`PiiEvaluator`).

Checks never raise on content: whatever the completion holds, the result is a score.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any, Final, NoReturn

from otel_judge.config import (
    JsonValidEvaluatorConfig,
    LengthEvaluatorConfig,
    PiiEvaluatorConfig,
    RefusalEvaluatorConfig,
    RegexEvaluatorConfig,
)
from otel_judge.errors import ConfigError
from otel_judge.evaluators.llm import Evaluator, config_hash
from otel_judge.judge import Judge
from otel_judge.model import Exchange, Score
from otel_judge.pii import find_pii

__all__ = [
    "CHECK_TYPES",
    "JsonValidEvaluator",
    "LengthEvaluator",
    "PiiEvaluator",
    "RefusalEvaluator",
    "RegexEvaluator",
]


def _result(name: str, passed: bool, explanation: str) -> list[Score]:
    return [
        Score(
            key=name,
            value=1.0 if passed else 0.0,
            label="pass" if passed else "fail",
            explanation=explanation,
            passed=passed,
            low=0.0,
            high=1.0,
        )
    ]


class _Check:
    """What every check shares: name, settings hash, gate, and no judge."""

    def __init__(
        self,
        config: JsonValidEvaluatorConfig
        | LengthEvaluatorConfig
        | RefusalEvaluatorConfig
        | RegexEvaluatorConfig
        | PiiEvaluatorConfig,
    ) -> None:
        self.name = config.name
        self.config_hash = config_hash(config)
        self.gate = config.gate
        self.judge: Judge | None = None

    def check(self, exchange: Exchange) -> list[Score]:
        """The check itself: synchronous, no I/O (the pipeline runs checks inline)."""
        raise NotImplementedError

    async def evaluate(self, exchange: Exchange) -> list[Score]:
        return self.check(exchange)


# --------------------------------------------------------------------------- json_valid

_FENCE: Final = re.compile(r"```(?:json)?[ \t]*\n?(.*?)\n?\s*```", re.DOTALL | re.IGNORECASE)


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not allowed in JSON")


class JsonValidEvaluator(_Check):
    """``type: json_valid``: the completion parses as JSON and, with ``json_schema``, satisfies it.

    Strict JSON (``NaN``/``Infinity`` fail). With ``strip_code_fence`` a completion that is exactly
    one Markdown code fence (```` ```json ... ``` ```` or a bare ```` ``` ````) is unwrapped first.
    Schema errors are explained by the failing keyword, the constraint from the schema and the
    location: ``schema: value at $.score does not satisfy 'maximum': 10``; the location shows
    object keys only when the schema itself names them (other keys come from the content and show
    as ``*``). ``json_schema`` is checked against its meta-schema at construction
    (:class:`ConfigError` when it is not a valid JSON Schema); ``jsonschema`` is imported only then.
    """

    def __init__(self, config: JsonValidEvaluatorConfig, judge: Judge | None = None) -> None:
        super().__init__(config)
        self.config = config
        self._validator: Any = None
        self._best_match: Callable[[Any], Any] | None = None
        self._schema_words: frozenset[str] = frozenset()
        if config.json_schema is not None:
            import jsonschema  # type: ignore[import-untyped]  # no py.typed, and no types-jsonschema in the lock

            cls = jsonschema.validators.validator_for(config.json_schema)
            try:
                cls.check_schema(config.json_schema)
            except jsonschema.SchemaError as exc:
                raise ConfigError(
                    [f"evaluator {config.name!r}: json_schema is not a valid JSON Schema: {exc.message}"]
                ) from None
            self._validator = cls(config.json_schema)
            self._best_match = jsonschema.exceptions.best_match
            self._schema_words = frozenset(_strings(config.json_schema))

    def check(self, exchange: Exchange) -> list[Score]:
        text = (exchange.completion or "").strip()
        if not text:
            return _result(self.name, False, "no completion text")
        if self.config.strip_code_fence and (fenced := _FENCE.fullmatch(text)):
            text = fenced.group(1).strip()
        try:
            data = json.loads(text, parse_constant=_reject_constant)
        except json.JSONDecodeError as exc:
            return _result(self.name, False, f"not JSON: {exc.msg} at char {exc.pos}")
        except ValueError as exc:  # a rejected constant, or an integer beyond Python's digit limit
            return _result(self.name, False, f"not JSON: {exc}")
        except RecursionError:
            return _result(self.name, False, "not JSON: nested too deeply")
        if self._validator is None or self._best_match is None:
            return _result(self.name, True, "valid JSON")
        error = self._best_match(self._validator.iter_errors(data))
        if error is None:
            return _result(self.name, True, "valid JSON, satisfies the schema")
        return _result(self.name, False, f"schema: {self._describe(error)}")

    def _describe(self, error: Any) -> str:
        """The schema error without instance values (jsonschema's messages quote them)."""
        where = "$" + "".join(
            f"[{p}]" if isinstance(p, int) else f".{p}" if p in self._schema_words else ".*"
            for p in error.absolute_path
        )
        if error.validator == "required":
            return f"{error.message} at {where}"  # names the missing property, which comes from the schema
        constraint = json.dumps(error.validator_value, sort_keys=True)
        if len(constraint) > 80:
            constraint = constraint[:77] + "..."
        return f"value at {where} does not satisfy {error.validator!r}: {constraint}"


def _strings(node: Any) -> Iterator[str]:
    """Every string in a JSON value, keys included."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)


# --------------------------------------------------------------------------- length


class LengthEvaluator(_Check):
    """``type: length``: the completion has between ``min_chars`` and ``max_chars`` characters
    (Unicode code points, whitespace included, bounds inclusive). No completion text counts as 0."""

    def __init__(self, config: LengthEvaluatorConfig, judge: Judge | None = None) -> None:
        super().__init__(config)
        self.config = config

    def check(self, exchange: Exchange) -> list[Score]:
        n = len(exchange.completion or "")
        low, high = self.config.min_chars, self.config.max_chars
        if low is not None and n < low:
            return _result(self.name, False, f"{n} characters, fewer than min_chars {low}")
        if high is not None and n > high:
            return _result(self.name, False, f"{n} characters, more than max_chars {high}")
        return _result(self.name, True, f"{n} characters, within bounds")


# --------------------------------------------------------------------------- refusal

_APOSTROPHES: Final = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'"})


def _normalise(text: str) -> str:
    """Case-folded, typographic apostrophes made straight, whitespace runs made one space."""
    return " ".join(text.translate(_APOSTROPHES).casefold().split())


class RefusalEvaluator(_Check):
    """``type: refusal``: fails when the completion contains a refusal phrase.

    Matching is case-insensitive, treats typographic apostrophes (U+2018, U+2019, U+02BC) as ``'``
    and any run of whitespace as one space. The explanation names the configured phrase that was
    found (a phrase of the config, not content). No completion text passes.
    """

    def __init__(self, config: RefusalEvaluatorConfig, judge: Judge | None = None) -> None:
        super().__init__(config)
        self.config = config
        self._phrases = [(_normalise(p), p) for p in config.phrases if _normalise(p)]

    def check(self, exchange: Exchange) -> list[Score]:
        text = _normalise(exchange.completion or "")
        for normalised, phrase in self._phrases:
            if normalised in text:
                return _result(self.name, False, f"refusal phrase found: {phrase!r}")
        return _result(self.name, True, "no refusal phrase found")


# --------------------------------------------------------------------------- regex


class RegexEvaluator(_Check):
    """``type: regex``: every ``must_match`` pattern is found in the completion and no
    ``must_not_match`` pattern is (``re.search``, Python syntax; use inline flags such as ``(?i)``).

    The explanation lists every failing pattern by list and 1-based position (``must_not_match
    pattern 2 found``), never the matched text. No completion text is searched as the empty string.
    """

    def __init__(self, config: RegexEvaluatorConfig, judge: Judge | None = None) -> None:
        super().__init__(config)
        self.config = config
        self._must = [re.compile(p) for p in config.must_match]
        self._must_not = [re.compile(p) for p in config.must_not_match]

    def check(self, exchange: Exchange) -> list[Score]:
        text = exchange.completion or ""
        problems = [f"must_match pattern {i} not found" for i, p in enumerate(self._must, 1) if not p.search(text)]
        problems += [f"must_not_match pattern {i} found" for i, p in enumerate(self._must_not, 1) if p.search(text)]
        if problems:
            return _result(self.name, False, "; ".join(problems))
        return _result(self.name, True, "all patterns satisfied")


# --------------------------------------------------------------------------- pii


class PiiEvaluator(_Check):
    """``type: pii``: fails when personal data or a secret of ``detectors`` is found
    (:mod:`otel_judge.pii` documents each detector).

    ``scope`` selects the texts: ``output`` = the completion and the arguments of the output tool
    calls; ``input`` = the system instructions and every message's content and tool-call
    arguments; ``both``. Each text is scanned on its own. The explanation lists the kinds found
    (``found: credit_card, email``), never a value or an offset.
    """

    def __init__(self, config: PiiEvaluatorConfig, judge: Judge | None = None) -> None:
        super().__init__(config)
        self.config = config

    def texts(self, exchange: Exchange) -> Iterator[str]:
        """The texts ``scope`` selects, in the exchange's order."""
        if self.config.scope in ("input", "both"):
            yield exchange.system or ""
            for message in exchange.messages:
                yield message.content or ""
                yield from (c.arguments or "" for c in message.tool_calls)
        if self.config.scope in ("output", "both"):
            yield exchange.completion or ""
            yield from (c.arguments or "" for c in exchange.tool_calls)

    def check(self, exchange: Exchange) -> list[Score]:
        found = {f.kind for text in self.texts(exchange) if text for f in find_pii(text, self.config.detectors)}
        if found:
            return _result(self.name, False, "found: " + ", ".join(sorted(found)))
        return _result(self.name, True, "none found")


#: The check types, by the ``type`` key of their config; merged into ``EVALUATOR_TYPES``.
CHECK_TYPES: Final[dict[str, Callable[[Any, Judge], Evaluator]]] = {
    "json_valid": JsonValidEvaluator,
    "length": LengthEvaluator,
    "refusal": RefusalEvaluator,
    "regex": RegexEvaluator,
    "pii": PiiEvaluator,
}
