"""The ``otel-judge`` command as users run it: a real process, real signals, the embedded default."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from otel_judge import __version__, semconv
from otel_judge.testing import FakeJudge, JudgeAnswer, JudgeRequest, SpanSink

from .otlp_builders import RawClient, genai_span, request, span


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "OPENAI_"))}
    env.update(extra)
    return env


async def _start(args: list[str], env: dict[str, str], cwd: Path) -> tuple[asyncio.subprocess.Process, str]:
    """Start ``otel-judge`` and wait (event-based) for its one-line start-up message."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "otel_judge",
        *args,
        env=env,
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    while True:
        line = (await asyncio.wait_for(proc.stderr.readline(), 60)).decode()
        if not line:
            raise AssertionError(f"otel-judge exited before starting: rc={await proc.wait()}")
        if line.startswith("otel-judge: "):
            return proc, line


async def _stop(proc: asyncio.subprocess.Process) -> tuple[int, str, str]:
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, stdout.decode(), stderr.decode()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_serve_runs_a_config_and_sigterm_flushes_held_spans(sink: SpanSink, tmp_path: Path) -> None:
    """SIGTERM while the judge hangs: the held span is exported with status shutdown, exit code 0."""
    hang = asyncio.Event()

    async def script(req: JudgeRequest) -> JudgeAnswer:
        hang.set()
        return JudgeAnswer(hang=True)

    port = _free_port()
    async with FakeJudge(script) as judge:
        config = tmp_path / "otel-judge.yaml"
        config.write_text(f"""
receivers: {{otlp: {{protocols: {{grpc: {{endpoint: "127.0.0.1:{port}"}}}}}}}}
exporters:
  otlp: {{endpoint: "{sink.endpoint}", tls: {{insecure: true}}}}
sampling:
  policies: [{{name: all, type: always_sample}}]
judge:
  model: {judge.model}
  api_base: {judge.api_base}
  api_key: ${{env:JUDGE_KEY}}
service: {{shutdown_grace: 2s}}
""")
        proc, banner = await _start(["serve", "--config", str(config)], _env(JUDGE_KEY="sk-test"), tmp_path)
        client = RawClient(port)
        await client.traces(request(genai_span("A"), span("db")))
        await sink.wait_for_spans(1)
        await asyncio.wait_for(hang.wait(), 30)
        rc, _, stderr = await _stop(proc)
        await client.close()

    assert "judging ON with openai/fake-judge" in banner
    assert rc == 0, stderr
    statuses = {r.span.name: r.attributes.get(semconv.OTEL_JUDGE_EVALUATION_STATUS) for r in sink.spans()}
    assert statuses == {"db": None, "chat gpt-4o-mini": "shutdown"}
    assert "sk-test" not in stderr


def _port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.mark.skipif(not (_port_is_free(4317) and _port_is_free(4318)), reason="4317/4318 taken on this machine")
async def test_embedded_default_judges_and_writes_a_readable_local_output(tmp_path: Path) -> None:
    """No config: receive on 4317, judge with OTEL_JUDGE_MODEL, write OTLP/JSON lines and a console line."""
    async with FakeJudge(lambda r: '{"score": 77, "explanation": "solid"}') as judge:
        env = _env(OTEL_JUDGE_MODEL=judge.model, OTEL_JUDGE_API_BASE=judge.api_base, OPENAI_API_KEY="sk-x")
        proc, banner = await _start(["serve"], env, tmp_path)
        client = RawClient(4317)
        await client.traces(request(genai_span("ANSWER")))
        await client.close()
        assert proc.stdout is not None
        console = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        rc, _, stderr = await _stop(proc)

    assert rc == 0, stderr
    assert "judging ON" in banner and "otel-judge-output.jsonl" in banner and "127.0.0.1:4318" in banner
    assert "evaluated" in console and "quality=77 (pass)" in console
    lines = (tmp_path / "otel-judge-output.jsonl").read_text().splitlines()
    spans = [
        s for line in lines for rs in json.loads(line)["resourceSpans"] for ss in rs["scopeSpans"] for s in ss["spans"]
    ]
    attrs = {a["key"]: a["value"] for a in spans[0]["attributes"]}
    assert attrs["gen_ai.evaluation.quality.score.value"] == {"doubleValue": 77.0}
    assert len(spans[0]["traceId"]) == 32, "OTLP/JSON ids are hex"


async def test_embedded_default_without_a_model_says_how_to_turn_judging_on(tmp_path: Path) -> None:
    if not (_port_is_free(4317) and _port_is_free(4318)):
        pytest.skip("127.0.0.1:4317 or 4318 is taken on this machine")
    proc, banner = await _start(["serve"], _env(), tmp_path)
    rc, _, _ = await _stop(proc)

    assert rc == 0
    assert "judging OFF" in banner and "OTEL_JUDGE_MODEL" in banner


def test_version() -> None:
    out = subprocess.run([sys.executable, "-m", "otel_judge", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"otel-judge {__version__}"


def test_invalid_config_exits_2_listing_problems(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("exporters: {debug: {}}\njudge: {timeout: soon, max_concurrency: 0}\n")

    out = subprocess.run(
        [sys.executable, "-m", "otel_judge", "serve", "--config", str(bad)],
        check=False,
        capture_output=True,
        text=True,
        env=_env(),
    )

    assert out.returncode == 2
    assert "judge.timeout:" in out.stderr and "judge.max_concurrency:" in out.stderr


def test_importing_the_package_and_starting_does_not_import_litellm() -> None:
    """litellm (seconds to import) stays off the start-up path until a judge starts."""
    code = (
        "import sys, asyncio\n"
        "from otel_judge.config import validate_config\n"
        "from otel_judge.pipeline import Pipeline\n"
        "cfg = validate_config({'exporters': {'debug': {}}, "
        "'receivers': {'otlp': {'protocols': {'grpc': {'endpoint': '127.0.0.1:0'}}}}})\n"
        "async def main():\n"
        "    p = Pipeline(cfg); await p.start(); await p.shutdown(1)\n"
        "asyncio.run(main())\n"
        "assert 'litellm' not in sys.modules, 'litellm was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=_env())
