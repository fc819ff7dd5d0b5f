"""Personal data and secrets in text: detection by offsets, and redaction.

No third-party dependency: each kind is one compiled regular expression, scanned once over the text
(``national_id``: one per country format), plus a validation step where a checksum or a range rule
exists, so that random digit runs do not match. The kinds (:data:`~otel_judge.config.PiiKind`) and
their rules:

``email``
    ``local@domain.tld``: local part of ``[A-Za-z0-9._%+-]``, one or more dotted domain labels,
    an alphabetic top-level label of 2-63 letters. ASCII only.
``phone``
    8 to 15 digits in all. With a leading ``+`` (E.164-ish, ``+<country code>``): any grouping,
    separators optional (``+14155552671``, ``+44 20 7946 0958``, ``+49 (0)30 1234567``). Without
    one: at least three digit groups separated by space, dot, dash or an area code in parentheses
    (``(415) 555-2671``, ``415.555.2671``, ``06 12 34 56 78``, ``0044 20 7946 0958``), every group
    after the first of two digits or more. Trailing space-separated digit groups are dropped from a
    candidate with a +, parentheses, dash or dot until it is valid (``(415) 555-2671 2 times``).
    Not phones: plain digit strings, dates (``2024-01-15``, ``15.01.2024``), dotted quads (IP
    addresses), thousands-grouped numbers (``10 000 000``, ``1.000.000.000``) and the US SSN shape
    ``ddd-dd-dddd``.
``credit_card``
    13 to 19 digits, either contiguous or in groups separated by single spaces or dashes (first
    group of 4 digits, the others of 3-6, the last of 1-6: ``4111 1111 1111 1111``,
    ``3400-000000-00009``); the first digit is 2-6 (the major networks' IIN ranges), the number
    passes the **Luhn** check and is not one repeated digit.
``iban``
    Two-letter country code, two check digits and the BBAN, with single spaces allowed anywhere
    between characters; exactly the length the SWIFT IBAN registry gives for that country
    (:data:`IBAN_LENGTHS`), and the ISO 13616 **mod-97** check holds. Case-insensitive.
``national_id``
    * US Social Security Number ``ddd-dd-dddd`` (dashes required), excluding the never-issued
      ranges: area 000, 666 and 900-999, group 00, serial 0000.
    * UK National Insurance number ``AB 12 34 56 C`` (spaces optional, upper case): the prefix
      letters HMRC allows (first not D, F, I, Q, U, V; second not D, F, I, O, Q, U, V; not BG,
      GB, KN, NK, NT, TN, ZZ) and a suffix A-D.
    * French social security number (NIR, *numéro de sécurité sociale*), 15 characters with
      optional single spaces (``1 85 05 78 006 084 91``): sex 1 or 2, year, month 01-12, 20,
      30-42 or 50-99, department (``2A``/``2B`` for Corsica), commune, order number, and the
      2-digit key ``97 - (first 13 digits mod 97)`` (2A read as 19, 2B as 18).
``secret``
    OpenAI-style keys ``sk-...`` (also ``sk-proj-``, ``sk-ant-`` for Anthropic; 20+ characters of
    ``[A-Za-z0-9_-]`` containing a digit), AWS access key ids ``AKIA``/``ASIA`` + 16 of
    ``[0-9A-Z]``, GitHub tokens ``gh[pousr]_`` + 36+ alphanumerics and ``github_pat_...``, Slack
    tokens ``xox[baprs]-...``, Google API keys ``AIza`` + 35 characters, JWTs
    ``eyJ...\\.eyJ...\\.<signature>``, PEM private keys (``-----BEGIN ... PRIVATE KEY-----`` with
    the body up to the matching END line, or the base64 lines after the header when it is cut
    off), ``Bearer <token of 20+ characters>``, and assignments of 12+ non-space characters to a
    name ending in ``api_key``/``apikey``/``secret``/``secret_key``/``secret_access_key``/
    ``token``/``password``/``passwd`` (``password: ...``, ``"api_key": "..."``,
    ``AWS_SECRET_ACCESS_KEY=...``). For ``Bearer`` and assignments only the value is the finding,
    so ``password=[REDACTED:secret]`` keeps the name.

Digit-based kinds need a boundary that is neither a letter nor a digit on both sides: a number
glued to a word is not matched. A :class:`Finding` carries offsets only; nothing here keeps,
logs or returns the matched text.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Final

from otel_judge.config import ALL_PII_KINDS, PiiKind
from otel_judge.model import Exchange, ToolCall

__all__ = [
    "IBAN_LENGTHS",
    "REDACTION_TEMPLATE",
    "Finding",
    "find_pii",
    "iban_valid",
    "luhn_valid",
    "nir_valid",
    "redact",
    "redact_exchange",
]

REDACTION_TEMPLATE: Final = "[REDACTED:{kind}]"


@dataclass(frozen=True, slots=True)
class Finding:
    """A detected value of ``kind`` at ``text[start:end]``. Offsets only, never the value itself."""

    kind: PiiKind
    start: int
    end: int


# --------------------------------------------------------------------------- email

_EMAIL: Final = re.compile(
    r"(?<![A-Za-z0-9._%+-])"  # start at the beginning of the local part, so a failure is not retried inside it
    r"[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,63}(?![A-Za-z])"
)


def _email(text: str) -> Iterator[tuple[int, int]]:
    if "@" not in text:
        return
    for m in _EMAIL.finditer(text):
        yield m.span()


# --------------------------------------------------------------------------- phone

_PHONE: Final = re.compile(
    r"(?<![\w.+-])"
    r"(?:\+\d{1,3}[ .-]?)?"  # +country code
    r"(?:\(\d{1,5}\)[ .-]?)?"  # (area code) or (0) trunk prefix
    r"\d{1,14}(?:[ .-]\d{1,14}){0,6}"
    r"(?!\w|[.-]\d)"
)
_NOT_PHONE: Final = re.compile(
    r"\d{4}([-./])\d{1,2}\1\d{1,2}"  # 2024-01-15
    r"|\d{1,2}([-./])\d{1,2}\2\d{4}"  # 15.01.2024
    r"|\d{1,3}(?:\.\d{1,3}){3}"  # 192.168.100.200
    r"|\d{1,3}(?: \d{3})+|\d{1,3}(?:\.\d{3})+"  # 10 000 000, 1.000.000.000
    r"|\d{3}-\d{2}-\d{4}"  # the US SSN shape
)
_PHONE_GROUPS: Final = re.compile(r"\d+")


def _phone_valid(candidate: str) -> bool:
    groups = _PHONE_GROUPS.findall(candidate)
    if not 8 <= sum(len(g) for g in groups) <= 15:
        return False
    if candidate.startswith("+"):
        return True
    return len(groups) >= 3 and all(len(g) >= 2 for g in groups[1:]) and not _NOT_PHONE.fullmatch(candidate)


def _phone_length(candidate: str) -> int:
    """Length of the phone number at the start of ``candidate``; 0 when there is none.

    The pattern takes every following digit group, so "(415) 555-2671 2 times" gives a candidate
    with a trailing "2". When the candidate has a phone-specific mark (+, parentheses, dash or dot
    separators), trailing space-separated groups are dropped until it is valid. Space-only
    candidates are not shortened: "4111 1111 1111 1111" is no phone, and neither is its prefix.
    """
    if _phone_valid(candidate):
        return len(candidate)
    if candidate[0] not in "+(" and "-" not in candidate and "." not in candidate:
        return 0
    end = candidate.rfind(" ")
    while end > 0:
        if _phone_valid(candidate[:end]):
            return end
        end = candidate.rfind(" ", 0, end)
    return 0


def _phone(text: str) -> Iterator[tuple[int, int]]:
    for m in _PHONE.finditer(text):
        length = _phone_length(m.group())
        if length:
            yield m.start(), m.start() + length


# --------------------------------------------------------------------------- credit_card

# A run of digit groups joined by single spaces or dashes. No look-ahead: a run always matches to its
# end, so long runs cost one pass (boundaries are checked in code).
_DIGIT_RUN: Final = re.compile(r"\d+(?:[ -]\d+)*")
_DIGIT_GROUP: Final = re.compile(r"\d+")


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check of a digit string."""
    total = 0
    for i, char in enumerate(reversed(digits)):
        d = ord(char) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _is_card(digits: str) -> bool:
    return (
        13 <= len(digits) <= 19
        and digits[0] in "23456"
        and digits.count(digits[0]) != len(digits)
        and luhn_valid(digits)
    )


def _glued(text: str, index: int) -> bool:
    """``text[index]`` exists and is an ASCII letter or digit."""
    return 0 <= index < len(text) and text[index].isascii() and text[index].isalnum()


def _credit_card(text: str) -> Iterator[tuple[int, int]]:
    for run in _DIGIT_RUN.finditer(text):
        groups = [(g.start(), g.end()) for g in _DIGIT_GROUP.finditer(text, run.start(), run.end())]
        # A group glued to a letter is part of a word, not of a card number.
        usable = [
            not (k == 0 and _glued(text, s - 1)) and not (k == len(groups) - 1 and _glued(text, e))
            for k, (s, e) in enumerate(groups)
        ]
        i = 0
        while i < len(groups):
            end = _card_at(text, groups, usable, i)
            if end is None:
                i += 1
            else:
                yield groups[i][0], groups[end][1]
                i = end + 1


def _card_at(text: str, groups: list[tuple[int, int]], usable: list[bool], i: int) -> int | None:
    """Index of the last group of the longest card number starting at group ``i``, if any."""
    if not usable[i]:
        return None
    first = groups[i][1] - groups[i][0]
    if 13 <= first <= 19:
        return i if _is_card(text[groups[i][0] : groups[i][1]]) else None
    if first != 4:
        return None
    candidates: list[int] = []
    digits = text[groups[i][0] : groups[i][1]]
    for j in range(i + 1, len(groups)):
        size = groups[j][1] - groups[j][0]
        if not usable[j] or size > 6 or len(digits) + size > 19:
            break
        digits += text[groups[j][0] : groups[j][1]]
        if len(digits) >= 13 and _is_card(digits):
            candidates.append(j)
        if size < 3:  # only the last group may be shorter than 3 digits
            break
    return candidates[-1] if candidates else None


# --------------------------------------------------------------------------- iban

#: IBAN length per country code, from the SWIFT IBAN registry (ISO 13616).
IBAN_LENGTHS: Final[dict[str, int]] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HN": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21,
    "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28,
    "NL": 18, "NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22,
    "RU": 33, "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25,
    "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip

_IBAN_START: Final = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}")


def iban_valid(iban: str) -> bool:
    """The ISO 13616 mod-97 check of a compact IBAN (no spaces; letters in either case)."""
    rearranged = (iban[4:] + iban[:4]).upper()
    if not rearranged.isascii() or not rearranged.isalnum():
        return False
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def _iban(text: str) -> Iterator[tuple[int, int]]:
    resume = 0
    for m in _IBAN_START.finditer(text):
        start = m.start()
        length = IBAN_LENGTHS.get(m.group()[:2].upper())
        if start < resume or length is None:
            continue
        end = _take_alnum(text, start, length)
        if end is None or _glued(text, end):
            continue
        if iban_valid(text[start:end].replace(" ", "")):
            resume = end
            yield start, end


def _take_alnum(text: str, start: int, count: int) -> int | None:
    """End offset of ``count`` ASCII letters/digits from ``start``, single spaces allowed between them."""
    i, seen = start, 0
    while seen < count and i < len(text):
        if _glued(text, i):
            seen += 1
        elif not (text[i] == " " and seen and _glued(text, i + 1)):
            break
        i += 1
    return i if seen == count else None


# --------------------------------------------------------------------------- national_id

_SSN: Final = re.compile(r"(?<![\w-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\w-])")
_NINO: Final = re.compile(
    r"(?<![A-Za-z0-9])(?!BG|GB|KN|NK|NT|TN|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]"
    r" ?\d{2} ?\d{2} ?\d{2} ?[A-D](?![A-Za-z0-9])"
)
_NIR: Final = re.compile(r"(?<![A-Za-z0-9])[12](?: ?[0-9AB]){14}(?![A-Za-z0-9])")
_NIR_SHAPE: Final = re.compile(r"[12]\d{2}(?P<month>\d{2})(?P<dept>\d{2}|2[AB])\d{8}")


def nir_valid(nir: str) -> bool:
    """A compact French NIR (15 characters) has a plausible month and a matching mod-97 key."""
    shape = _NIR_SHAPE.fullmatch(nir)
    if shape is None:
        return False
    month = int(shape["month"])
    if not (1 <= month <= 12 or month == 20 or 30 <= month <= 42 or month >= 50):
        return False
    dept = {"2A": "19", "2B": "18"}.get(shape["dept"], shape["dept"])
    body = nir[:5] + dept + nir[7:13]
    return int(nir[13:]) == 97 - int(body) % 97


def _national_id(text: str) -> Iterator[tuple[int, int]]:
    for m in _SSN.finditer(text):
        yield m.span()
    for m in _NINO.finditer(text):
        yield m.span()
    for m in _NIR.finditer(text):
        if nir_valid(m.group().replace(" ", "")):
            yield m.span()


# --------------------------------------------------------------------------- secret

_SECRET: Final = re.compile(
    r"(?P<pem>-----BEGIN (?P<pem_type>[A-Z0-9 ]*)PRIVATE KEY-----"
    # The body may not run into another BEGIN: each header scans at most to the next one.
    r"(?:(?:(?!-----BEGIN )[\s\S])*?-----END (?P=pem_type)PRIVATE KEY-----|(?:\s+[A-Za-z0-9+/=]{8,})*))"
    r"|(?P<jwt>\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*)"
    r"|(?P<sk>\bsk-(?P<sk_body>[A-Za-z0-9_-]{20,}))"  # OpenAI sk-, sk-proj-; Anthropic sk-ant-
    r"|(?P<aws>\b(?:AKIA|ASIA)[0-9A-Z]{16}\b)"
    r"|(?P<github>\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})\b)"
    r"|(?P<slack>\bxox[baprs]-[A-Za-z0-9-]{10,})"
    r"|(?P<google>\bAIza[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-]))"
    r"|\b[Bb]earer\s+(?P<bearer>[A-Za-z0-9._~+/-]{20,}=*)"
    # The value stops before a redaction marker, so redacted text does not match again.
    r"|(?i:api[_-]?key|secret(?:[_-]?(?:access[_-]?)?key)?|token|password|passwd)[\"']?\s*[:=]\s*[\"']?"
    r"(?P<assigned>(?:(?!\[REDACTED:)[^\s\"']){12,})"
)


def _secret(text: str) -> Iterator[tuple[int, int]]:
    for m in _SECRET.finditer(text):
        if m["sk_body"] is not None and not any(c.isdigit() for c in m["sk_body"]):
            continue  # "sk-learn-compatible-estimators" is a phrase, not a key
        for group in ("bearer", "assigned"):
            if m[group] is not None:
                yield m.span(group)
                break
        else:
            yield m.span()


# --------------------------------------------------------------------------- API

_DETECTORS: Final[dict[PiiKind, Callable[[str], Iterator[tuple[int, int]]]]] = {
    "email": _email,
    "phone": _phone,
    "credit_card": _credit_card,
    "iban": _iban,
    "national_id": _national_id,
    "secret": _secret,
}
# Which kind names a redaction when equally long findings of several kinds overlap: the more
# specific (checksummed) kinds first.
_PRECEDENCE_ORDER: Final[tuple[PiiKind, ...]] = ("secret", "credit_card", "iban", "national_id", "email", "phone")
_PRECEDENCE: Final[dict[PiiKind, int]] = {kind: rank for rank, kind in enumerate(_PRECEDENCE_ORDER)}
# Redaction changes the context of what it keeps (a letter next to a number becomes "]") and
# shortens candidates that were too long to be valid, which can expose a match the first scan did
# not report; redact() scans again until a pass finds nothing. Text with findings takes two passes,
# glued look-alikes occasionally three; the cap only bounds pathological input.
_MAX_PASSES: Final = 8


def _kinds(kinds: Iterable[PiiKind]) -> list[PiiKind]:
    chosen = list(dict.fromkeys(kinds))
    unknown = [k for k in chosen if k not in _DETECTORS]
    if unknown:
        raise ValueError(f"unknown PII kind(s) {unknown}; known: {', '.join(ALL_PII_KINDS)}")
    return chosen


def find_pii(text: str, kinds: Iterable[PiiKind] = ALL_PII_KINDS) -> list[Finding]:
    """Every finding of ``kinds`` in ``text``, ordered by (start, end).

    Findings of one kind do not overlap; findings of different kinds may (a phone-shaped NIR, a
    JWT inside a ``token=`` assignment). ValueError for a kind that is not a :data:`PiiKind`.
    """
    findings = [Finding(kind, start, end) for kind in _kinds(kinds) for start, end in _DETECTORS[kind](text)]
    findings.sort(key=lambda f: (f.start, f.end))
    return findings


def _replace(text: str, findings: list[Finding]) -> str:
    """Replace each cluster of overlapping findings by one marker named after its longest finding.

    Replacing the union of a cluster (not just its longest member) leaves no part of any finding
    behind.
    """
    parts: list[str] = []
    pos = 0
    i = 0
    while i < len(findings):
        start, end, best = findings[i].start, findings[i].end, findings[i]
        i += 1
        while i < len(findings) and findings[i].start < end:
            f = findings[i]
            end = max(end, f.end)
            if (f.end - f.start, -_PRECEDENCE[f.kind]) > (best.end - best.start, -_PRECEDENCE[best.kind]):
                best = f
            i += 1
        parts.append(text[pos:start])
        parts.append(REDACTION_TEMPLATE.format(kind=best.kind))
        pos = end
    parts.append(text[pos:])
    return "".join(parts)


def redact(text: str, kinds: Iterable[PiiKind] = ALL_PII_KINDS) -> str:
    """``text`` with every finding of ``kinds`` replaced by ``[REDACTED:<kind>]``.

    Overlapping findings are replaced together by one marker named after the longest of them (on a
    tie, the more specific kind: secret, credit_card, iban, national_id, email, phone). The result
    contains no finding of ``kinds``.
    """
    chosen = _kinds(kinds)
    for _ in range(_MAX_PASSES):
        findings = find_pii(text, chosen)
        if not findings:
            break
        text = _replace(text, findings)
    return text


def _redact_optional(text: str | None, kinds: list[PiiKind]) -> str | None:
    return None if text is None else redact(text, kinds)


def _redact_calls(calls: Iterable[ToolCall], kinds: list[PiiKind]) -> list[ToolCall]:
    return [dataclasses.replace(c, arguments=_redact_optional(c.arguments, kinds)) for c in calls]


def redact_exchange(exchange: Exchange, kinds: Iterable[PiiKind] = ALL_PII_KINDS) -> Exchange:
    """A copy of ``exchange`` with the system instructions, every message's content and tool-call
    arguments, the completion and the output tool-call arguments redacted (see :func:`redact`).

    Metadata (model, provider, ids, token counts, roles, tool names) is copied unchanged; the
    original exchange is not modified. Tool-call arguments are redacted as text, so a redacted
    argument string may no longer be valid JSON.
    """
    chosen = _kinds(kinds)
    messages = [
        dataclasses.replace(
            m,
            content=_redact_optional(m.content, chosen),
            tool_calls=tuple(_redact_calls(m.tool_calls, chosen)),
        )
        for m in exchange.messages
    ]
    return dataclasses.replace(
        exchange,
        system=_redact_optional(exchange.system, chosen),
        messages=messages,
        completion=_redact_optional(exchange.completion, chosen),
        tool_calls=_redact_calls(exchange.tool_calls, chosen),
        sources=list(exchange.sources),
    )
