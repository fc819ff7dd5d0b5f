"""Every text of the capture run: prompts the clients send and answers the fake server scripts.

Stdlib only: imported by fake_openai.py, client.py (inside each library's venv) and orchestrate.py.
The wording matches tests/fixtures and shared/fixtures so expectations stay comparable.
"""

from __future__ import annotations

import json
from typing import Any

REQUEST_MODEL = "gpt-4o-mini"
RESPONSE_MODEL = "gpt-4o-mini-2024-07-18"
RESPONSE_ID = "chatcmpl-heldout0001"
SYSTEM_FINGERPRINT = "fp_fake123"
CREATED = 1735689600
FAIL_HEADER = "X-Fake-Fail"
FAIL_HEADER_VALUE = "500"
ERROR_MESSAGE = "The server had an error while processing your request. (fake 500)"

SYSTEM_PROMPT = "You are Heldout-Bot, a terse assistant. Answer in one sentence."

SCENARIOS = ["single", "multi_turn", "tool_call", "streaming", "error"]

WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["location"],
        },
    },
}

TOOL_CALL_ID = "call_heldout_weather_001"
TOOL_NAME = "get_weather"
TOOL_ARGUMENTS = json.dumps({"location": "Paris", "unit": "celsius"})  # '{"location": "Paris", "unit": "celsius"}'
TOOL_RESULT = json.dumps({"temperature": 18, "condition": "cloudy"})

SINGLE_USER = "What is the capital of France?"
SINGLE_ANSWER = "The capital of France is Paris."
MULTI_HISTORY = [
    {"role": "user", "content": "Name a primary color."},
    {"role": "assistant", "content": "Red is a primary color."},
]
MULTI_USER = 'Now say it in French \u2014 quote the word "rouge"\nand keep it short.'
MULTI_ANSWER = 'En fran\u00e7ais, on dit \u00ab rouge \u00bb ("rouge").'
TOOL_USER = "What's the weather in Paris right now?"
TOOL_ANSWER = "It is currently 18\u00b0C and cloudy in Paris."
STREAM_USER = "Count from one to five in words."
STREAM_ANSWER = "One, two, three, four, five."
STREAM_PIECES = ["One,", " two,", " three,", " four,", " five."]
ERROR_USER = "This request will fail on the server side."

# (prompt_tokens, completion_tokens) per scripted answer
USAGE = {
    "single": (24, 6),
    "multi_turn": (49, 8),
    "tool_call_1": (25, 17),
    "tool_call_2": (37, 8),
    "streaming": (25, 5),
}


def base_messages(scenario: str) -> list[dict[str, Any]]:
    """The first request's messages of a scenario, OpenAI chat format."""
    sys_msg = {"role": "system", "content": SYSTEM_PROMPT}
    if scenario == "single":
        return [sys_msg, {"role": "user", "content": SINGLE_USER}]
    if scenario == "multi_turn":
        return [sys_msg, *[dict(m) for m in MULTI_HISTORY], {"role": "user", "content": MULTI_USER}]
    if scenario == "tool_call":
        return [sys_msg, {"role": "user", "content": TOOL_USER}]
    if scenario == "streaming":
        return [sys_msg, {"role": "user", "content": STREAM_USER}]
    if scenario == "error":
        return [sys_msg, {"role": "user", "content": ERROR_USER}]
    raise ValueError(scenario)


def request_params(scenario: str) -> dict[str, Any]:
    """Sampling params the clients pass (besides model/messages/tools)."""
    if scenario in ("single", "multi_turn"):
        return {"max_tokens": 64, "temperature": 0.2}
    if scenario in ("streaming", "error"):
        return {"temperature": 0.2}
    return {}


def assistant_tool_call_message() -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": TOOL_CALL_ID, "type": "function", "function": {"name": TOOL_NAME, "arguments": TOOL_ARGUMENTS}}
        ],
    }


def tool_result_message() -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": TOOL_CALL_ID, "content": TOOL_RESULT}


# ---------------------------------------------------------------------------------------------------------
# The fake server's script: which answer a request gets. Also used by orchestrate.py to write expected.json.


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content)


def scripted_response(body: dict[str, Any], fail: bool) -> dict[str, Any]:
    """What the fake server answers to a /v1/chat/completions body.

    Returns {"kind": "error"} or {"kind": "ok", "content", "tool_calls", "finish_reason", "usage"}.
    """
    if fail:
        return {"kind": "error", "http_status": 500, "message": ERROR_MESSAGE}
    messages = body.get("messages") or []
    last = messages[-1] if messages else {}
    if body.get("tools") and last.get("role") == "user":
        return {
            "kind": "ok",
            "content": None,
            "tool_calls": [{"id": TOOL_CALL_ID, "name": TOOL_NAME, "arguments": TOOL_ARGUMENTS}],
            "finish_reason": "tool_calls",
            "usage": USAGE["tool_call_1"],
        }
    if last.get("role") == "tool":
        return _answer(TOOL_ANSWER, "tool_call_2")
    text = _text(last.get("content"))
    if text == MULTI_USER:
        return _answer(MULTI_ANSWER, "multi_turn")
    if text == STREAM_USER:
        return _answer(STREAM_ANSWER, "streaming")
    if text == SINGLE_USER:
        return _answer(SINGLE_ANSWER, "single")
    return _answer(SINGLE_ANSWER, "single")


def _answer(text: str, usage_key: str) -> dict[str, Any]:
    return {"kind": "ok", "content": text, "tool_calls": [], "finish_reason": "stop", "usage": USAGE[usage_key]}


def stream_pieces(content: str) -> list[str]:
    if content == STREAM_ANSWER:
        return list(STREAM_PIECES)
    words = content.split(" ")
    return [w if i == 0 else " " + w for i, w in enumerate(words)]
