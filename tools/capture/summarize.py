#!/usr/bin/env python3
"""Print one capture directory compactly: spans (scope, name, attributes, events) and log records.

    python3 tools/capture/summarize.py tests/fixtures/openlit-default/tool_call [--width 200]

Stdlib only (reads the proto3-JSON files next to the .pb files).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from orchestrate import _anyvalue, _read_json


def _hex(b64: str | None) -> str:
    return base64.b64decode(b64).hex()[:8] if b64 else "-"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--width", type=int, default=160)
    a = ap.parse_args()
    w = a.width

    def short(v: object) -> str:
        s = json.dumps(v, ensure_ascii=False)
        return s if len(s) <= w else s[: w - 3] + "..."

    for f in sorted(os.listdir(a.dir)):
        if not f.endswith(".json") or not (f.startswith("traces-") or f.startswith("logs-")):
            continue
        doc = _read_json(os.path.join(a.dir, f))
        print(f"== {f}")
        for rs in doc.get("resourceSpans", []):
            for ss in rs.get("scopeSpans", []):
                for sp in ss.get("spans", []):
                    print(
                        f"SPAN {sp['name']!r} scope={ss.get('scope', {}).get('name')} id={_hex(sp.get('spanId'))} "
                        f"parent={_hex(sp.get('parentSpanId'))} trace={_hex(sp.get('traceId'))} "
                        f"status={sp.get('status', {}).get('code', '-')}"
                    )
                    for at in sp.get("attributes", []):
                        print(f"    {at['key']} = {short(_anyvalue(at.get('value', {})))}")
                    for ev in sp.get("events", []):
                        attrs = {x["key"]: _anyvalue(x.get("value", {})) for x in ev.get("attributes", [])}
                        print(f"    EVENT {ev.get('name')} {short(attrs)}")
        for rl in doc.get("resourceLogs", []):
            for sl in rl.get("scopeLogs", []):
                for lr in sl.get("logRecords", []):
                    attrs = {x["key"]: _anyvalue(x.get("value", {})) for x in lr.get("attributes", [])}
                    print(
                        f"LOG event_name={lr.get('eventName', '')!r} scope={sl.get('scope', {}).get('name')} "
                        f"span={_hex(lr.get('spanId'))}"
                    )
                    print(f"    attrs {short(attrs)}")
                    print(f"    body  {short(_anyvalue(lr['body']) if 'body' in lr else None)}")


if __name__ == "__main__":
    main()
