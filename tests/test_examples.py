"""The examples in examples/: each runs with one command against the fakes and its spans are judged.

The app examples run as ``examples/run.py`` runs them (in-process here, to share one import of
otel-judge and litellm): a real instrumented app process, otel-judge from examples/otel-judge.yaml,
a fake LLM and a fake judge. The router runs against otel-judge's real store and quality API.
"""

from __future__ import annotations

import copy
import io
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from otel_judge import semconv
from otel_judge.config import load_config

from .test_docs_and_configs import load_module

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="module")
def examples_on_path() -> Iterator[None]:
    """The examples import each other by module name, as when run as scripts from examples/."""
    sys.path.insert(0, str(EXAMPLES))
    try:
        yield
    finally:
        sys.path.remove(str(EXAMPLES))


@pytest.fixture(scope="module")
def run(examples_on_path: None) -> ModuleType:
    return load_module(EXAMPLES / "run.py")


@pytest.fixture(scope="module")
def router(examples_on_path: None) -> ModuleType:
    return load_module(EXAMPLES / "quality_router.py")


# (example, name of the model-call span its library writes, whether the app has its own root span)
APP_CASES = [
    pytest.param("openai_v2", "chat gpt-4o-mini", True, id="openai_v2"),
    pytest.param("openllmetry", "openai.chat", True, id="openllmetry"),
    # openinference: test_run_py_is_one_command runs it, through the command line.
    pytest.param("litellm_gateway", "litellm_request", False, id="litellm_gateway"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("example", "span_name", "has_root"), APP_CASES)
async def test_app_example_is_judged(run: ModuleType, example: str, span_name: str, has_root: bool) -> None:
    """`run.py EXAMPLE`: the instrumented app's model call reaches the backend judged (the fake judge's
    86 for a helpful answer, label pass, its explanation) and the app's other spans arrive unjudged."""
    out = io.StringIO()

    spans = await run.run_app(example, out=out)

    considered = [s for s in spans if semconv.OTEL_JUDGE_EVALUATION_STATUS in s.attributes]
    assert [(s.span.name, s.attributes[semconv.OTEL_JUDGE_EVALUATION_STATUS]) for s in considered] == [
        (span_name, "evaluated")
    ]
    attrs = considered[0].attributes
    assert attrs[semconv.score_value_key("helpfulness")] == 86
    assert attrs[semconv.score_label_key("helpfulness")] == "pass"
    assert attrs[semconv.explanation_key("helpfulness")] == "Answers the question and says what happens next."
    assert ("POST /support/chat" in {s.span.name for s in spans}) is has_root
    assert "otel_judge.evaluation.status=evaluated; helpfulness 86 (pass)" in out.getvalue()


@pytest.mark.slow
def test_run_py_is_one_command() -> None:
    """`python examples/run.py openinference` from a shell: exit 0, the app's answer and its judged
    span printed (OpenInference's model-call span is named ChatCompletion)."""
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "run.py"), "openinference"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    assert "app answered: Sorry about the cracked pole!" in result.stdout
    assert "'ChatCompletion': otel_judge.evaluation.status=evaluated; helpfulness 86 (pass)" in result.stdout


def test_run_py_lists_every_example() -> None:
    """`run.py --list` names every example, and every app example's script exists."""
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "run.py"), "--list"], capture_output=True, text=True, timeout=60, check=True
    )

    names = [line.split()[0] for line in result.stdout.splitlines()]
    assert names == ["openai_v2", "openllmetry", "openinference", "litellm_gateway", "router"]
    for line in result.stdout.splitlines()[:-1]:
        assert line.split()[1:], line


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("otel-judge*.yaml")), ids=lambda p: p.name)
def test_example_otel_judge_configs_are_valid(path: Path) -> None:
    """The examples' otel-judge configs load without problems or warnings, with and without the
    demo's environment."""
    for env in ({}, {"OTEL_JUDGE_GRPC_ENDPOINT": "127.0.0.1:0", "OTEL_JUDGE_QUALITY_API": "127.0.0.1:0"}):
        config, warnings = load_config(path, env)

        assert warnings == []
        assert [e.name for e in config.evaluators] == ["helpfulness"]


# --------------------------------------------------------------------------- LiteLLM gateway


@pytest.mark.slow  # imports litellm: 5-10 s when nothing imported it before
def test_litellm_proxy_config_is_what_the_proxy_accepts() -> None:
    """examples/litellm_proxy/config.yaml passes LiteLLM's own proxy config model (ConfigYAML), turns
    the otel callback on with content, exports OTLP/gRPC to otel-judge's default port, and its
    model_list builds a litellm.Router (what the proxy routes with)."""
    import litellm
    from litellm.proxy._types import ConfigYAML

    data = yaml.safe_load((EXAMPLES / "litellm_proxy" / "config.yaml").read_text(encoding="utf-8"))

    ConfigYAML.model_validate(copy.deepcopy(data))  # it fills model_info in place
    assert "otel" in data["litellm_settings"]["callbacks"]
    assert data["litellm_settings"]["turn_off_message_logging"] is False
    env = data["environment_variables"]
    assert (env["OTEL_EXPORTER"], env["OTEL_ENDPOINT"]) == ("otlp_grpc", "http://127.0.0.1:4317")
    assert env["USE_OTEL_LITELLM_REQUEST_SPAN"] == "true"
    router = litellm.Router(model_list=data["model_list"])
    assert sorted(router.get_model_names()) == ["gpt-4o", "gpt-4o-mini"]


# --------------------------------------------------------------------------- the router

# (model in use, the cheap model's (n, mean, ci_low, regression)) -> (next model, words in the reason)
DECIDE_CASES = [
    pytest.param("gpt-4o", (5, 90.0, 88.0, None), "gpt-4o", "min_n", id="too-few-to-promote"),
    pytest.param("gpt-4o", (40, 85.0, 80.0, None), "gpt-4o-mini", "promote", id="promote-on-ci-low"),
    pytest.param("gpt-4o", (40, 80.0, 70.0, None), "gpt-4o", "stay", id="mean-good-but-ci-low-not"),
    pytest.param("gpt-4o-mini", (40, 75.0, 70.0, None), "gpt-4o-mini", "holds", id="hysteresis-holds"),
    pytest.param("gpt-4o-mini", (40, 66.0, 60.0, None), "gpt-4o", "demote", id="demote-on-ci-low"),
    pytest.param("gpt-4o-mini", (5, 20.0, None, None), "gpt-4o-mini", "min_n", id="too-few-to-demote"),
    pytest.param("gpt-4o-mini", (40, 85.0, 80.0, {"id": "a1"}), "gpt-4o", "regression", id="regression-demotes"),
    pytest.param("gpt-4o", (40, 85.0, 80.0, {"id": "a1"}), "gpt-4o", "regression", id="regression-blocks-promotion"),
]


@pytest.mark.parametrize(("using", "quality", "expected", "why"), DECIDE_CASES)
def test_router_decision(
    router: ModuleType,
    using: str,
    quality: tuple[int, float, float | None, dict[str, str] | None],
    expected: str,
    why: str,
) -> None:
    """Promote on the CI lower bound reaching promote_at (75), demote below demote_below (65), keep
    the model in between (hysteresis) and below min_n (30); an open regression alert demotes."""
    n, mean, ci_low, regression = quality
    policy = router.RoutingPolicy()

    model, reason = router.decide(policy, using, router.Quality(n, mean, ci_low, None, None, regression))

    assert model == expected
    assert why in reason


def test_router_fails_safe_without_the_quality_api(router: ModuleType) -> None:
    """With the quality API unreachable the router goes back to the strong model."""
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    routed = router.QualityRouter(
        router.RoutingPolicy(), router.QualityClient(f"http://127.0.0.1:{port}", timeout=2), using="gpt-4o-mini"
    )

    reason = routed.refresh()

    assert routed.using == "gpt-4o"
    assert "unavailable" in reason
    assert routed.transitions == [{"from": "gpt-4o-mini", "to": "gpt-4o", "reason": reason}]


def test_router_policy_requires_a_hysteresis_gap(router: ModuleType) -> None:
    """demote_below at or above promote_at would flap: refused."""
    with pytest.raises(ValueError, match="hysteresis"):
        router.RoutingPolicy(promote_at=70, demote_below=70)


@pytest.mark.slow
async def test_router_example_promotes_then_demotes(run: ModuleType, router: ModuleType, tmp_path: Path) -> None:
    """`run.py router`: against otel-judge's real store and quality API, the router promotes the
    cheap model once its canary answers are judged good with confidence, and demotes it after the
    fake provider's cheap model starts giving useless answers."""
    out = io.StringIO()

    result = await router.demo(tmp_path, out=out)

    assert [(t["from"], t["to"]) for t in result["transitions"]] == [
        ("gpt-4o", "gpt-4o-mini"),
        ("gpt-4o-mini", "gpt-4o"),
    ]
    assert "promote gpt-4o-mini" in result["transitions"][0]["reason"]
    assert "demote to gpt-4o" in result["transitions"][1]["reason"]
    assert result["final"] == "gpt-4o"
