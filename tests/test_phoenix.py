"""A real trace backend: Arize Phoenix receives what otel-judge exports and shows the scores.

Phoenix (from PyPI, pinned in tests/phoenix/requirements-phoenix.lock) runs from its own venv,
``.venv-phoenix``, built by ``make phoenix`` (``make test`` builds it; so does this module, once,
when it is missing). An app process uses the real ``openai`` client with a real instrumentation
library against a fake LLM, exporting OTLP/gRPC to otel-judge running in-process; otel-judge judges
the call with a :class:`FakeJudge` through real litellm and exports over OTLP/gRPC or OTLP/HTTP to
Phoenix; the test reads the spans back through Phoenix's REST API
(``GET /v1/projects/{project}/spans``) and checks the evaluation attributes arrived intact.

Nothing leaves 127.0.0.1: Phoenix listens on free loopback ports with its telemetry, its agent
assistant and external resources turned off, and keeps its SQLite database in a temporary directory.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import selectors
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from otel_judge import semconv
from otel_judge.config import validate_config
from otel_judge.testing import FakeJudge

from .conftest import running

ROOT = Path(__file__).resolve().parents[1]
PHOENIX_VENV = ROOT / ".venv-phoenix"
PHOENIX_START_TIMEOUT = 300.0  # 15-20 s on an idle 2-core machine (imports dominate); far more under load
READY_MARKER = "Application startup complete"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ensure_phoenix_venv() -> Path:
    """``make phoenix``: a no-op once the venv's stamp is newer than the lock file."""
    result = subprocess.run(
        ["make", "--no-print-directory", "phoenix"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"make phoenix failed ({result.returncode}):\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
    return PHOENIX_VENV / "bin" / "phoenix"


@dataclass
class Phoenix:
    """A running ``phoenix serve``: its REST base URL and OTLP endpoints."""

    http_port: int
    grpc_port: int
    process: subprocess.Popen[str]
    output: list[str]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def get_json(self, path: str, **params: str | list[str]) -> Any:
        query = urllib.parse.urlencode(params, doseq=True)
        with urllib.request.urlopen(f"{self.base_url}{path}?{query}", timeout=10) as response:
            return json.loads(response.read())

    def spans(self, project: str) -> list[dict[str, Any]]:
        """Every span Phoenix stored for ``project`` (at most 1000: these tests send a handful)."""
        try:
            body = self.get_json(f"/v1/projects/{urllib.parse.quote(project)}/spans", limit="1000")
        except urllib.error.HTTPError as exc:
            if exc.code == 404:  # the project appears with its first span
                return []
            raise
        return list(body["data"])


def _read_until_ready(process: subprocess.Popen[str], output: list[str], timeout: float) -> None:
    """Read Phoenix's log until it says it serves; fail if it exits or takes longer than ``timeout``."""
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"Phoenix did not start within {timeout:.0f}s:\n" + "".join(output[-40:]))
            if not selector.select(remaining):
                continue
            line = process.stdout.readline()
            if not line:
                pytest.fail(f"Phoenix exited with {process.wait()}:\n" + "".join(output[-40:]))
            output.append(line)
            if READY_MARKER in line:
                return


@pytest.fixture(scope="module")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Phoenix]:
    """One Phoenix server for the module (it takes 15-20 s to start)."""
    executable = _ensure_phoenix_venv()
    http_port, grpc_port = _free_port(), _free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path_factory.mktemp("phoenix-home")),
        "PHOENIX_WORKING_DIR": str(tmp_path_factory.mktemp("phoenix")),
        "PHOENIX_HOST": "127.0.0.1",
        "PHOENIX_PORT": str(http_port),
        "PHOENIX_GRPC_PORT": str(grpc_port),
        # Nothing leaves the machine: no usage telemetry, no assistant agent, no CDN assets.
        "PHOENIX_TELEMETRY_ENABLED": "false",
        "PHOENIX_DISABLE_AGENT_ASSISTANT": "true",
        "PHOENIX_ALLOW_EXTERNAL_RESOURCES": "false",
        "PHOENIX_LOG_MIGRATIONS": "false",
        "DO_NOT_TRACK": "1",
        "PYTHONUNBUFFERED": "1",
    }
    process = subprocess.Popen(
        [str(executable), "serve"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    try:
        _read_until_ready(process, output, PHOENIX_START_TIMEOUT)
        server = Phoenix(http_port, grpc_port, process, output)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


async def _until(condition: Any, timeout: float, what: str) -> Any:
    """Poll ``condition()`` (Phoenix inserts spans in the background and offers no event) until it
    returns something truthy; fail after ``timeout`` seconds saying ``what`` was awaited."""
    deadline = time.monotonic() + timeout
    while True:
        value = await asyncio.to_thread(condition)
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(0.25)


def _exporters(phoenix: Phoenix, transport: str) -> dict[str, Any]:
    """otel-judge's exporter section for ``transport``, pointed at Phoenix."""
    retry = {"initial_interval": "100ms", "max_interval": "1s"}
    if transport == "otlp":
        return {
            "otlp": {"endpoint": f"127.0.0.1:{phoenix.grpc_port}", "tls": {"insecure": True}, "retry_on_failure": retry}
        }
    return {"otlphttp": {"endpoint": phoenix.base_url, "retry_on_failure": retry}}


EXPLANATION = "States the refund policy the customer asked about."


def _score_for(request: Any) -> str:
    """The fake judge's verdict: 88 for the answer about the refund, 1 otherwise (never expected)."""
    if "refund" in (request.response_text or ""):
        return json.dumps({"score": 88, "explanation": EXPLANATION})
    return "1"


# (exporter of otel-judge, instrumentation library of the app): each library's own span shape
# through each OTLP transport Phoenix accepts.
CASES = [
    pytest.param("otlp", "openinference", id="otlp-grpc-openinference"),
    pytest.param("otlphttp", "otelv2", id="otlphttp-openai-v2"),
]


@pytest.mark.slow  # Phoenix takes 15-20 s to start, once for the module
@pytest.mark.parametrize(("transport", "lib"), CASES)
async def test_phoenix_stores_the_scores(phoenix: Phoenix, transport: str, lib: str) -> None:
    """An instrumented app's model call, judged by otel-judge and exported to Phoenix, reads back from
    Phoenix's REST API with its score, label, explanation, judge model, sampling policy and evaluation
    status; the app's other span arrives too, without evaluation attributes."""
    project = f"otel-judge-{transport}-{lib}"
    async with (
        FakeJudge(lambda r: "You get a full refund within 30 days.", model="gpt-4o-mini") as llm,
        FakeJudge(_score_for) as judge,
    ):
        config = validate_config(
            {
                "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "127.0.0.1:0"}}}},
                "exporters": _exporters(phoenix, transport),
                "sampling": {
                    "policies": [{"name": "all", "type": "always_sample"}],
                    "decision_wait": "0s",
                    "decision_wait_after_root_received": "0s",
                },
                "judge": {"model": judge.model, "api_base": judge.api_base, "api_key": "sk-test", "timeout": "10s"},
                "evaluators": [{"name": "quality", "type": "score", "threshold": 50}],
            }
        )
        async with running(config) as pipeline:
            # prepare / act: the app runs in its own process (instrumentors patch openai globally).
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tests.apps.instrumented_app",
                "--lib",
                lib,
                "--otlp",
                f"127.0.0.1:{pipeline.grpc_port}",
                "--llm-base-url",
                llm.api_base,
                "--answer-tag",
                "refund",
                cwd=ROOT,
                # Phoenix files spans under the project named by this resource attribute.
                env={**os.environ, "OTEL_RESOURCE_ATTRIBUTES": f"openinference.project.name={project}"},
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            _, stderr = await asyncio.wait_for(proc.communicate(), 120)
            assert proc.returncode == 0, stderr.decode()[-2000:]

            def judged_spans() -> list[dict[str, Any]]:
                spans = phoenix.spans(project)
                return spans if any(semconv.OTEL_JUDGE_EVALUATION_STATUS in _flat(s) for s in spans) else []

            spans = await _until(judged_spans, 120, f"a judged span in Phoenix project {project}")

    # verify: read back from the backend, not from otel-judge.
    by_status = {_flat(s).get(semconv.OTEL_JUDGE_EVALUATION_STATUS): _flat(s) for s in spans}
    assert set(by_status) >= {"evaluated", None}, [s["name"] for s in spans]
    judged = by_status["evaluated"]
    assert judged[semconv.score_value_key("quality")] == 88
    assert judged[semconv.score_label_key("quality")] == "pass"
    assert judged[semconv.explanation_key("quality")] == EXPLANATION
    assert judged[semconv.OTEL_JUDGE_JUDGE_MODEL] == judge.model
    assert judged[semconv.OTEL_JUDGE_SAMPLING_POLICY] == "all"
    root = by_status[None]
    assert not any(k.startswith((semconv.EVALUATION_PREFIX, "otel_judge.")) for k in root)
    assert len(judge.requests) == 1

    # Phoenix indexes the attribute: its own attribute filter finds the judged span.
    found = phoenix.get_json(
        f"/v1/projects/{project}/spans", attribute=f"{semconv.OTEL_JUDGE_EVALUATION_STATUS}:evaluated"
    )
    assert [s["context"]["span_id"] for s in found["data"]] == [
        s["context"]["span_id"] for s in spans if _flat(s).get(semconv.OTEL_JUDGE_EVALUATION_STATUS) == "evaluated"
    ]


def _flat(span: dict[str, Any]) -> dict[str, Any]:
    """Phoenix returns attributes nested by dotted path; flatten them back to OTel keys."""
    out: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else key, inner)
        else:
            out[prefix] = value

    walk("", span.get("attributes") or {})
    return out


def test_phoenix_lock_is_hashed_and_made_by_make_lock() -> None:
    """tests/phoenix/requirements-phoenix.lock pins arize-phoenix and every dependency with hashes, and
    its header names the command `make lock` runs."""
    lock = ROOT / "tests" / "phoenix" / "requirements-phoenix.lock"
    text = lock.read_text(encoding="utf-8")
    pins = dict(re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+) \\$", text, re.MULTILINE))
    command = text.splitlines()[1].removeprefix("#").strip()

    assert pins["arize-phoenix"] == "20.26.1"
    assert text.count("==") == len(pins), "a requirement without hashes"
    assert all(f"{name}=={version} \\\n    --hash=sha256:" in text for name, version in pins.items())
    assert command.removeprefix("uv ") in (ROOT / "Makefile").read_text(encoding="utf-8")
