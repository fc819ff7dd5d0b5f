"""Configuration: every problem reported under its YAML path, ${env:} substitution, defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from otel_judge.config import (
    ConfigError,
    default_config,
    load_config,
    load_config_text,
    parse_duration,
    parse_headers_env,
)

INVALID = sorted((Path(__file__).parent / "configs" / "invalid").glob("*.yaml"))


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_config_reports_every_problem_under_its_yaml_path(path: Path) -> None:
    """Each invalid example lists exactly the problems named in its '# expect:' lines."""
    expected = [
        line.removeprefix("# expect: ") for line in path.read_text().splitlines() if line.startswith("# expect:")
    ]
    assert expected, f"{path.name} has no '# expect:' line"

    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})

    assert sorted(caught.value.problems) == sorted(expected)


def test_minimal_config_gets_documented_defaults() -> None:
    """Only an exporter is required; the rest has safe defaults (10% baseline, judging off)."""
    config, warnings = load_config_text("exporters: {debug: {}}", env={})

    assert warnings == []
    assert config.receivers.otlp.protocols.grpc is not None
    assert config.receivers.otlp.protocols.grpc.endpoint == "127.0.0.1:4317"
    assert [(p.name, p.type) for p in config.sampling.policies] == [("baseline", "probabilistic")]
    assert config.sampling.policies[0].probabilistic.sampling_percentage == 10  # type: ignore[union-attr]
    assert config.judge.model is None and not config.judging_enabled
    assert config.judge.timeout == 30 and config.judge.max_hold == 60
    assert [e.name for e in config.evaluators] == ["quality"]


def test_env_substitution_forms() -> None:
    """${env:NAME}, ${NAME}, ${env:NAME:-default}, $$ escapes, numbers re-read as YAML."""
    text = """
exporters:
  otlp:
    endpoint: "${env:BACKEND}"
    headers:
      authorization: "Bearer ${TOKEN}"
      x-literal: "cost $$5"
judge:
  model: ${env:JUDGE_MODEL:-openai/gpt-4o-mini}
  max_concurrency: ${env:CONCURRENCY}
  api_key: ${env:OPENAI_API_KEY}
"""
    env = {"BACKEND": "tempo:4317", "TOKEN": "s3cret", "CONCURRENCY": "12", "OPENAI_API_KEY": "sk-1"}

    config, warnings = load_config_text(text, env)

    assert warnings == []
    assert config.exporters.otlp is not None
    assert config.exporters.otlp.endpoint == "tempo:4317"
    assert config.exporters.otlp.headers == {"authorization": "Bearer s3cret", "x-literal": "cost $5"}
    assert config.judge.model == "openai/gpt-4o-mini"
    assert config.judge.max_concurrency == 12
    assert config.judge.api_key is not None and config.judge.api_key.get_secret_value() == "sk-1"
    assert "sk-1" not in repr(config), "the API key must not show in reprs (and so in logs)"


def test_unset_env_variable_is_reported_with_its_path() -> None:
    """An unset variable becomes empty (as in the Collector) and is named in a warning."""
    _, warnings = load_config_text("exporters: {debug: {}}\njudge:\n  model: ${env:NOPE}\n", env={})

    assert warnings == ["judge.model: environment variable NOPE is not set"]


def test_standard_otlp_environment_variables_are_exporter_defaults() -> None:
    """OTEL_EXPORTER_OTLP_ENDPOINT / _HEADERS fill what the file leaves unset; the file wins."""
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317",
        "OTEL_EXPORTER_OTLP_HEADERS": "api-key=abc,x-b=1%202",
    }

    config, _ = load_config_text("exporters:\n  otlp:\n    headers: {x-b: mine}\n", env)

    otlp = config.exporters.otlp
    assert otlp is not None
    assert otlp.endpoint == "http://collector:4317"
    assert otlp.tls.insecure is True  # http:// means plaintext
    assert otlp.headers == {"api-key": "abc", "x-b": "mine"}


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("30s", 30),
        ("5m", 300),
        ("1h30m", 5400),
        ("1.5s", 1.5),
        ("250us", 0.00025),
        (2, 2.0),
        ("0", 0),
        ("7d", 7 * 86400),
        ("1d12h", 1.5 * 86400),
    ],
    ids=["ms", "s", "m", "h-m", "fraction", "us", "number", "zero", "days", "days-hours"],
)
def test_durations_are_written_like_the_collector(text: object, seconds: float) -> None:
    """Go-style durations, as in Collector configs, plus ``d`` for the day-long windows of retention."""
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text", ["5 s", "s", "", "-1s", "1w", True], ids=["space", "unit-only", "empty", "negative", "weeks", "bool"]
)
def test_bad_durations_are_rejected(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_headers_env_is_url_decoded() -> None:
    assert parse_headers_env("Authorization=Basic%20abc, x-k = v ,broken") == {"authorization": "Basic abc", "x-k": "v"}


@pytest.mark.parametrize(
    ("env", "judging", "exporters"),
    [
        ({}, False, {"file", "debug"}),
        ({"OTEL_JUDGE_MODEL": "openai/gpt-4o-mini"}, True, {"file", "debug"}),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:14317"}, False, {"otlp"}),
    ],
    ids=["nothing-set", "judge-model-set", "otlp-endpoint-set"],
)
def test_embedded_default(env: dict[str, str], judging: bool, exporters: set[str]) -> None:
    """No config file: judge when OTEL_JUDGE_MODEL is set; export to OTLP env or to a local file."""
    config = default_config(env)

    assert config.judging_enabled is judging
    configured = {name for name in ("otlp", "file", "debug") if getattr(config.exporters, name) is not None}
    assert configured == exporters
    assert config.sampling.policies[0].probabilistic.sampling_percentage == 100  # type: ignore[union-attr]
