"""The container image, the Compose demo stack and the Kubernetes manifests (deploy/, Dockerfile).

No Docker engine and no Kubernetes cluster run here, so these tests check what can be checked
without them: the Compose file through the Compose client (``docker compose config`` or
``docker-compose config``), the Dockerfile and the manifests against the facts they must agree on
(ports, paths, user id, labels and selectors, the health endpoint), the image's health check
command against a running otel-judge, and the demo's two programs (fake judge, example app)
through a real otel-judge pipeline. docs/deployment.md lists what was not run.
"""

from __future__ import annotations

import asyncio
import fnmatch
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp
import pytest
import yaml

from otel_judge import semconv
from otel_judge.config import load_config, load_config_text, validate_config
from otel_judge.testing import JudgeRequest, SpanSink

from .conftest import running

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
COMPOSE_FILE = DEPLOY / "docker-compose.yaml"
ENV = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317", "OPENAI_API_KEY": "sk-test"}


def load_module(path: Path) -> ModuleType:
    """Import a script that is not part of a package (deploy/)."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def port_of(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1])


# --------------------------------------------------------------------------- Dockerfile


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines():
        if raw.lstrip().startswith("#"):
            continue
        if raw.endswith("\\"):
            pending += raw[:-1] + " "
            continue
        line = (pending + raw).strip()
        pending = ""
        if line:
            lines.append(line)
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def stages() -> dict[str, list[tuple[str, str]]]:
    """Instructions by stage name (an unnamed final stage is ``final``)."""
    result: dict[str, list[tuple[str, str]]] = {}
    current = None
    for instruction, args in dockerfile_instructions():
        if instruction == "FROM":
            parts = args.split()
            current = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else "final"
            result[current] = [(instruction, args)]
        elif current is not None:
            result[current].append((instruction, args))
    return result


def test_dockerfile_builds_from_the_lock_file_with_hashes() -> None:
    """The builder installs requirements.lock with --require-hashes --no-deps, then the package without deps."""
    builder = [args for instruction, args in stages()["builder"] if instruction == "RUN"]

    assert any("--require-hashes" in run and "--no-deps" in run and "-r requirements.lock" in run for run in builder)
    assert any("install --no-deps --no-build-isolation ." in run for run in builder)


def test_dockerfile_runtime_is_slim_non_root_with_health_check_and_ports() -> None:
    """Runtime stage: slim Python 3.11, a numeric non-root user, /healthz on the default config's health
    port, the four ports exposed, the default config at the path the CMD names."""
    all_stages = stages()
    runtime = dict(reversed(all_stages["runtime"]))  # first occurrence wins
    arg = next(args for instruction, args in dockerfile_instructions() if instruction == "ARG")
    config, _ = load_config(DEPLOY / "otel-judge.yaml", env=ENV)
    assert config.service.health is not None
    health_port = port_of(config.service.health.endpoint)

    user = runtime["USER"].split(":")[0]
    healthcheck = runtime["HEALTHCHECK"]
    cmd = json.loads(runtime["CMD"])

    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.11-slim(-\w+)?", arg)
    assert user.isdigit() and int(user) >= 1000
    assert f"http://127.0.0.1:{health_port}/healthz" in healthcheck
    assert set(runtime["EXPOSE"].split()) == {"4317", "4318", str(health_port), "8787"}
    assert cmd == ["serve", "--config", "/etc/otel-judge/otel-judge.yaml"]
    assert "COPY deploy/otel-judge.yaml /etc/otel-judge/otel-judge.yaml" in [
        f"{i} {a}" for i, a in all_stages["runtime"]
    ]
    assert all_stages["final"][0] == ("FROM", "runtime"), "the default target is the runtime image"


def dockerignore_allows(path: str) -> bool:
    """Whether .dockerignore lets ``path`` into the build context (last matching pattern wins)."""
    allowed = True
    for raw in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").rstrip("/")
        if pattern == "**" or fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/"):
            allowed = negate
    return allowed


def test_every_copied_file_exists_and_is_in_the_build_context() -> None:
    """Each COPY source (not from another stage) exists and is not excluded by .dockerignore."""
    sources = [
        src
        for instruction, args in dockerfile_instructions()
        if instruction == "COPY" and not args.startswith("--from")
        for src in args.split()[:-1]
    ]

    missing = [s for s in sources if not (ROOT / s).exists()]
    excluded = [s for s in sources if not dockerignore_allows(s)]

    assert sources and missing == [] and excluded == []
    assert not dockerignore_allows(".venv/bin/python") and not dockerignore_allows("tests/conftest.py")


async def test_image_health_check_command_passes_while_otel_judge_runs(sink: SpanSink) -> None:
    """The HEALTHCHECK command of the image exits 0 against a running otel-judge and non-zero once it stopped."""
    healthcheck = dict(stages()["runtime"])["HEALTHCHECK"]
    command = json.loads(healthcheck[healthcheck.index("CMD") + 3 :].strip())
    config = validate_config(
        {
            "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "127.0.0.1:0"}}}},
            "exporters": {"otlp": {"endpoint": sink.endpoint, "tls": {"insecure": True}}},
            "service": {"health": {"endpoint": "127.0.0.1:0"}},
        }
    )

    async def check(port: int) -> int:
        argv = [sys.executable if a == "python" else a.replace(":13133/", f":{port}/") for a in command]
        process = await asyncio.create_subprocess_exec(*argv, stderr=asyncio.subprocess.DEVNULL)
        return await process.wait()

    async with running(config) as pipeline:
        assert pipeline.health_port is not None
        port = pipeline.health_port
        while_running = await check(port)
    after_stop = await check(port)

    assert while_running == 0
    assert after_stop != 0


# --------------------------------------------------------------------------- the demo's packages


def lock_blocks(path: Path) -> dict[str, str]:
    """Each pinned requirement of a hashed requirements file: name -> its text (pin and hashes)."""
    text = path.read_text(encoding="utf-8")
    pattern = r"^([A-Za-z0-9][A-Za-z0-9._-]*)==\S+ \\\n(?:    --hash=sha256:[0-9a-f]{64}(?: \\)?\n)+"
    return {m.group(1).lower(): m.group(0) for m in re.finditer(pattern, text, re.MULTILINE)}


def test_demo_app_requirements_are_copied_from_the_dev_lock() -> None:
    """deploy/demo-app/requirements.txt pins the same versions and hashes as requirements-dev.lock, and
    with requirements.lock it covers every dependency of the packages it adds."""
    from importlib.metadata import requires

    demo = lock_blocks(DEPLOY / "demo-app" / "requirements.txt")
    dev = lock_blocks(ROOT / "requirements-dev.lock")
    runtime = lock_blocks(ROOT / "requirements.lock")
    needed = {
        re.split(r"[\s<>=!~;\[(]", requirement, maxsplit=1)[0].lower().replace("_", "-")
        for package in demo
        for requirement in requires(package) or []
        if "extra ==" not in requirement
    }

    assert {"opentelemetry-sdk", "opentelemetry-exporter-otlp-proto-grpc"} <= set(demo)
    assert {name: text for name, text in demo.items() if dev.get(name) != text} == {}
    assert needed - set(demo) - set(runtime) == set()


# --------------------------------------------------------------------------- Compose


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    return data


def compose_client() -> list[str] | None:
    """``docker compose`` (v2 plugin) or ``docker-compose`` (v1), whichever works without an engine."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False, timeout=30)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_compose_file_is_accepted_by_the_compose_client() -> None:
    """`compose config` parses, validates against the Compose schema and resolves the file (no engine needed)."""
    client = compose_client()
    if client is None:
        if os.environ.get("CI"):
            pytest.fail("no Compose client: .ci/run installs docker-compose")
        pytest.skip("no Compose client (apt-get install docker-compose)")

    result = subprocess.run(
        [*client, "-f", str(COMPOSE_FILE), "config", "--services"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "DOCKER_"))},
    )

    assert result.returncode == 0, result.stderr
    assert set(result.stdout.split()) == set(compose()["services"])


def test_compose_stack_has_every_part_with_pinned_images() -> None:
    """The demo has otel-judge, a fake judge, an example app, a Collector, Jaeger, Tempo, Prometheus and
    Grafana; every pulled image names a version, never `latest`."""
    services = compose()["services"]
    images = {name: s["image"] for name, s in services.items() if "build" not in s}

    expected = {"otel-judge", "fake-judge", "demo-app", "otel-collector", "jaeger", "tempo", "prometheus", "grafana"}
    assert expected <= set(services)
    assert all(re.fullmatch(r"[\w./-]+:[\w.-]+", image) and not image.endswith(":latest") for image in images.values())
    assert "opentelemetry-collector-contrib" in images["otel-collector"]


def test_compose_mounts_exist_and_the_stack_is_wired() -> None:
    """Every file mounted into a container exists; the app sends to the Collector, the Collector to
    otel-judge and back, otel-judge to the fake judge, Prometheus scrapes otel-judge and loads the rules."""
    services = compose()["services"]
    mounts = {
        name: {volume.split(":")[1]: volume.split(":")[0] for volume in s.get("volumes", []) if volume.startswith(".")}
        for name, s in services.items()
    }
    missing = [src for m in mounts.values() for src in m.values() if not (DEPLOY / src).exists()]
    judge_config, _ = load_config(DEPLOY / mounts["otel-judge"]["/etc/otel-judge/demo.yaml"], env={})
    collector = yaml.safe_load((DEPLOY / mounts["otel-collector"]["/etc/otelcol-contrib/config.yaml"]).read_text())
    prometheus = yaml.safe_load((DEPLOY / mounts["prometheus"]["/etc/prometheus/prometheus.yml"]).read_text())
    [target] = prometheus["scrape_configs"][0]["static_configs"][0]["targets"]

    assert missing == []
    assert services["otel-judge"]["command"][-1] == "/etc/otel-judge/demo.yaml"
    assert services["demo-app"]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4317"
    assert collector["exporters"]["otlp_grpc/otel-judge"]["endpoint"] == "otel-judge:4317"
    assert judge_config.exporters.otlp is not None
    assert judge_config.exporters.otlp.endpoint == "otel-collector:14317"
    assert collector["receivers"]["otlp/from-judge"]["protocols"]["grpc"]["endpoint"].endswith(":14317")
    assert judge_config.judge.api_base == "http://fake-judge:8080/v1"
    assert services["fake-judge"]["command"][-1] == "8080"
    assert judge_config.service.health is not None
    assert target == f"otel-judge:{port_of(judge_config.service.health.endpoint)}"
    assert mounts["prometheus"]["/etc/prometheus/rules/otel-judge-rules.yaml"] == "./prometheus/otel-judge-rules.yaml"
    assert prometheus["rule_files"] == ["/etc/prometheus/rules/otel-judge-rules.yaml"]


# --------------------------------------------------------------------------- Kubernetes

API_VERSIONS = {
    "Deployment": "apps/v1",
    "Service": "v1",
    "ConfigMap": "v1",
    "ServiceAccount": "v1",
    "PodDisruptionBudget": "policy/v1",
    "Role": "rbac.authorization.k8s.io/v1",
    "RoleBinding": "rbac.authorization.k8s.io/v1",
}


def manifests() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            docs += [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    return docs


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [d for d in manifests() if d["kind"] == kind]


def test_manifests_have_kind_api_version_and_name() -> None:
    """Every manifest is a known kind at its current apiVersion, with metadata.name and labels."""
    problems = [
        f"{d.get('kind')}/{d.get('metadata', {}).get('name')}"
        for d in manifests()
        if API_VERSIONS.get(d.get("kind", "")) != d.get("apiVersion")
        or not d.get("metadata", {}).get("name")
        or not d["metadata"].get("labels")
    ]

    assert problems == []
    assert {"Deployment", "Service", "ConfigMap"} <= {d["kind"] for d in manifests()}


def test_kustomization_lists_every_manifest() -> None:
    """kustomization.yaml names each manifest file of the folder, and only those."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))

    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}

    assert set(kustomization["resources"]) == files


def test_kubectl_kustomize_renders_the_manifests() -> None:
    """`kubectl kustomize` (offline) builds the set into the namespace the Collector config names."""
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed")

    result = subprocess.run(["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, timeout=60, check=False)

    assert result.returncode == 0, result.stderr
    rendered = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert len(rendered) == len(manifests())
    assert {d["metadata"].get("namespace") for d in rendered} == {"observability"}


def test_selectors_match_the_pod_labels() -> None:
    """The Deployment's selector, both Services' and the PodDisruptionBudget's select the pod template's labels."""
    [deployment] = by_kind("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]

    selectors = [deployment["spec"]["selector"]["matchLabels"]]
    selectors += [s["spec"]["selector"] for s in by_kind("Service")]
    selectors += [p["spec"]["selector"]["matchLabels"] for p in by_kind("PodDisruptionBudget")]

    assert all(selector.items() <= labels.items() for selector in selectors)


def test_ports_probes_and_config_agree() -> None:
    """Container ports are the config's receiver, health and API ports; Services and probes use those
    named ports; probes hit /healthz and /readyz; one core requested; the image's non-root user."""
    [deployment] = by_kind("Deployment")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    [configmap] = by_kind("ConfigMap")
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    env = {e["name"]: "from-secret" for e in container["env"]}
    config, _ = load_config_text(configmap["data"]["otel-judge.yaml"], {**env, "OPENAI_API_KEY": "sk-test"})
    protocols = config.receivers.otlp.protocols
    assert protocols.grpc is not None and protocols.http is not None and config.service.health is not None
    assert config.quality.api is not None
    dockerfile_user = dict(stages()["runtime"])["USER"].split(":")[0]
    security = deployment["spec"]["template"]["spec"]["securityContext"]

    assert ports == {
        "otlp-grpc": port_of(protocols.grpc.endpoint),
        "otlp-http": port_of(protocols.http.endpoint),
        "health": port_of(config.service.health.endpoint),
        "quality-api": port_of(config.quality.api.endpoint),
    }
    for service in by_kind("Service"):
        assert all(p["targetPort"] in ports and p["port"] == ports[p["targetPort"]] for p in service["spec"]["ports"])
    probes = {name: container[name]["httpGet"] for name in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert {name: (p["path"], p["port"]) for name, p in probes.items()} == {
        "startupProbe": ("/healthz", "health"),
        "livenessProbe": ("/healthz", "health"),
        "readinessProbe": ("/readyz", "health"),
    }
    assert container["resources"]["requests"]["cpu"] == "1"
    assert security["runAsNonRoot"] is True and str(security["runAsUser"]) == dockerfile_user
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > config.service.shutdown_grace


def test_configmap_is_mounted_where_the_container_reads_it() -> None:
    """The container's --config file is a key of the ConfigMap mounted at its directory, and every
    variable the config reads without a default is set in the container's environment."""
    [deployment] = by_kind("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    [configmap] = by_kind("ConfigMap")
    config_path = Path(container["args"][container["args"].index("--config") + 1])
    [mount] = [m for m in container["volumeMounts"] if m["mountPath"] == str(config_path.parent)]
    [volume] = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    required = set(re.findall(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}", configmap["data"][config_path.name]))

    assert volume["configMap"]["name"] == configmap["metadata"]["name"]
    assert config_path.name in configmap["data"]
    assert required <= {e["name"] for e in container["env"]}


def test_headless_service_is_what_the_collector_resolves() -> None:
    """collector-loadbalancing-k8s.yaml resolves the headless Service (name.namespace) on its OTLP port,
    and the RBAC lets the Collector read that Service's endpoints."""
    [headless] = [s for s in by_kind("Service") if s["spec"].get("clusterIP") == "None"]
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    collector = yaml.safe_load((ROOT / "collector-config" / "collector-loadbalancing-k8s.yaml").read_text())
    [resolver] = [e["resolver"]["k8s"] for e in collector["exporters"].values() if "resolver" in e]
    [role] = by_kind("Role")
    readable = {(g, r) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]}

    assert resolver["service"] == f"{headless['metadata']['name']}.{kustomization['namespace']}"
    assert resolver["ports"] == [p["port"] for p in headless["spec"]["ports"]]
    assert {("", "endpoints"), ("discovery.k8s.io", "endpointslices")} <= readable


# --------------------------------------------------------------------------- fake judge and demo app


@pytest.fixture(scope="module")
def fake_judge_module() -> ModuleType:
    return load_module(DEPLOY / "fake-judge" / "fake_judge.py")


@pytest.fixture(scope="module")
def demo_app() -> ModuleType:
    return load_module(DEPLOY / "demo-app" / "demo_app.py")


@pytest.mark.parametrize(
    ("answer", "low", "high"),
    [
        pytest.param("I'm not sure, there are many sleeping bags.", 12, 30, id="evasive"),
        pytest.param("I have passed your order to our support team.", 45, 60, id="handoff"),
        pytest.param("The Polar 900 is rated to -12 °C comfort.", 70, 98, id="helpful"),
        pytest.param("", 12, 30, id="empty"),
    ],
)
def test_fake_judge_scores_by_the_kind_of_answer(
    fake_judge_module: ModuleType, answer: str, low: int, high: int
) -> None:
    """The demo's judge gives evasive answers low scores, hand-offs middling ones, others high ones."""
    prompt = f"Question\n<<<response abc>>>\n{answer}\n<<<end response abc>>>"
    request = JudgeRequest({"messages": [{"role": "user", "content": prompt}]}, {})

    reply = json.loads(fake_judge_module.score(request))

    assert low <= reply["score"] <= high
    assert reply["explanation"]


@pytest.fixture
async def demo_judge(fake_judge_module: ModuleType) -> AsyncIterator[Any]:
    async with fake_judge_module.DemoJudge("127.0.0.1", 0) as judge:
        yield judge


async def test_fake_judge_serves_health_and_chat_completions(demo_judge: Any) -> None:
    """On its own port: GET /healthz is 200, POST /v1/chat/completions answers with a JSON score."""
    body = {
        "model": "gpt-4o-judge",
        "messages": [{"role": "user", "content": "<<<response x>>>\nok\n<<<end response x>>>"}],
    }
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{demo_judge.port}/healthz") as health:
            health_status = health.status
        async with session.post(f"{demo_judge.api_base}/chat/completions", json=body) as chat:
            reply = await chat.json()

    assert health_status == 200
    assert json.loads(reply["choices"][0]["message"]["content"])["score"] >= 70


async def test_demo_app_through_otel_judge_with_the_fake_judge(
    sink: SpanSink, demo_judge: Any, demo_app: ModuleType
) -> None:
    """The demo's config (rewired to 127.0.0.1, everything sampled) judges the demo app's spans with the
    fake judge: every LLM span evaluated, evasive answers fail, OpenAI-family spans marked same-family."""
    data = yaml.safe_load((DEPLOY / "compose" / "otel-judge.yaml").read_text(encoding="utf-8"))
    data["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"] = "127.0.0.1:0"
    data["exporters"]["otlp"]["endpoint"] = sink.endpoint
    data["judge"]["api_base"] = demo_judge.api_base
    data["sampling"] = {
        "decision_wait": "0s",
        "decision_wait_after_root_received": "0s",
        "policies": [{"name": "all", "type": "probabilistic", "probabilistic": {"sampling_percentage": 100}}],
    }
    data["judge"]["max_hold"] = data["judge"]["timeout"] = "60s"  # the first call waits for litellm's import
    for key in ("store", "quality", "service"):
        data.pop(key)
    config = validate_config(data)
    count = 20

    async with running(config) as pipeline:
        endpoint = f"http://127.0.0.1:{pipeline.grpc_port}"
        await asyncio.to_thread(demo_app.run, endpoint, count, 0)
        received = await sink.wait_for_spans(2 * count, timeout=90)

    llm = [r.attributes for r in received if r.span.name.startswith("chat ")]
    evasive = [
        a for a in llm if any(p in a[semconv.GEN_AI_OUTPUT_MESSAGES].lower() for p in ("not sure", "don't know"))
    ]
    assert len(llm) == count
    assert {a[semconv.OTEL_JUDGE_EVALUATION_STATUS] for a in llm} == {"evaluated"}
    assert all(a[semconv.score_label_key("quality")] == "fail" for a in evasive)
    marked = {a[semconv.GEN_AI_REQUEST_MODEL] for a in llm if a.get(semconv.OTEL_JUDGE_EVALUATION_SAME_FAMILY)}
    unmarked = {a[semconv.GEN_AI_REQUEST_MODEL] for a in llm if semconv.OTEL_JUDGE_EVALUATION_SAME_FAMILY not in a}
    assert evasive, "the seeded conversations include evasive answers"
    assert marked == {"gpt-4o-mini"} and unmarked == {"claude-sonnet-4"}
    assert {r.attributes.get("http.route") for r in received if r.span.name.startswith("POST ")} <= {
        "/support/chat",
        "/search/answer",
    }


@pytest.mark.parametrize("doc", ["docs/deployment.md", "docs/alerting.md"])
def test_deployment_docs_link_to_files_that_exist(doc: str) -> None:
    """Every relative Markdown link of the deployment and alerting docs leads to a file or folder."""
    path = ROOT / doc
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text(encoding="utf-8"))

    broken = [link for link in links if "://" not in link and not (path.parent / link).exists()]

    assert links and broken == []
