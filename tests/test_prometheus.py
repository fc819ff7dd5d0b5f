"""The Prometheus rules (deploy/prometheus/otel-judge-rules.yaml) with Prometheus's own tools.

* ``promtool check rules`` / ``check config``: the rules and the demo's prometheus.yml are valid.
* ``promtool test rules``: the unit tests in tests/prometheus/ (recording rules on known series,
  alerts firing, and not firing, at known times).
* A live Prometheus (Debian's ``prometheus`` package, the same one that ships promtool) started on a
  free 127.0.0.1 port scrapes a running otel-judge's /metrics while it judges spans with the fake
  judge, evaluates the rules, and answers every query of the Grafana dashboard.

.ci/run installs the package; without it these tests are skipped locally and fail in CI.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from otel_judge.telemetry import INSTRUMENTS, prometheus_name
from otel_judge.testing import FakeJudge, JudgeAnswer, JudgeRequest, SpanSink

from .conftest import pipeline_config, running
from .otlp_builders import RawClient, genai_span, request

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "deploy" / "prometheus" / "otel-judge-rules.yaml"
UNIT_TESTS = sorted((ROOT / "tests" / "prometheus").glob("*.test.yaml"))
DASHBOARD = ROOT / "deploy" / "grafana" / "otel-judge-dashboard.json"


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        message = f"{name} not found: apt-get install prometheus (Debian ships promtool with it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def promtool(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("promtool"), *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=120, check=False
    )


# --------------------------------------------------------------------------- promtool


def test_rules_file_passes_promtool_check() -> None:
    """`promtool check rules` accepts the rules file (PromQL syntax, templates, names)."""
    result = promtool("check", "rules", RULES)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_demo_prometheus_config_passes_promtool_check(tmp_path: Path) -> None:
    """The demo stack's prometheus.yml is valid with the rules at the path it mounts them."""
    config = yaml.safe_load((ROOT / "deploy" / "compose" / "prometheus.yml").read_text(encoding="utf-8"))
    assert config["rule_files"] == ["/etc/prometheus/rules/otel-judge-rules.yaml"]
    config["rule_files"] = [str(RULES)]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")

    result = promtool("check", "config", path)

    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("test_file", UNIT_TESTS, ids=lambda p: p.name)
def test_promtool_unit_tests_pass(test_file: Path) -> None:
    """`promtool test rules` passes each unit test file of tests/prometheus/."""
    result = promtool("test", "rules", test_file.name, cwd=test_file.parent)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_unit_test_that_fires_it() -> None:
    """Each alerting rule appears, with an expected firing alert, in some promtool unit test."""
    rules = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    fired = {
        case["alertname"]
        for path in UNIT_TESTS
        for test in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }

    assert alerts - fired == set()


# --------------------------------------------------------------------------- a live Prometheus


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class PrometheusServer:
    """Debian's prometheus binary on 127.0.0.1 with a temporary config and data directory."""

    def __init__(self, directory: Path, scrape_target: str) -> None:
        self.directory = directory
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [
                {"job_name": "otel-judge", "scrape_interval": "1s", "static_configs": [{"targets": [scrape_target]}]}
            ],
        }
        (directory / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
        self.process: asyncio.subprocess.Process | None = None
        self.session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> PrometheusServer:
        with (self.directory / "prometheus.log").open("wb") as log:
            self.process = await asyncio.create_subprocess_exec(
                tool("prometheus"),
                f"--config.file={self.directory / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        await self.wait_until(self._ready, "Prometheus did not become ready")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.session is not None:
            await self.session.close()
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()

    def log(self) -> str:
        return (self.directory / "prometheus.log").read_text(encoding="utf-8", errors="replace")[-3000:]

    async def _ready(self) -> bool:
        assert self.session is not None and self.process is not None
        assert self.process.returncode is None, f"prometheus exited:\n{self.log()}"
        try:
            async with self.session.get(f"{self.base}/-/ready") as response:
                return response.status == 200
        except aiohttp.ClientError:
            return False

    async def api(self, path: str, **params: str) -> Any:
        assert self.session is not None
        async with self.session.get(f"{self.base}/api/v1/{path}", params=params) as response:
            body = await response.json()
        return body

    async def query(self, expr: str) -> list[dict[str, Any]]:
        body = await self.api("query", query=expr)
        assert body["status"] == "success", (expr, body)
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    async def wait_until(self, condition: Any, message: Any, timeout: float = 45.0) -> None:
        """Poll ``condition`` (an async callable) until it is true; fail after ``timeout`` seconds with
        ``message`` (a string, or a callable giving one then)."""
        deadline = time.monotonic() + timeout
        while not await condition():
            if time.monotonic() >= deadline:
                pytest.fail(f"{message() if callable(message) else message}\n{self.log()}")
            await asyncio.sleep(0.2)


def value_of(result: list[dict[str, Any]]) -> float | None:
    return float(result[0]["value"][1]) if len(result) == 1 else None


def judge_script(request: JudgeRequest) -> JudgeAnswer | str:
    """GOOD answers pass (90), BAD ones fail (20), FAIL-ME makes the judge call fail (HTTP 400)."""
    answer = request.response_text or ""
    if "FAIL-ME" in answer:
        return JudgeAnswer(status=400)
    score = 90 if "GOOD" in answer else 20
    return json.dumps({"score": score, "explanation": "scripted"})


def batch() -> Any:
    """Four GenAI spans, one trace each: two judged pass, one fail, one judge error."""
    return request(genai_span("GOOD one"), genai_span("GOOD two"), genai_span("BAD"), genai_span("FAIL-ME"))


def metric_totals(text: str) -> dict[str, float]:
    """Sum of the samples of each metric name in a /metrics text (labels ignored)."""
    totals: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name_and_labels, value = line.rsplit(" ", 1)
            name = name_and_labels.split("{", 1)[0]
            totals[name] = totals.get(name, 0.0) + float(value)
    return totals


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.mark.slow
async def test_live_prometheus_scrapes_otel_judge_and_evaluates_the_rules(
    sink: SpanSink, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """A real Prometheus scrapes otel-judge's /metrics while it judges two identical batches; the
    recording rules then give the batches' coverage, judge error share and (with evaluation metrics)
    mean score and pass rate; every rule evaluates without error; every dashboard query runs."""
    tool("prometheus")
    async with FakeJudge(judge_script) as judge:
        config = pipeline_config(
            sink,
            judge,
            judge={"timeout": "60s", "max_hold": "60s", "retry_on_failure": {"enabled": False}},
            outputs={"metrics": {"otlp": False}},
            service={"health": {"endpoint": "127.0.0.1:0"}},
        )
        async with running(config) as pipeline:
            client = RawClient(pipeline.grpc_port or 0)
            try:
                # Batch 1 is complete before Prometheus starts, so every series' first sample holds one
                # whole batch and the rates over both scrapes are exactly batch 2's.
                await client.traces(batch())
                await sink.wait_for_spans(4, timeout=60)
                async with PrometheusServer(tmp_path, f"127.0.0.1:{pipeline.health_port}") as prometheus:

                    async def scraped_batch_one() -> bool:
                        return value_of(await prometheus.query("sum(otel_judge_evaluation_status_total)")) == 4

                    await prometheus.wait_until(scraped_batch_one, "batch 1 was not scraped")
                    await client.traces(batch())
                    await sink.wait_for_spans(8, timeout=60)
                    async with http.get(f"http://127.0.0.1:{pipeline.health_port}/metrics") as response:
                        totals = metric_totals(await response.text())

                    calls = pipeline.settings.telemetry.series("otel_judge.judge.calls")
                    failed_calls = sum(v for key, v in calls.items() if dict(key).get("outcome") != "ok")
                    expected = {
                        "otel_judge:evaluation_coverage:ratio5m": 3 / 4,
                        "otel_judge:judge_calls:error_ratio5m": failed_calls / sum(calls.values()),
                    }
                    expected["otel_judge:evaluation_score:mean1h"] = (
                        totals["otel_judge_evaluation_score_sum"] / totals["otel_judge_evaluation_score_count"]
                    )
                    expected["otel_judge:evaluation_pass:ratio1h"] = 2 / 3
                    got: dict[str, float | None] = {}

                    async def rules_caught_up() -> bool:
                        for name in expected:
                            got[name] = value_of(await prometheus.query(name))
                        return all(
                            got[name] is not None and math.isclose(got[name] or 0.0, want, abs_tol=1e-9)
                            for name, want in expected.items()
                        )

                    await prometheus.wait_until(
                        rules_caught_up, lambda: f"recording rules never reached {expected}: {got}"
                    )
                    p95 = value_of(await prometheus.query("otel_judge:judge_duration_seconds:p95_5m"))
                    rules = (await prometheus.api("rules"))["data"]["groups"]
                    dashboard_results = {
                        expr: await prometheus.api("query", query=expr) for expr in dashboard_queries()
                    }
            finally:
                await client.close()

    assert p95 is not None and 0 < p95 <= 30
    unhealthy = [(r["name"], r.get("lastError")) for g in rules for r in g["rules"] if r["health"] != "ok"]
    assert unhealthy == []
    assert sum(len(g["rules"]) for g in rules) == len(
        [r for g in yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"] for r in g["rules"]]
    )
    failed = {expr: body for expr, body in dashboard_results.items() if body["status"] != "success"}
    assert failed == {}


# --------------------------------------------------------------------------- dashboard queries

# Grafana's variables, as a live query would see them.
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "1h",
    "${__range}": "1h",
    "$evaluator": ".*",
    "$model": ".*",
    "$route": ".*",
    "$prompt_version": ".*",
    "$service": ".*",
}


def dashboard_queries() -> list[str]:
    """Every PromQL expression of the dashboard, with Grafana's variables replaced."""
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", []) if t.get("expr")]
    out = []
    for expr in exprs:
        substituted = expr
        for variable in sorted(GRAFANA_VARIABLES, key=len, reverse=True):
            substituted = substituted.replace(variable, GRAFANA_VARIABLES[variable])
        out.append(substituted)
    return out


def test_dashboard_queries_have_no_unknown_grafana_variables() -> None:
    """After substitution no `$` is left: each variable a query uses is one the dashboard defines."""
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    defined = {f"${v['name']}" for v in dashboard["templating"]["list"]}
    used_custom = {v for v in GRAFANA_VARIABLES if not v.startswith(("$__", "${__"))}

    leftovers = [expr for expr in dashboard_queries() if "$" in expr]

    assert leftovers == []
    assert used_custom - {"$evaluator"} <= defined | {"$evaluator"}
    assert "$evaluator" in defined


def test_instrument_names_used_by_the_rules_are_declared() -> None:
    """The metric families the rules are built on are declared in telemetry.INSTRUMENTS."""
    families = {prometheus_name(i) for i in INSTRUMENTS}

    assert {
        "otel_judge_evaluation_score",
        "otel_judge_evaluation_passed_total",
        "otel_judge_judge_calls_total",
        "otel_judge_judge_duration_seconds",
        "otel_judge_evaluation_status_total",
        "otel_judge_quality_regression",
    } <= families
