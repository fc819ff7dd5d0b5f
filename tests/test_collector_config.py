"""The OpenTelemetry Collector configs we ship, checked without a Collector binary, and every
otel-judge config anywhere in the repository checked with ``otel-judge validate``.

No Collector runs here, so the Collector files are held against a table of the keys each component
documents (:data:`DOCUMENTED_KEYS`, copied from the components' READMEs and config structs, sources
named beside each entry), and against the wiring rules the Collector enforces at start-up (defined
components, pipelines that name them, ``memory_limiter`` first). The cross-file tests check that the
Collector and otel-judge halves of each layout point at each other's ports and cannot loop.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from otel_judge.config import Config

ROOT = Path(__file__).resolve().parent.parent
COLLECTOR_DIR = ROOT / "collector-config"

# --------------------------------------------------------------------------- documented keys
#
# A schema is a dict of key -> sub-schema; ANY accepts whatever is below (a value, or a block whose
# keys we do not use and so do not list). Sources, as of otelcol / otelcol-contrib v0.154 (June 2026):
#   otlp receiver .......... opentelemetry-collector receiver/otlpreceiver/config.md, config/configgrpc,
#                            config/confighttp READMEs
#   otlp_grpc exporter ..... opentelemetry-collector exporter/otlpexporter/README.md ("otlp" is its
#                            deprecated alias since v0.144, PR #14403)
#   otlp_http exporter ..... opentelemetry-collector exporter/otlphttpexporter/README.md ("otlphttp" is
#                            its deprecated alias since v0.144, PR #14397)
#   sending_queue, retry_on_failure, timeout ... exporter/exporterhelper/README.md
#   tls (client) ........... config/configtls/README.md
#   memory_limiter ......... processor/memorylimiterprocessor/README.md (config.go mapstructure tags)
#   batch .................. processor/batchprocessor/README.md
#   debug .................. exporter/debugexporter/README.md
#   load_balancing ......... opentelemetry-collector-contrib exporter/loadbalancingexporter/README.md and
#                            config.go ("loadbalancing" is its deprecated alias since v0.153, PR #48533)


class _Any:
    def __repr__(self) -> str:
        return "ANY"


ANY: Any = _Any()

TLS_CLIENT = {
    k: ANY
    for k in (
        "insecure",
        "insecure_skip_verify",
        "ca_file",
        "ca_pem",
        "cert_file",
        "cert_pem",
        "key_file",
        "key_pem",
        "server_name_override",
        "min_version",
        "max_version",
        "reload_interval",
        "include_system_ca_certs_pool",
        "cipher_suites",
        "curve_preferences",
    )
}
RETRY = {
    k: ANY
    for k in ("enabled", "initial_interval", "randomization_factor", "multiplier", "max_interval", "max_elapsed_time")
}
SENDING_QUEUE = {
    k: ANY
    for k in (
        "enabled",
        "num_consumers",
        "queue_size",
        "storage",
        "sizer",
        "blocking",
        "block_on_overflow",
        "wait_for_result",
        "batch",
    )
}
OTLP_GRPC_EXPORTER = {
    "endpoint": ANY,
    "tls": TLS_CLIENT,
    "headers": ANY,
    "compression": ANY,
    "timeout": ANY,
    "sending_queue": SENDING_QUEUE,
    "retry_on_failure": RETRY,
    "balancer_name": ANY,
    "keepalive": ANY,
    "auth": ANY,
    "read_buffer_size": ANY,
    "write_buffer_size": ANY,
    "wait_for_ready": ANY,
    "authority": ANY,
}
OTLP_HTTP_EXPORTER = {
    **{k: ANY for k in ("endpoint", "traces_endpoint", "metrics_endpoint", "logs_endpoint", "profiles_endpoint")},
    "tls": TLS_CLIENT,
    "headers": ANY,
    "compression": ANY,
    "timeout": ANY,
    "sending_queue": SENDING_QUEUE,
    "retry_on_failure": RETRY,
    "encoding": ANY,
    "read_buffer_size": ANY,
    "write_buffer_size": ANY,
    "max_idle_conns": ANY,
    "max_idle_conns_per_host": ANY,
    "max_conns_per_host": ANY,
    "idle_conn_timeout": ANY,
    "disable_keep_alives": ANY,
    "auth": ANY,
    "proxy_url": ANY,
}
LOAD_BALANCING_EXPORTER = {
    "routing_key": ANY,
    "routing_attributes": ANY,
    # "The otlp property configures the template used for building the OTLP exporter [...] the
    # endpoint property should not be set and will be overridden by this exporter."
    "protocol": {"otlp": {k: v for k, v in OTLP_GRPC_EXPORTER.items() if k != "endpoint"}},
    "resolver": {
        "static": {"hostnames": ANY},
        "dns": {"hostname": ANY, "port": ANY, "interval": ANY, "timeout": ANY},
        "k8s": {"service": ANY, "ports": ANY, "timeout": ANY, "return_hostnames": ANY},
        "aws_cloud_map": {
            k: ANY for k in ("namespace", "service_name", "health_status", "interval", "timeout", "port")
        },
    },
    "timeout": ANY,
    "retry_on_failure": RETRY,
    "sending_queue": SENDING_QUEUE,
}
OTLP_RECEIVER = {
    "protocols": {
        "grpc": {
            k: ANY
            for k in (
                "endpoint",
                "transport",
                "tls",
                "max_recv_msg_size_mib",
                "max_concurrent_streams",
                "read_buffer_size",
                "write_buffer_size",
                "keepalive",
                "auth",
                "include_metadata",
            )
        },
        "http": {
            k: ANY
            for k in (
                "endpoint",
                "tls",
                "cors",
                "include_metadata",
                "auth",
                "max_request_body_size",
                "response_headers",
                "traces_url_path",
                "metrics_url_path",
                "logs_url_path",
            )
        },
    }
}
DOCUMENTED_KEYS: dict[str, dict[str, Any]] = {
    "receivers": {"otlp": OTLP_RECEIVER},
    "processors": {
        "memory_limiter": {
            k: ANY
            for k in ("check_interval", "limit_mib", "spike_limit_mib", "limit_percentage", "spike_limit_percentage")
        },
        "batch": {
            k: ANY
            for k in (
                "timeout",
                "send_batch_size",
                "send_batch_max_size",
                "metadata_keys",
                "metadata_cardinality_limit",
            )
        },
    },
    "exporters": {
        "otlp_grpc": OTLP_GRPC_EXPORTER,
        "otlp_http": OTLP_HTTP_EXPORTER,
        "load_balancing": LOAD_BALANCING_EXPORTER,
        "debug": {k: ANY for k in ("verbosity", "sampling_initial", "sampling_thereafter", "use_internal_logger")},
    },
}
# Deprecated names the Collector still accepts (with a warning); our files use the current ones.
ALIASES = {"otlp": "otlp_grpc", "otlphttp": "otlp_http", "loadbalancing": "load_balancing"}
COLLECTOR_TOP_LEVEL = {"receivers", "processors", "exporters", "connectors", "extensions", "service"}
ROUTING_KEYS = {"service", "traceID", "metric", "resource", "streamID", "attributes"}
COMPONENT_ID = re.compile(r"^([a-z][a-z0-9_]*)(?:/[^/\s]+)?$")


def component_type(kind: str, component_id: str) -> str | None:
    """``otlp_grpc/otel-judge`` -> ``otlp_grpc``; deprecated exporter aliases map to the current name."""
    match = COMPONENT_ID.match(component_id)
    if match is None:
        return None
    name = match.group(1)
    return ALIASES.get(name, name) if kind == "exporters" else name


def key_problems(schema: Any, node: Any, path: str) -> list[str]:
    """Keys of ``node`` that ``schema`` does not document, by path."""
    if schema is ANY or not isinstance(node, dict):
        return []
    problems = []
    for key, value in node.items():
        if key not in schema:
            problems.append(f"{path}.{key}: not a documented key (documented: {sorted(schema)})")
        else:
            problems += key_problems(schema[key], value, f"{path}.{key}")
    return problems


def collector_problems(config: Any, *, fragment: bool = False) -> list[str]:
    """What the Collector would refuse, or what its components do not document, in a Collector config.

    ``fragment``: a piece of a config (a docs snippet): only its components and their keys are checked.
    """
    if not isinstance(config, dict):
        return ["not a mapping"]
    problems = [f"{key}: not a Collector section" for key in config if key not in COLLECTOR_TOP_LEVEL]
    for kind, documented in DOCUMENTED_KEYS.items():
        for component_id, settings in (config.get(kind) or {}).items():
            ctype = component_type(kind, component_id)
            if ctype not in documented:
                problems.append(f"{kind}.{component_id}: not one of {sorted(documented)} (or their aliases)")
                continue
            problems += key_problems(documented[ctype], settings or {}, f"{kind}.{component_id}")
    for component_id, settings in (config.get("exporters") or {}).items():
        if component_type("exporters", component_id) == "load_balancing" and isinstance(settings, dict):
            resolvers = [r for r in (settings.get("resolver") or {}) if r in LOAD_BALANCING_EXPORTER["resolver"]]
            if len(resolvers) != 1:
                problems.append(f"exporters.{component_id}.resolver: exactly one resolver, found {resolvers}")
            if settings.get("routing_key", "traceID") not in ROUTING_KEYS:
                problems.append(f"exporters.{component_id}.routing_key: not one of {sorted(ROUTING_KEYS)}")
    if fragment:
        return problems
    pipelines = (config.get("service") or {}).get("pipelines") or {}
    used: set[tuple[str, str]] = set()
    for name, pipeline in pipelines.items():
        if name.split("/")[0] not in ("traces", "logs", "metrics"):
            problems.append(f"service.pipelines.{name}: unknown signal")
        for kind in ("receivers", "processors", "exporters"):
            for ref in pipeline.get(kind) or []:
                used.add((kind, ref))
                if ref not in (config.get(kind) or {}):
                    problems.append(f"service.pipelines.{name}.{kind}: {ref} is not defined")
        for kind in ("receivers", "exporters"):
            if not pipeline.get(kind):
                problems.append(f"service.pipelines.{name}: no {kind}")
        processors = pipeline.get("processors") or []
        if "memory_limiter" in processors and processors[0] != "memory_limiter":
            problems.append(f"service.pipelines.{name}.processors: memory_limiter must come first")
    for kind in DOCUMENTED_KEYS:
        problems += [f"{kind}.{c}: defined but not used" for c in config.get(kind) or {} if (kind, c) not in used]
    return problems


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- finding configs


@dataclass(frozen=True)
class FoundConfig:
    """A YAML document found in the repository: a file, a ConfigMap entry or a Markdown block."""

    where: str  # path relative to the repo, with ":line" for Markdown blocks and "[key]" for ConfigMaps
    data: Any
    text: str


OTEL_JUDGE_SECTIONS = frozenset(Config.model_fields)
OTEL_JUDGE_RECEIVERS = {"otlp"}
OTEL_JUDGE_EXPORTERS = {"otlp", "otlphttp", "file", "debug"}
SCANNED = ["collector-config", "deploy", "examples", "docs", "bench"]
FENCE = re.compile(r"^([ \t]*)```ya?ml[^\n]*\n(.*?)^\1```", re.MULTILINE | re.DOTALL)


def kind_of(data: Any) -> str:
    """``collector``, ``otel-judge`` (a whole config), ``otel-judge-fragment`` or ``other``."""
    if not isinstance(data, dict) or not data:
        return "other"
    keys = set(data)
    if keys & {"processors", "extensions", "connectors"} or "pipelines" in (data.get("service") or {}):
        return "collector"
    components = [("receivers", OTEL_JUDGE_RECEIVERS), ("exporters", OTEL_JUDGE_EXPORTERS)]
    for section, ours in components:
        block = data.get(section)
        if isinstance(block, dict) and any("/" in str(c) or c not in ours for c in block):
            return "collector" if keys <= COLLECTOR_TOP_LEVEL else "other"
    if keys <= OTEL_JUDGE_SECTIONS:
        return "otel-judge" if "exporters" in keys else "otel-judge-fragment"
    return "other"


def _documents(path: Path) -> Iterator[FoundConfig]:
    rel = path.relative_to(ROOT).as_posix()
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".md":
        for match in FENCE.finditer(text):
            line = text.count("\n", 0, match.start()) + 2
            block = textwrap.dedent(match.group(2))
            try:
                yield FoundConfig(f"{rel}:{line}", yaml.safe_load(block), block)
            except yaml.YAMLError as exc:
                yield FoundConfig(f"{rel}:{line}", {"__invalid_yaml__": str(exc)}, block)
        return
    documents = list(yaml.safe_load_all(text))
    for index, data in enumerate(documents):
        where = rel if index == 0 else f"{rel}#{index}"
        yield FoundConfig(where, data, text if len(documents) == 1 else yaml.safe_dump(data))
        # A Kubernetes ConfigMap carries configs as strings: look inside.
        if isinstance(data, dict) and data.get("kind") == "ConfigMap":
            for key, value in (data.get("data") or {}).items():
                if key.endswith((".yaml", ".yml")) and isinstance(value, str):
                    yield FoundConfig(f"{where}[{key}]", yaml.safe_load(value), value)


def repo_configs() -> list[FoundConfig]:
    """Every YAML document of the shipped folders and of the hand-written Markdown, hidden folders skipped."""
    paths = [ROOT / "README.md", ROOT / "CONTRIBUTING.md"]
    for folder in SCANNED:
        for path in sorted((ROOT / folder).rglob("*")):
            parts = path.relative_to(ROOT).parts
            if any(p.startswith(".") or p in ("node_modules", "__pycache__") for p in parts):
                continue
            if path.suffix in (".yaml", ".yml", ".md") and path.is_file():
                paths.append(path)
    return [found for path in paths if path.is_file() for found in _documents(path)]


ALL_CONFIGS = repo_configs()
OTEL_JUDGE_FOUND = [c for c in ALL_CONFIGS if kind_of(c.data) in ("otel-judge", "otel-judge-fragment")]
COLLECTOR_FOUND = [c for c in ALL_CONFIGS if kind_of(c.data) == "collector"]
COLLECTOR_FILES = sorted(COLLECTOR_DIR.glob("collector-*.yaml"))

# Variables the shipped configs read with ${env:NAME} and no default: the values a deployment
# provides. Keys and passwords of any name get a placeholder too.
DOCUMENTED_ENV = {
    "OPENAI_API_KEY": "sk-test",
    "OTEL_JUDGE_MODEL": "openai/gpt-4o-mini",
    "OTEL_JUDGE_STORE_PASSWORD": "test-password",
    "OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel-collector:4317",
}
SECRET_NAME = re.compile(r"^[A-Z0-9_]*(API_KEY|PASSWORD|TOKEN|SECRET)$")


def validate_env(texts: list[str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "OPENAI_"))}
    env.update(DOCUMENTED_ENV)
    for text in texts:
        for name in re.findall(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}", text):
            if SECRET_NAME.match(name):
                env.setdefault(name, "placeholder-secret")
    return env


# --------------------------------------------------------------------------- Collector configs


@pytest.mark.parametrize("path", COLLECTOR_FILES, ids=lambda p: p.name)
def test_collector_configs_use_only_documented_components_and_keys(path: Path) -> None:
    """Each Collector config parses, uses documented components with documented keys, and is wired."""
    config = load_yaml(path)

    assert collector_problems(config) == []


@pytest.mark.parametrize("path", COLLECTOR_FILES, ids=lambda p: p.name)
def test_collector_configs_use_the_current_component_names(path: Path) -> None:
    """No deprecated alias (otlp, otlphttp, loadbalancing exporters) in the files we ship."""
    config = load_yaml(path)

    deprecated = [c for c in config["exporters"] if c.split("/")[0] in ALIASES]

    assert deprecated == []


@pytest.mark.parametrize("path", COLLECTOR_FILES, ids=lambda p: p.name)
def test_collector_configs_send_traces_and_logs_to_otel_judge(path: Path) -> None:
    """Traces and logs both reach otel-judge (content log records are joined to their span there)."""
    config = load_yaml(path)
    pipelines = config["service"]["pipelines"]

    to_judge = {
        name.split("/")[0]
        for name, pipeline in pipelines.items()
        for exporter in pipeline["exporters"]
        if exporter.endswith("/otel-judge")
    }

    assert to_judge == {"traces", "logs"}


@pytest.mark.parametrize("path", sorted(COLLECTOR_DIR.glob("collector-loadbalancing*.yaml")), ids=lambda p: p.name)
def test_load_balancing_routes_traces_and_logs_by_trace_id(path: Path) -> None:
    """The load-balancing exporter says routing_key: traceID, sends no endpoint, and serves both signals."""
    config = load_yaml(path)
    [(exporter_id, exporter)] = [
        (c, e) for c, e in config["exporters"].items() if component_type("exporters", c) == "load_balancing"
    ]
    pipelines = config["service"]["pipelines"]

    signals = {name.split("/")[0] for name, p in pipelines.items() if exporter_id in p["exporters"]}

    assert exporter["routing_key"] == "traceID"
    assert "endpoint" not in exporter["protocol"]["otlp"]
    assert signals == {"traces", "logs"}


@pytest.mark.parametrize(
    ("config", "fragment", "expected"),
    [
        pytest.param({"receivers": {"zipkin": {}}}, True, "receivers.zipkin: not one of", id="unknown-receiver"),
        pytest.param(
            {"exporters": {"otlp_grpc": {"endpont": "x:4317"}}},
            True,
            "exporters.otlp_grpc.endpont: not a documented key",
            id="misspelt-key",
        ),
        pytest.param(
            {"exporters": {"load_balancing": {"protocol": {"otlp": {"endpoint": "x:4317"}}, "resolver": {}}}},
            True,
            "exporters.load_balancing.protocol.otlp.endpoint: not a documented key",
            id="endpoint-in-lb-template",
        ),
        pytest.param(
            {"exporters": {"loadbalancing": {"resolver": {"static": {}, "dns": {}}}}},
            True,
            "exactly one resolver",
            id="two-resolvers",
        ),
        pytest.param(
            {"exporters": {"load_balancing": {"routing_key": "trace_id", "resolver": {"k8s": {}}}}},
            True,
            "routing_key: not one of",
            id="bad-routing-key",
        ),
        pytest.param(
            {
                "receivers": {"otlp": {}},
                "service": {"pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["x"]}}},
            },
            False,
            "service.pipelines.traces.exporters: x is not defined",
            id="undefined-exporter",
        ),
        pytest.param(
            {
                "processors": {"batch": {}, "memory_limiter": {}},
                "service": {"pipelines": {"logs": {"processors": ["batch", "memory_limiter"]}}},
            },
            False,
            "memory_limiter must come first",
            id="memory-limiter-not-first",
        ),
        pytest.param(
            {"exporters": {"debug": {}}, "service": {"pipelines": {}}},
            False,
            "exporters.debug: defined but not used",
            id="unused-exporter",
        ),
    ],
)
def test_collector_check_catches_mistakes(config: dict[str, Any], fragment: bool, expected: str) -> None:
    """The Collector config check is not vacuous: each broken config is reported."""
    problems = collector_problems(config, fragment=fragment)

    assert any(expected in problem for problem in problems), problems


def _port(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1])


LAYOUTS = [
    ("collector-round-trip.yaml", "otel-judge-round-trip.yaml"),
    ("collector-loadbalancing.yaml", "otel-judge-replica.yaml"),
    ("collector-loadbalancing-k8s.yaml", "otel-judge-replica.yaml"),
]


@pytest.mark.parametrize(("collector_file", "judge_file"), LAYOUTS)
def test_round_trip_halves_point_at_each_other_without_a_loop(collector_file: str, judge_file: str) -> None:
    """The Collector sends to otel-judge's receiver port; otel-judge sends back to a Collector receiver
    whose pipelines never lead to otel-judge again."""
    collector = load_yaml(COLLECTOR_DIR / collector_file)
    judge = load_yaml(COLLECTOR_DIR / judge_file)
    judge_port = _port(judge["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"])
    return_port = _port(judge["exporters"]["otlp"]["endpoint"])
    pipelines = collector["service"]["pipelines"]

    [to_judge] = [c for c in collector["exporters"] if c.endswith("/otel-judge")]
    exporter = collector["exporters"][to_judge]
    resolver = exporter.get("resolver", {})
    ports = (
        [_port(exporter["endpoint"])]
        if "endpoint" in exporter
        else [_port(h) for h in resolver.get("static", {}).get("hostnames", [])]
        + resolver.get("k8s", {}).get("ports", [])
    )
    [return_receiver] = [
        r
        for r, settings in collector["receivers"].items()
        if _port(((settings or {}).get("protocols") or {}).get("grpc", {}).get("endpoint", ":0")) == return_port
    ]
    loops = [name for name, p in pipelines.items() if return_receiver in p["receivers"] and to_judge in p["exporters"]]
    from_judge = {name.split("/")[0] for name, p in pipelines.items() if return_receiver in p["receivers"]}

    assert ports and set(ports) == {judge_port}
    assert loops == []
    assert from_judge == {"traces", "logs"}


# --------------------------------------------------------------------------- docs snippets


def test_repository_yaml_is_found_and_classified() -> None:
    """The scan finds the shipped configs of both kinds (so the validations below are not vacuous)."""
    judge = {c.where for c in OTEL_JUDGE_FOUND}
    collector = {c.where for c in COLLECTOR_FOUND}

    assert {f"collector-config/{p.name}" for p in COLLECTOR_DIR.glob("otel-judge*.yaml")} <= judge
    assert {f"collector-config/{p.name}" for p in COLLECTOR_FILES} <= collector


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param({"exporters": {"debug": {}}, "judge": {"model": "x"}}, "otel-judge", id="otel-judge"),
        pytest.param({"judge": {"timeout": "5s"}}, "otel-judge-fragment", id="fragment"),
        pytest.param({"exporters": {"load_balancing": {}}}, "collector", id="collector-fragment"),
        pytest.param({"exporters": {"otlp/a": {}}, "service": {}}, "collector", id="named-component"),
        pytest.param({"receivers": {}, "service": {"pipelines": {}}}, "collector", id="pipelines"),
        pytest.param({"apiVersion": "v1", "kind": "Service"}, "other", id="kubernetes"),
        pytest.param({"groups": []}, "other", id="prometheus-rules"),
    ],
)
def test_yaml_classification(data: Any, expected: str) -> None:
    """Collector configs, otel-judge configs, fragments of either and other YAML are told apart."""
    assert kind_of(data) == expected


@pytest.mark.parametrize("found", [c for c in COLLECTOR_FOUND if ":" in c.where], ids=lambda c: c.where)
def test_collector_snippets_in_docs_use_documented_keys(found: FoundConfig) -> None:
    """A Collector snippet in a Markdown file uses only documented components and keys."""
    assert collector_problems(found.data, fragment=True) == []


# --------------------------------------------------------------------------- otel-judge validate


def test_every_otel_judge_config_in_the_repository_passes_validate(tmp_path: Path) -> None:
    """Every otel-judge config (files, Kubernetes ConfigMaps, Markdown blocks; fragments completed with a
    debug exporter) passes `otel-judge validate`, in one run of the real command."""
    files: dict[str, str] = {}
    for index, found in enumerate(OTEL_JUDGE_FOUND):
        text = found.text
        if kind_of(found.data) == "otel-judge-fragment":
            text += "\nexporters:\n  debug: {}\n"
        path = tmp_path / f"{index:03d}.yaml"
        path.write_text(text, encoding="utf-8")
        files[str(path)] = found.where

    result = subprocess.run(
        [sys.executable, "-m", "otel_judge", "validate", *files],
        capture_output=True,
        text=True,
        env=validate_env([c.text for c in OTEL_JUDGE_FOUND]),
        timeout=120,
        check=False,
    )
    report = result.stderr
    for path, where in files.items():
        report = report.replace(path, where)

    assert result.returncode == 0, report
    assert result.stdout.count(": OK") == len(files)
