#!/usr/bin/env python3
"""Run the capture harness: fake OpenAI server + OTLP/gRPC capture server in this process, one client
process per (library/mode, scenario) inside that library's venv (or node for the Vercel AI SDK).

    python3 tools/capture/orchestrate.py                      # set up venvs / npm if missing, capture everything
    python3 tools/capture/orchestrate.py --only openlit-default,openlit-no_content --scenarios single,error
    python3 tools/capture/orchestrate.py --verify-only        # re-check tests/fixtures against INDEX.md

Output: tests/fixtures/<library>-<mode>/<scenario>/ (traces-NNN.pb|json, logs-NNN.pb|json, metrics-NNN.pb|json,
expected.json, http_requests.jsonl, client_result.json, client_stderr.txt).

This script needs grpcio + protobuf + opentelemetry-proto; when they are missing it creates
/tmp/capture-venvs/_harness (requirements/harness.txt) and re-executes itself there.
"""

from __future__ import annotations

import argparse
import ast
import glob
import json
import os
import shutil
import subprocess
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
VENV_ROOT = os.environ.get("CAPTURE_VENVS", "/tmp/capture-venvs")
DEFAULT_OUT = os.path.join(REPO, "tests", "fixtures")
SHARED_INDEX = os.path.join(os.path.dirname(REPO), "shared", "fixtures", "INDEX.md")

sys.path.insert(0, HERE)


def _ensure_harness_venv() -> None:
    try:
        import grpc  # noqa: F401
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2  # noqa: F401
    except ImportError:
        venv = os.path.join(VENV_ROOT, "_harness")
        py = os.path.join(venv, "bin", "python")
        if os.path.abspath(sys.executable) == os.path.abspath(py):
            raise
        if not os.path.exists(py):
            subprocess.check_call([sys.executable, "-m", "venv", venv])
            subprocess.check_call(
                [py, "-m", "pip", "install", "-q", "-r", os.path.join(HERE, "requirements", "harness.txt")]
            )
        os.execv(py, [py, os.path.abspath(__file__), *sys.argv[1:]])


import scenarios as sc  # noqa: E402

GENAI_CONTENT = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
OPT_IN = "OTEL_SEMCONV_STABILITY_OPT_IN"

# library key -> (venv/requirements name, human-readable library name)
LIBS: dict[str, dict[str, Any]] = {
    "openlit": {"venv": "openlit", "name": "openlit"},
    "litellm": {"venv": "litellm", "name": "litellm (otel callback)"},
    "traceloop": {"venv": "traceloop", "name": "opentelemetry-instrumentation-openai (OpenLLMetry/Traceloop)"},
    "otelv2": {
        "venv": "otelv2",
        "name": "opentelemetry-instrumentation-openai-v2 (+ opentelemetry-util-genai 1.1b0)",
    },
    "otelv2ug04": {
        "venv": "otelv2ug04",
        "name": "opentelemetry-instrumentation-openai-v2 (+ opentelemetry-util-genai 0.4b0)",
    },
    "otelv2legacy": {"venv": "otelv2legacy", "name": "opentelemetry-instrumentation-openai-v2"},
    "openinference": {"venv": "openinference", "name": "openinference-instrumentation-openai (Arize OpenInference)"},
    "langchain-openinference": {
        "venv": "langchain-openinference",
        "name": "openinference-instrumentation-langchain (+ langchain-openai)",
    },
    "vercel-ai": {"venv": None, "name": "ai (Vercel AI SDK, experimental_telemetry) + @ai-sdk/openai"},
}

# fixture name -> library, mode, env, client options. Order = priority order.
COMBOS: dict[str, dict[str, Any]] = {
    "openlit-default": {"lib": "openlit", "mode": "default", "env": {}},
    "openlit-no_content": {"lib": "openlit", "mode": "no_content", "env": {GENAI_CONTENT: "false"}},
    "litellm-default": {"lib": "litellm", "mode": "default", "env": {}, "app_root_span": False, "settle": 2.0},
    "litellm-request_span": {
        "lib": "litellm",
        "mode": "request_span",
        "env": {"USE_OTEL_LITELLM_REQUEST_SPAN": "true"},
        "hold": 3.0,
        "settle": 1.0,
    },
    "litellm-events": {
        "lib": "litellm",
        "mode": "events",
        "env": {"LITELLM_OTEL_INTEGRATION_ENABLE_EVENTS": "true"},
        "app_root_span": False,
        "settle": 2.0,
    },
    "litellm-semconv_event_only": {
        "lib": "litellm",
        "mode": "semconv_event_only",
        "env": {
            "LITELLM_OTEL_INTEGRATION_ENABLE_EVENTS": "true",
            OPT_IN: "gen_ai_latest_experimental",
            GENAI_CONTENT: "EVENT_ONLY",
        },
        "app_root_span": False,
        "settle": 2.0,
    },
    "traceloop-events": {"lib": "traceloop", "mode": "events", "env": {"TRACELOOP_TRACE_CONTENT": "true"}},
    "traceloop-no_content": {"lib": "traceloop", "mode": "no_content", "env": {"TRACELOOP_TRACE_CONTENT": "false"}},
    "otelv2-span_and_event": {
        "lib": "otelv2",
        "mode": "span_and_event",
        "env": {OPT_IN: "gen_ai_latest_experimental", GENAI_CONTENT: "SPAN_AND_EVENT"},
    },
    "otelv2-true": {"lib": "otelv2", "mode": "true", "env": {GENAI_CONTENT: "true"}},
    "otelv2-no_content": {
        "lib": "otelv2",
        "mode": "no_content",
        "env": {OPT_IN: "gen_ai_latest_experimental", GENAI_CONTENT: "NO_CONTENT"},
    },
    "openinference-hide_io": {
        "lib": "openinference",
        "mode": "hide_io",
        "env": {"OPENINFERENCE_HIDE_INPUTS": "true", "OPENINFERENCE_HIDE_OUTPUTS": "true"},
    },
    "langchain-openinference-default": {"lib": "langchain-openinference", "mode": "default", "env": {}},
    # --- beyond the priority list: the remaining combinations of INDEX.md
    "litellm-parent_span": {"lib": "litellm", "mode": "parent_span", "env": {}, "hold": 3.0, "settle": 1.0},
    "otelv2legacy-no_content": {"lib": "otelv2legacy", "mode": "no_content", "env": {GENAI_CONTENT: "false"}},
    "otelv2ug04-span_only": {
        "lib": "otelv2ug04",
        "mode": "span_only",
        "env": {OPT_IN: "gen_ai_latest_experimental", GENAI_CONTENT: "SPAN_ONLY"},
    },
    "otelv2ug04-event_only": {
        "lib": "otelv2ug04",
        "mode": "event_only",
        "env": {OPT_IN: "gen_ai_latest_experimental", GENAI_CONTENT: "EVENT_ONLY"},
    },
    "otelv2ug04-true": {"lib": "otelv2ug04", "mode": "true", "env": {GENAI_CONTENT: "true"}},
    "vercel-ai-default": {"lib": "vercel-ai", "mode": "default", "env": {"HELDOUT_RECORD_CONTENT": "true"}},
    "vercel-ai-no_content": {"lib": "vercel-ai", "mode": "no_content", "env": {"HELDOUT_RECORD_CONTENT": "false"}},
}

# Set for every client: nothing may leave 127.0.0.1, no phone-home telemetry, no downloads at import time.
SAFE_ENV = {
    "NO_PROXY": "127.0.0.1,localhost",
    "no_proxy": "127.0.0.1,localhost",
    "TRACELOOP_TELEMETRY": "false",
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_TELEMETRY": "False",
    "LITELLM_DONT_SHOW_FEEDBACK_BOX": "True",
    "DO_NOT_TRACK": "1",
    "ANONYMIZED_TELEMETRY": "False",
    "SCARF_NO_ANALYTICS": "true",
    "HF_HUB_OFFLINE": "1",
    "LANGCHAIN_TRACING_V2": "false",
    "LANGSMITH_TRACING": "false",
    "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "",
    "PYTHONUNBUFFERED": "1",
    "PYTHONIOENCODING": "utf-8",
}

NOTES = (
    "Top-level messages/completion describe the LAST LLM call of the scenario; `calls` lists every "
    "chat.completions call in order (tool_call has two). tool_calls = every tool call the fake server returned."
)


# ---------------------------------------------------------------------------------------------------------
# set-up


OPTIONS: dict[str, Any] = {"python": None}  # --python: run every Python client with this interpreter instead


def _read_text(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def _read_json(path: str) -> Any:
    return json.loads(_read_text(path))


def venv_python(lib: str) -> str:
    if OPTIONS["python"]:
        return str(OPTIONS["python"])
    return os.path.join(VENV_ROOT, LIBS[lib]["venv"], "bin", "python")


def setup(libs: set[str]) -> None:
    for lib in sorted(libs):
        if lib == "vercel-ai":
            js = os.path.join(HERE, "js")
            if not os.path.isdir(os.path.join(js, "node_modules")):
                print("[setup] npm install in", js, flush=True)
                subprocess.check_call(["npm", "install", "--no-audit", "--no-fund"], cwd=js)
            continue
        py = venv_python(lib)
        if os.path.exists(py):
            continue
        venv = os.path.dirname(os.path.dirname(py))
        print(f"[setup] creating {venv}", flush=True)
        subprocess.check_call(["python3.11", "-m", "venv", venv])
        req = os.path.join(HERE, "requirements", LIBS[lib]["venv"] + ".txt")
        subprocess.check_call([py, "-m", "pip", "install", "-q", "-r", req])


# ---------------------------------------------------------------------------------------------------------
# expected.json


def _norm_content(content: Any) -> Any:
    if isinstance(content, list):
        texts = [p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") in ("text", None)]
        return "".join(texts)
    return content


def norm_message(m: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"role": m.get("role"), "content": _norm_content(m.get("content"))}
    if m.get("tool_calls"):
        out["tool_calls"] = [
            {
                "id": t.get("id"),
                "name": (t.get("function") or {}).get("name"),
                "arguments": (t.get("function") or {}).get("arguments"),
            }
            for t in m["tool_calls"]
        ]
    if m.get("tool_call_id"):
        out["tool_call_id"] = m["tool_call_id"]
    return out


def build_expected(fixture: str, combo: dict[str, Any], scenario: str, d: str) -> dict[str, Any]:
    reqs = [
        json.loads(line) for line in _read_text(os.path.join(d, "http_requests.jsonl")).splitlines() if line.strip()
    ]
    client = _read_json(os.path.join(d, "client_result.json"))
    calls = []
    for r in reqs:
        if not str(r.get("path", "")).rstrip("/").endswith("chat/completions") or not isinstance(r.get("body"), dict):
            continue
        body = r["body"]
        resp = sc.scripted_response(body, r.get("fail", False))
        call: dict[str, Any] = {
            "messages": [norm_message(m) for m in body.get("messages", [])],
            "request_params": {k: v for k, v in body.items() if k not in ("messages", "model", "tools")},
            "tools": [(t.get("function") or {}).get("name") for t in body.get("tools") or []],
            "stream": bool(body.get("stream")),
            "http_request_recorded": True,
        }
        if resp["kind"] == "error":
            call["error"] = {"http_status": resp["http_status"], "message": resp["message"]}
            call["completion"] = None
        else:
            call["completion"] = resp["content"]
            call["response_tool_calls"] = resp["tool_calls"]
            call["finish_reason"] = resp["finish_reason"]
            call["response_model"] = sc.RESPONSE_MODEL
            call["response_id"] = sc.RESPONSE_ID
        calls.append(call)
    last = calls[-1] if calls else {"messages": [], "completion": None}
    system = next((m["content"] for m in last["messages"] if m["role"] == "system"), None)
    body_model = next(
        (r["body"].get("model") for r in reversed(reqs) if isinstance(r.get("body"), dict) and r["body"].get("model")),
        sc.REQUEST_MODEL,
    )
    lib = combo["lib"]
    exp: dict[str, Any] = {
        "fixture": fixture,
        "library": LIBS[lib]["name"],
        "library_version": client.get("library_version"),
        "mode": combo["mode"],
        "scenario": scenario,
        "model": body_model,
        "response_model": last.get("response_model"),
        "system_prompt": system,
        "messages": last["messages"],
        "completion": last.get("completion"),
        "tool_calls": [t for c in calls for t in c.get("response_tool_calls", [])],
        "is_error": any("error" in c for c in calls),
        "content_location": None,  # filled from the observed capture (see observe())
        "n_llm_calls": len(calls),
        "n_http_requests": len(reqs),
        "calls": calls,
        "notes": NOTES,
        "capture_env": combo["env"],
        "capture_code": client.get("capture_code"),
        "app_root_span": combo.get("app_root_span", True),
        "openai_sdk_version": client.get("openai_version"),
        "otel_sdk_version": client.get("otel_sdk_version"),
    }
    if lib == "langchain-openinference":
        exp["langchain_openai_version"] = client.get("langchain_openai_version")
    if lib == "vercel-ai":
        exp["ai_sdk_openai_version"] = client.get("ai_sdk_openai_version")
    return exp


# ---------------------------------------------------------------------------------------------------------
# observation: where did the content land?


def _strings(v: Any, depth: int = 0) -> list[str]:
    """All strings inside v; JSON / Python-repr strings are decoded recursively."""
    out: list[str] = []
    if isinstance(v, str):
        out.append(v)
        s = v.strip()
        if depth < 4 and s[:1] in ("{", "[", '"'):
            dec: Any = None
            try:
                dec = json.loads(s)
            except ValueError:
                try:
                    dec = ast.literal_eval(s)
                except Exception:
                    dec = None
            if dec is not None and not isinstance(dec, (int, float, bool)):
                out.extend(_strings(dec, depth + 1))
    elif isinstance(v, dict):
        for x in v.values():
            out.extend(_strings(x, depth))
    elif isinstance(v, (list, tuple)):
        for x in v:
            out.extend(_strings(x, depth))
    return out


def _anyvalue(v: dict[str, Any]) -> Any:
    if "stringValue" in v:
        return v["stringValue"]
    if "arrayValue" in v:
        return [_anyvalue(x) for x in v["arrayValue"].get("values", [])]
    if "kvlistValue" in v:
        return {kv["key"]: _anyvalue(kv.get("value", {})) for kv in v["kvlistValue"].get("values", [])}
    for k in ("intValue", "doubleValue", "boolValue", "bytesValue"):
        if k in v:
            return v[k]
    return None


def load_capture(d: str) -> dict[str, Any]:
    spans, logs = [], []
    files = {"traces": 0, "logs": 0, "metrics": 0}
    for sig in files:
        files[sig] = len(glob.glob(os.path.join(d, f"{sig}-*.pb")))
    for f in sorted(glob.glob(os.path.join(d, "traces-*.json"))):
        for rs in _read_json(f).get("resourceSpans", []):
            for ss in rs.get("scopeSpans", []):
                for sp in ss.get("spans", []):
                    attrs = {a["key"]: _anyvalue(a.get("value", {})) for a in sp.get("attributes", [])}
                    for ev in sp.get("events", []):
                        for a in ev.get("attributes", []):
                            attrs[f"event:{ev.get('name')}:{a['key']}"] = _anyvalue(a.get("value", {}))
                    spans.append(
                        {
                            "name": sp.get("name"),
                            "scope": ss.get("scope", {}).get("name"),
                            "attrs": attrs,
                            "status": sp.get("status", {}),
                        }
                    )
    for f in sorted(glob.glob(os.path.join(d, "logs-*.json"))):
        for rl in _read_json(f).get("resourceLogs", []):
            for sl in rl.get("scopeLogs", []):
                for lr in sl.get("logRecords", []):
                    attrs = {a["key"]: _anyvalue(a.get("value", {})) for a in lr.get("attributes", [])}
                    logs.append(
                        {
                            "event_name": lr.get("eventName", ""),
                            "attrs": attrs,
                            "body": _anyvalue(lr.get("body", {})) if lr.get("body") else None,
                        }
                    )
    return {"files": files, "spans": spans, "logs": logs}


def observe(cap: dict[str, Any], exp: dict[str, Any]) -> dict[str, Any]:
    last_user = next((m["content"] for m in reversed(exp["messages"]) if m["role"] == "user"), None)
    targets = {"system": exp["system_prompt"], "user": last_user, "completion": exp["completion"]}
    targets = {k: v for k, v in targets.items() if v}
    found: dict[str, set[str]] = {k: set() for k in targets}
    for sp in cap["spans"]:
        strs = _strings(list(sp["attrs"].values()))
        for k, t in targets.items():
            if any(t in s for s in strs):
                found[k].add("span_attributes")
    for lr in cap["logs"]:
        strs = _strings([*lr["attrs"].values(), lr["body"]])
        for k, t in targets.items():
            if any(t in s for s in strs):
                found[k].add("log_records")
    locs = set().union(*found.values()) if found else set()
    loc = "+".join(x for x in ("span_attributes", "log_records") if x in locs) or "none"
    return {"content_location": loc, "found": {k: sorted(v) for k, v in found.items()}}


def parse_index(path: str) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    if not os.path.exists(path):
        return rows
    for line in _read_text(path).splitlines():
        if not line.startswith("| [") or "](" not in line:
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 9:
            continue
        name = cells[0].split("]")[0].lstrip("[")
        rows[name] = {
            "files": cells[3],
            "spans": cells[4],
            "logs": cells[5],
            "is_error": cells[6],
            "declared": cells[7],
        }
    return rows


def verify(out_root: str, fixtures: list[str], scenarios: list[str], index_path: str) -> list[str]:
    index = parse_index(index_path)
    lines = []
    for fx in fixtures:
        for s in scenarios:
            d = os.path.join(out_root, fx, s)
            if not os.path.exists(os.path.join(d, "expected.json")):
                lines.append(f"{fx}/{s}: MISSING")
                continue
            exp = _read_json(os.path.join(d, "expected.json"))
            cap = load_capture(d)
            obs = observe(cap, exp)
            f = cap["files"]
            got = {
                "files": f"{f['traces']}/{f['logs']}/{f['metrics']}",
                "spans": str(len(cap["spans"])),
                "logs": str(len(cap["logs"])),
                "is_error": str(exp["is_error"]),
                "declared": exp["content_location"],
            }
            ref = index.get(f"{fx}/{s}")
            diffs = []
            if ref:
                for k in ("spans", "logs", "is_error", "declared"):
                    if ref[k] != got[k]:
                        diffs.append(f"{k} {got[k]} (INDEX {ref[k]})")
                # how many export requests a run produces depends on batching; compare presence only
                # (traces/logs; metrics are optional here)
                pres = lambda x: [int(n) > 0 for n in x.split("/")[:2]]  # noqa: E731
                if pres(ref["files"]) != pres(got["files"]):
                    diffs.append(f"files {got['files']} (INDEX {ref['files']})")
            # what the client got back must be what the script sent (expected.json calls[].completion)
            client = _read_json(os.path.join(d, "client_result.json"))
            for i, (res, call) in enumerate(zip(client.get("results", []), exp["calls"], strict=False)):
                if "content" in res and (res["content"] or None) != call.get("completion"):
                    diffs.append(f"call {i}: client got {res['content']!r}, expected {call.get('completion')!r}")
            if len(client.get("results", [])) != exp["n_llm_calls"]:
                diffs.append(f"{len(client.get('results', []))} client results for {exp['n_llm_calls']} LLM calls")
            if obs["content_location"] != exp["content_location"]:
                diffs.append(f"observed {obs['content_location']} != expected.json {exp['content_location']}")
            status = "ok" if not diffs else "DIFF: " + "; ".join(diffs)
            lines.append(
                f"{fx}/{s}: files {got['files']} spans {got['spans']} logs {got['logs']} "
                f"is_error {got['is_error']} content {got['declared']} -> {status}"
            )
    return lines


# ---------------------------------------------------------------------------------------------------------
# running


def client_cmd(combo: dict[str, Any], scenario: str, *, base_url: str, otlp: str, result: str) -> list[str]:
    lib = combo["lib"]
    if lib == "vercel-ai":
        cmd = ["node", os.path.join(HERE, "js", "client.mjs")]
    else:
        cmd = [venv_python(lib), os.path.join(HERE, "client.py")]
    cmd += [
        "--lib",
        lib,
        "--mode",
        combo["mode"],
        "--scenario",
        scenario,
        "--base-url",
        base_url,
        "--otlp",
        otlp,
        "--result",
        result,
    ]
    if not combo.get("app_root_span", True):
        cmd.append("--no-app-span")
    if combo.get("hold"):
        cmd += ["--hold-span", str(combo["hold"])]
    if combo.get("settle"):
        cmd += ["--settle", str(combo["settle"])]
    return cmd


def run_one(fake: Any, capture: Any, out_root: str, fixture: str, scenario: str) -> bool:
    combo = COMBOS[fixture]
    d = os.path.join(out_root, fixture, scenario)
    if os.path.isdir(d):
        shutil.rmtree(d)
    os.makedirs(d)
    open(os.path.join(d, "http_requests.jsonl"), "w").close()
    capture.set_output(d)
    fake.set_log(os.path.join(d, "http_requests.jsonl"))
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TMPDIR") if k in os.environ}
    env.update(SAFE_ENV)
    env.update(combo["env"])
    result = os.path.join(d, "client_result.json")
    cmd = client_cmd(combo, scenario, base_url=fake.base_url, otlp=capture.endpoint, result=result)
    t0 = time.monotonic()
    with open(os.path.join(d, "client_stderr.txt"), "w", encoding="utf-8") as err:
        proc = subprocess.run(cmd, env=env, stdout=err, stderr=subprocess.STDOUT, timeout=180, cwd=HERE, check=False)
    # let in-flight exports land (exporters flush on shutdown, so this is only a safety margin)
    while time.monotonic() - max(capture.last_received, t0) < 0.5:
        time.sleep(0.1)
    capture.set_output(None)
    fake.set_log(None)
    ok = proc.returncode == 0 and os.path.exists(result)
    if not ok:
        print(f"  !! {fixture}/{scenario}: client exit {proc.returncode}; see client_stderr.txt", flush=True)
        return False
    # client_result.json as in the shared captures (capture_code goes to expected.json)
    client = _read_json(result)
    exp = build_expected(fixture, combo, scenario, d)
    exp["content_location"] = observe(load_capture(d), exp)["content_location"]
    client.pop("capture_code", None)
    with open(result, "w", encoding="utf-8") as f:
        json.dump(client, f, indent=2, ensure_ascii=False)
    with open(os.path.join(d, "expected.json"), "w", encoding="utf-8") as f:
        json.dump(exp, f, indent=2, ensure_ascii=False)
        f.write("\n")
    # stderr is kept only when the client printed something
    if os.path.getsize(os.path.join(d, "client_stderr.txt")) == 0:
        os.remove(os.path.join(d, "client_stderr.txt"))
    return True


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="", help="comma-separated fixture names (default: all)")
    ap.add_argument("--scenarios", default=",".join(sc.SCENARIOS))
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--index", default=SHARED_INDEX, help="INDEX.md to compare counts with")
    ap.add_argument("--no-setup", action="store_true")
    ap.add_argument("--verify-only", action="store_true")
    ap.add_argument("--python", default=None, help="interpreter for the Python clients (default: per-library venv)")
    args = ap.parse_args()
    OPTIONS["python"] = args.python
    fixtures = [f for f in args.only.split(",") if f] or list(COMBOS)
    for f in fixtures:
        if f not in COMBOS:
            ap.error(f"unknown fixture {f}; known: {', '.join(COMBOS)}")
    scen = [s for s in args.scenarios.split(",") if s]

    if not args.verify_only:
        _ensure_harness_venv()
        from capture_server import CaptureServer
        from fake_openai import FakeOpenAI

        if not args.no_setup and not args.python:
            setup({COMBOS[f]["lib"] for f in fixtures})
        fake = FakeOpenAI().start()
        capture = CaptureServer().start()
        print(f"fake OpenAI {fake.base_url}  OTLP/gRPC {capture.endpoint}", flush=True)
        failed = []
        try:
            for fx in fixtures:
                for s in scen:
                    print(f"[capture] {fx}/{s}", flush=True)
                    if not run_one(fake, capture, args.out, fx, s):
                        failed.append(f"{fx}/{s}")
        finally:
            capture.stop()
            fake.stop()
        if failed:
            print("FAILED:", ", ".join(failed))
    report = verify(args.out, fixtures, scen, args.index)
    print("\n".join(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
