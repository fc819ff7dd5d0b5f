"""Every capture of a real instrumentation library is read as the library meant it.

Captures live in ../shared/fixtures (given) and tests/fixtures (made with tools/capture). Each
scenario's expected.json says what the application really sent and received; otel-judge must read
the same conversation from the telemetry, join log-based content to its span, judge exactly one
span per model call, and never judge a capture without content. ``--update-golden`` rewrites the
full `otel-judge inspect --all` output kept under tests/golden/inspect as a regression net.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from otel_judge.inspector import inspect_requests, load_files

HERE = Path(__file__).resolve().parent
ROOTS = [HERE.parents[1] / "shared" / "fixtures", HERE / "fixtures"]
GOLDEN = HERE / "golden" / "inspect"
SCENARIOS = sorted(
    {
        (d.parent.name, d.name): d
        for root in ROOTS
        if root.exists()
        for d in root.glob("*/*")
        if (d / "expected.json").exists()
    }.items()
)


def _json_or_text(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def normalise(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Compare content and tool arguments as JSON values: libraries differ in separators and escapes."""
    out = []
    for message in messages:
        item: dict[str, Any] = {"role": message["role"], "content": _json_or_text(message.get("content"))}
        if message.get("tool_calls"):
            item["tool_calls"] = [
                {"id": c.get("id"), "name": c.get("name"), "arguments": _json_or_text(c.get("arguments"))}
                for c in message["tool_calls"]
            ]
        if message.get("tool_call_id"):
            item["tool_call_id"] = message["tool_call_id"]
        out.append(item)
    return out


def _drop_tool_call_ids(expected: dict[str, Any]) -> None:
    for call in expected["tool_calls"]:
        call["id"] = None


def _no_output_tool_calls(expected: dict[str, Any]) -> None:
    expected["tool_calls"] = []


def _no_assistant_tool_call_message(expected: dict[str, Any]) -> None:
    expected["messages"] = [m for m in expected["messages"] if not (m["role"] == "assistant" and m.get("tool_calls"))]


def _first_call_overwritten(expected: dict[str, Any]) -> None:
    expected["tool_calls"] = []  # the first call (the one that returned the tool call) was overwritten


def _no_tool_message_id(expected: dict[str, Any]) -> None:
    for message in expected["messages"]:
        message.pop("tool_call_id", None)


# What a library itself leaves out of its telemetry (INDEX.md, "Dropped data"): otel-judge cannot
# read what was never sent, so the expectation is adjusted, and only for that library and scenario.
KNOWN_LOSSES = {
    ("litellm-default", "tool_call"): [_drop_tool_call_ids],  # gen_ai.completion.0.function_call has no id
    ("litellm-request_span", "tool_call"): [_drop_tool_call_ids],
    ("litellm-events", "tool_call"): [_drop_tool_call_ids],
    ("litellm-semconv_event_only", "tool_call"): [_no_output_tool_calls],  # dropped from its completion events
    ("openlit-default", "tool_call"): [_no_assistant_tool_call_message],  # dropped from the 2nd call's input
    ("traceloop-events", "tool_call"): [_no_tool_message_id],  # gen_ai.tool.message body has no id
    ("litellm-parent_span", "tool_call"): [_first_call_overwritten],
}


# Calls whose output the library did not record at all: found, but no_content.
UNJUDGEABLE_CALLS = {("litellm-semconv_event_only", "tool_call"): 1}
# Calls the library never put in the telemetry: LiteLLM writing onto the caller's span lets the
# second call of the tool round trip overwrite the first.
INVISIBLE_CALLS = {("litellm-parent_span", "tool_call"): 1}


def visible_calls(key: tuple[str, str], expected: dict[str, Any]) -> int:
    return int(expected["n_llm_calls"]) - INVISIBLE_CALLS.get(key, 0)


def inspect_dir(directory: Path) -> list[dict[str, Any]]:
    traces, logs = load_files(sorted(directory.glob("*.pb")))
    return inspect_requests(traces, logs, include_skipped=True)


@pytest.mark.parametrize(("key", "directory"), SCENARIOS, ids=[f"{f}/{s}" for (f, s), _ in SCENARIOS])
def test_capture_is_read_as_the_application_sent_it(key: tuple[str, str], directory: Path, update_golden: bool) -> None:
    expected = json.loads((directory / "expected.json").read_text())
    for adjust in KNOWN_LOSSES.get(key, []):
        adjust(expected)

    entries = inspect_dir(directory)

    judged = sorted((e for e in entries if "skipped" not in e), key=lambda e: e["start_time_unix_nano"])
    model_calls = [e for e in entries if e.get("skipped") not in ("not_a_model_call", "nested_duplicate")]
    assert len(model_calls) == visible_calls(key, expected), "every model call is found once, nested spans or not"
    if expected["content_location"] == "none" or expected["is_error"]:
        assert judged == [], "nothing to judge: content capture off, redacted, or the call failed"
    else:
        unjudgeable = UNJUDGEABLE_CALLS.get(key, 0)
        assert len(judged) == visible_calls(key, expected) - unjudgeable, "exactly one judged span per model call"
        last = judged[-1]
        assert normalise(last["messages"]) == normalise(expected["messages"])
        assert last["completion"] == expected["completion"]
        assert last["system"] == expected["system_prompt"]
        got_calls = [(c["name"], c["id"], _json_or_text(c["arguments"])) for e in judged for c in e["tool_calls"]]
        want_calls = [(c["name"], c["id"], _json_or_text(c["arguments"])) for c in expected["tool_calls"]]
        assert got_calls == want_calls
        assert last["request_model"] in (expected["model"], None)
    golden = GOLDEN / key[0] / f"{key[1]}.json"
    rendered = json.dumps(entries, indent=1, ensure_ascii=False, sort_keys=True) + "\n"
    if update_golden or not golden.exists():
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(rendered)
    assert rendered == golden.read_text(), f"inspect output changed; rerun with --update-golden if intended ({golden})"
