"""What the repository ships besides the package: generated docs, example configs, the example
script, lock files and links. Each must keep working as the code changes."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from otel_judge import semconv
from otel_judge.config import load_config
from otel_judge.model import EvaluationStatus
from otel_judge.testing import FakeJudge, SpanSink

from .conftest import pipeline_config, running

ROOT = Path(__file__).resolve().parent.parent
COLLECTOR_DIR = ROOT / "collector-config"
OTEL_JUDGE_CONFIGS = sorted(COLLECTOR_DIR.glob("otel-judge*.yaml"))
COLLECTOR_CONFIGS = sorted(p for p in COLLECTOR_DIR.glob("*.yaml") if p not in OTEL_JUDGE_CONFIGS)
FAKE_ENV = {"OPENAI_API_KEY": "sk-test", "OTEL_JUDGE_MODEL": "openai/gpt-4o-mini", "OTEL_JUDGE_STORE_PASSWORD": "pw"}


def load_module(path: Path) -> ModuleType:
    """Import a script that is not part of a package (docs/, examples/)."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------- docs


def test_configuration_reference_is_generated_from_the_models() -> None:
    """docs/configuration.md is exactly what docs/gen_config_reference.py produces now."""
    generator = load_module(ROOT / "docs" / "gen_config_reference.py")

    expected = generator.render()

    current = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert current == expected, "docs/configuration.md is stale: run python docs/gen_config_reference.py"


def test_configuration_reference_covers_every_key() -> None:
    """Every key of every section, plugin types included, has a row in the reference."""
    reference = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    expected = [
        "receivers.otlp.protocols.grpc.endpoint",
        "exporters.otlp.retry_on_failure.max_elapsed_time",
        "exporters.file.path",
        "sampling.policies[].probabilistic.sampling_percentage",
        "evaluators[].threshold",
        "judge.max_hold",
        "service.shutdown_grace",
    ]

    missing = [key for key in expected if f"| `{key}` |" not in reference]

    assert missing == []


def test_readme_explains_every_evaluation_status() -> None:
    """The README's status table has a row for each value otel_judge.evaluation.status can take."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")

    missing = [status.value for status in EvaluationStatus if f"| `{status.value}` |" not in readme]

    assert missing == []


LINKED_DOCS = ["README.md", "CONTRIBUTING.md", "collector-config/README.md", "examples/README.md"]


@pytest.mark.parametrize("doc", LINKED_DOCS)
def test_relative_links_point_at_files_that_exist(doc: str) -> None:
    """Every relative Markdown link in the hand-written docs leads to a file or folder of the repo."""
    path = ROOT / doc
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text(encoding="utf-8"))

    broken = [link for link in links if "://" not in link and not (path.parent / link).exists()]

    assert broken == []


# --------------------------------------------------------------------------- otel-judge configs


def test_collector_config_folder_has_both_kinds_of_config() -> None:
    """collector-config/ holds otel-judge configs (otel-judge*.yaml) and Collector configs (the rest);
    the Collector ones are checked in tests/test_collector_config.py."""
    assert [p.name for p in OTEL_JUDGE_CONFIGS] == [
        "otel-judge-otlphttp.yaml",
        "otel-judge-replica.yaml",
        "otel-judge-round-trip.yaml",
        "otel-judge.yaml",
    ]
    assert [p.name for p in COLLECTOR_CONFIGS] == [
        "collector-loadbalancing-k8s.yaml",
        "collector-loadbalancing.yaml",
        "collector-round-trip.yaml",
        "collector-to-otel-judge.yaml",
    ]


@pytest.mark.parametrize("path", OTEL_JUDGE_CONFIGS, ids=lambda p: p.name)
def test_otel_judge_configs_load_without_warnings(path: Path) -> None:
    """Each example otel-judge config is valid, and every ${env:...} it uses is one we document."""
    config, warnings = load_config(path, env=FAKE_ENV)

    assert warnings == []
    assert config.judging_enabled


def test_example_otel_judge_config_is_what_the_readme_says() -> None:
    """collector-config/otel-judge.yaml: 0.0.0.0:4317 in, 10% baseline, 'quality' at 50, judge from the env."""
    config, _ = load_config(COLLECTOR_DIR / "otel-judge.yaml", env={"OPENAI_API_KEY": "sk-test"})

    assert config.receivers.otlp.protocols.grpc is not None
    assert config.receivers.otlp.protocols.grpc.endpoint == "0.0.0.0:4317"
    assert config.exporters.otlp is not None and config.exporters.otlp.endpoint
    [policy] = config.sampling.policies
    assert (policy.name, policy.type) == ("baseline", "probabilistic")
    assert policy.probabilistic.sampling_percentage == 10  # type: ignore[union-attr]
    assert config.judge.model == "openai/gpt-4o-mini", "default when OTEL_JUDGE_MODEL is unset"
    assert config.judge.api_key is not None and config.judge.api_key.get_secret_value() == "sk-test"
    [evaluator] = config.evaluators
    assert (evaluator.name, evaluator.type, evaluator.threshold) == ("quality", "score", 50)


# --------------------------------------------------------------------------- otel-judge validate

INVALID_CONFIGS = {
    "percentage.yaml": (
        "exporters: {debug: {}}\n"
        "sampling:\n  policies:\n"
        "    - {name: p, type: probabilistic, probabilistic: {sampling_percentage: 150}}\n",
        "sampling.policies[0].probabilistic.sampling_percentage:",
    ),
    "unknown-key.yaml": ("exporters: {debug: {}}\njudge: {modle: openai/gpt-4o-mini}\n", "judge.modle: unknown key"),
    "duration.yaml": ("exporters: {debug: {}}\njudge: {timeout: 5 minutes}\n", "judge.timeout:"),
    "no-exporter.yaml": ("judge: {model: openai/gpt-4o-mini}\n", "exporters: required"),
}


def run_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """``python -m otel_judge ARGS`` with this interpreter (the venv's), without OTLP variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(FAKE_ENV)
    return subprocess.run(
        [sys.executable, "-m", "otel_judge", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("path", OTEL_JUDGE_CONFIGS, ids=lambda p: p.name)
def test_validate_accepts_the_example_configs(path: Path) -> None:
    """`otel-judge validate` exits 0 and says OK for each example config."""
    result = run_cli("validate", path)

    assert result.returncode == 0, result.stderr
    assert f"{path}: OK" in result.stdout


@pytest.mark.parametrize("name", sorted(INVALID_CONFIGS))
def test_validate_reports_the_yaml_path_and_exits_2(tmp_path: Path, name: str) -> None:
    """`otel-judge validate` exits 2 on an invalid config and names the problem by its YAML path."""
    text, expected = INVALID_CONFIGS[name]
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")

    result = run_cli("validate", path)

    assert result.returncode == 2
    assert f"{path}: invalid" in result.stderr
    assert expected in result.stderr


def test_validate_checks_every_file_given(tmp_path: Path) -> None:
    """With a good and a bad file, both are reported and the exit status is 2."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("exporters: {debug: {verbosity: loud}}\n", encoding="utf-8")
    good = OTEL_JUDGE_CONFIGS[0]

    result = run_cli("validate", good, bad)

    assert result.returncode == 2
    assert f"{good}: OK" in result.stdout
    assert "exporters.debug.verbosity:" in result.stderr


def test_version_flag_prints_the_version() -> None:
    """`otel-judge --version` prints the package version and exits 0."""
    result = run_cli("--version")

    assert result.returncode == 0
    assert re.fullmatch(r"otel-judge \S+\n", result.stdout)


# --------------------------------------------------------------------------- lock files


def pins(path: Path) -> dict[str, str]:
    text = path.read_text(encoding="utf-8")
    return dict(re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+) \\$", text, re.MULTILINE))


@pytest.mark.parametrize("name", ["requirements.lock", "requirements-dev.lock"])
def test_lock_file_pins_litellm_and_the_build_backend_with_hashes(name: str) -> None:
    """litellm stays at 1.103.7; setuptools and wheel are locked so the editable install needs no download."""
    path = ROOT / name
    locked = pins(path)
    text = path.read_text(encoding="utf-8")

    assert locked["litellm"] == "1.103.7"
    assert {"setuptools", "wheel", "googleapis-common-protos"} <= set(locked)
    assert text.count("==") == len(locked), "a requirement without hashes"
    assert all(f"{package}=={version} \\\n    --hash=sha256:" in text for package, version in locked.items())


@pytest.mark.parametrize("name", ["requirements.lock", "requirements-dev.lock"])
def test_lock_file_header_names_the_command_make_lock_runs(name: str) -> None:
    """The command recorded in each lock file is the one `make lock` runs."""
    header = (ROOT / name).read_text(encoding="utf-8").splitlines()[1]
    command = header.removeprefix("#").strip()

    assert command.startswith("uv pip compile ")
    assert command.removeprefix("uv ") in (ROOT / "Makefile").read_text(encoding="utf-8")


def test_dev_lock_file_agrees_with_the_runtime_one() -> None:
    """Every runtime pin is in the dev lock at the same version, so `make run` and `make test` share a venv."""
    runtime, dev = pins(ROOT / "requirements.lock"), pins(ROOT / "requirements-dev.lock")

    assert {name: (version, dev.get(name)) for name, version in runtime.items() if dev.get(name) != version} == {}


# --------------------------------------------------------------------------- the example script


@pytest.fixture(scope="module")
def send_conversation() -> ModuleType:
    return load_module(ROOT / "examples" / "send_conversation.py")


async def test_example_sends_an_app_span_and_a_genai_child(sink: SpanSink, send_conversation: ModuleType) -> None:
    """examples/send_conversation.py delivers `POST /support/chat` and its `chat gpt-4o-mini` child."""
    # The SDK's exporter blocks; the sink answers on this event loop, so the example runs in a thread.
    trace_id = await asyncio.to_thread(send_conversation.main, f"http://{sink.endpoint}")

    received = {r.span.name: r for r in await sink.wait_for_spans(2)}
    assert set(received) == {"POST /support/chat", "chat gpt-4o-mini"}
    root, llm = received["POST /support/chat"], received["chat gpt-4o-mini"]
    assert root.span.trace_id.hex() == llm.span.trace_id.hex() == trace_id
    assert llm.span.parent_span_id == root.span.span_id
    assert root.attributes["http.route"] == "/support/chat"
    attrs = llm.attributes
    assert attrs[semconv.GEN_AI_OPERATION_NAME] == "chat"
    assert attrs[semconv.GEN_AI_PROVIDER_NAME] == "openai"
    assert attrs[semconv.GEN_AI_USAGE_INPUT_TOKENS] > 0
    [output] = json.loads(attrs[semconv.GEN_AI_OUTPUT_MESSAGES])
    assert output["role"] == "assistant" and output["finish_reason"] == "stop"
    assert output["parts"][0]["type"] == "text"
    inputs = json.loads(attrs[semconv.GEN_AI_INPUT_MESSAGES])
    assert [m["role"] for m in inputs] == ["user", "assistant", "user"]
    assert root.resource.attributes == llm.resource.attributes


async def test_example_conversation_is_judged_by_otel_judge(sink: SpanSink, send_conversation: ModuleType) -> None:
    """Sent through otel-judge with a fake judge, the example's LLM span comes out scored."""
    async with FakeJudge(lambda request: '{"score": 82, "explanation": "helpful"}') as judge:
        # Generous deadlines: the first judge call also waits for litellm's import (seconds, cold).
        config = pipeline_config(sink, judge, judge={"timeout": "60s", "max_hold": "60s"})
        async with running(config) as pipeline:
            await asyncio.to_thread(send_conversation.main, f"http://127.0.0.1:{pipeline.grpc_port}")
            received = {r.span.name: r for r in await sink.wait_for_spans(2, timeout=60)}

    llm = received["chat gpt-4o-mini"].attributes
    assert llm[semconv.OTEL_JUDGE_EVALUATION_STATUS] == "evaluated", llm.get(semconv.OTEL_JUDGE_EVALUATION_ERROR)
    assert llm[semconv.score_value_key("quality")] == 82
    assert llm[semconv.score_label_key("quality")] == "pass"
    assert semconv.OTEL_JUDGE_EVALUATION_STATUS not in received["POST /support/chat"].attributes
    [request] = judge.requests
    assert "replacement pole" in request.prompt and "3-5 working days" in (request.response_text or "")
