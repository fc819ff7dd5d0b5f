"""Fake OpenAI Chat Completions server (stdlib only, 127.0.0.1, ephemeral port).

* POST /v1/chat/completions (and /chat/completions): JSON, or SSE when "stream": true
  (a usage chunk when stream_options.include_usage is set).
* A get_weather tool call when `tools` are sent and the last message is a user message.
* HTTP 500 + OpenAI-style error body when the request carries the X-Fake-Fail header.
* Every request is appended to the current log file as {"path", "body", "fail"} (http_requests.jsonl).

The answers are scripted in scenarios.py. Run standalone with `python fake_openai.py [--port N]`.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import scenarios as sc


class FakeOpenAI:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._lock = threading.Lock()
        self._log_path: str | None = None
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                outer._record(self.path, None, False)
                self._send_json(404, {"error": {"message": "not found", "type": "invalid_request_error"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw.decode("utf-8")) if raw else None
                except ValueError:
                    body = {"_unparsed": raw.decode("utf-8", "replace")}
                fail = any(k.lower() == sc.FAIL_HEADER.lower() for k in self.headers)
                outer._record(self.path, body, fail)
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send_json(
                        404, {"error": {"message": f"unknown path {self.path}", "type": "invalid_request_error"}}
                    )
                    return
                resp = sc.scripted_response(body or {}, fail)
                if resp["kind"] == "error":
                    self._send_json(
                        500,
                        {"error": {"message": resp["message"], "type": "server_error", "param": None, "code": None}},
                    )
                    return
                if (body or {}).get("stream"):
                    include_usage = bool(((body or {}).get("stream_options") or {}).get("include_usage"))
                    self._send_stream(resp, include_usage)
                else:
                    self._send_json(200, completion_body(resp))

            def _send_json(self, status: int, obj: Any) -> None:
                data = json.dumps(obj).encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("x-request-id", "req_heldout0001")
                self.end_headers()
                self.wfile.write(data)

            def _send_stream(self, resp: dict[str, Any], include_usage: bool) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Connection", "close")
                self.send_header("x-request-id", "req_heldout0001")
                self.end_headers()
                for chunk in stream_chunks(resp, include_usage):
                    self.wfile.write(b"data: " + json.dumps(chunk).encode("utf-8") + b"\n\n")
                    self.wfile.flush()
                    time.sleep(0.005)
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()
                self.close_connection = True

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.base_url = f"http://{host}:{self.port}/v1"
        self._thread: threading.Thread | None = None

    def set_log(self, path: str | None) -> None:
        with self._lock:
            self._log_path = path

    def _record(self, path: str, body: Any, fail: bool) -> None:
        with self._lock:
            if self._log_path:
                with open(self._log_path, "a", encoding="utf-8") as f:
                    f.write(json.dumps({"path": path, "body": body, "fail": fail}, ensure_ascii=False) + "\n")

    def start(self) -> FakeOpenAI:
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _usage(resp: dict[str, Any]) -> dict[str, int]:
    p, c = resp["usage"]
    return {"completion_tokens": c, "prompt_tokens": p, "total_tokens": p + c}


def completion_body(resp: dict[str, Any]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": resp["content"]}
    if resp["tool_calls"]:
        message["tool_calls"] = [
            {"id": t["id"], "type": "function", "function": {"name": t["name"], "arguments": t["arguments"]}}
            for t in resp["tool_calls"]
        ]
    else:
        message["refusal"] = None
    return {
        "id": sc.RESPONSE_ID,
        "object": "chat.completion",
        "created": sc.CREATED,
        "model": sc.RESPONSE_MODEL,
        "system_fingerprint": sc.SYSTEM_FINGERPRINT,
        "service_tier": "default",
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": resp["finish_reason"]}],
        "usage": _usage(resp),
    }


def stream_chunks(resp: dict[str, Any], include_usage: bool) -> list[dict[str, Any]]:
    def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        return {
            "id": sc.RESPONSE_ID,
            "object": "chat.completion.chunk",
            "created": sc.CREATED,
            "model": sc.RESPONSE_MODEL,
            "system_fingerprint": sc.SYSTEM_FINGERPRINT,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }

    out = []
    if resp["tool_calls"]:
        out.append(chunk({"role": "assistant", "content": None}, None))
        for i, t in enumerate(resp["tool_calls"]):
            out.append(
                chunk(
                    {
                        "tool_calls": [
                            {
                                "index": i,
                                "id": t["id"],
                                "type": "function",
                                "function": {"name": t["name"], "arguments": ""},
                            }
                        ]
                    },
                    None,
                )
            )
            out.append(chunk({"tool_calls": [{"index": i, "function": {"arguments": t["arguments"]}}]}, None))
    else:
        out.append(chunk({"role": "assistant", "content": "", "refusal": None}, None))
        for piece in sc.stream_pieces(resp["content"]):
            out.append(chunk({"content": piece}, None))
    out.append(chunk({}, resp["finish_reason"]))
    if include_usage:
        out.append(
            {
                "id": sc.RESPONSE_ID,
                "object": "chat.completion.chunk",
                "created": sc.CREATED,
                "model": sc.RESPONSE_MODEL,
                "system_fingerprint": sc.SYSTEM_FINGERPRINT,
                "choices": [],
                "usage": _usage(resp),
            }
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--log", default=None, help="append received requests to this jsonl file")
    args = ap.parse_args()
    srv = FakeOpenAI(port=args.port)
    srv.set_log(args.log)
    print(srv.base_url, flush=True)
    srv.httpd.serve_forever()


if __name__ == "__main__":
    main()
