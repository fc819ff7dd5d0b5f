"""The Grafana dashboard and the Prometheus rules use only metrics otel-judge really exports.

The exported names are derived from ``telemetry.INSTRUMENTS`` with ``prometheus_name()`` (what
/metrics serves): counters end in ``_total``, histograms have ``_bucket``, ``_sum`` and ``_count``
series. Metric names are parsed out of every PromQL expression; the rules may also use the names
their own recording rules define. tests/test_prometheus.py runs the same expressions on a live
Prometheus.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from otel_judge.telemetry import INSTRUMENTS, prometheus_name

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy" / "grafana" / "otel-judge-dashboard.json"
RULES = ROOT / "deploy" / "prometheus" / "otel-judge-rules.yaml"

KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right"}
    | {"inf", "nan", "Inf", "NaN", "atan2", "start", "end"}
)


def exported_series() -> set[str]:
    """Every series name /metrics can serve."""
    names: set[str] = set()
    for instrument in INSTRUMENTS:
        name = prometheus_name(instrument)
        if instrument.kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        else:
            names.add(name)
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, keywords, labels and variables removed)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range and subquery windows
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\$\{[^}]*\}|\$\w+", " ", text)  # Grafana variables
    text = re.sub(r"\boffset\s+-?\w+", " ", text)
    text = re.sub(r"(?<![\w:])\d+(?:\.\d+)?(?:[eE][-+]?\d+)?", " ", text)  # numbers
    tokens = re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*(?:\s*\()?", text)
    return {t for t in tokens if not t.endswith("(") and t not in KEYWORDS}


def dashboard_exprs() -> list[tuple[str, str]]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        if target.get("expr")
    ]


def rules() -> list[dict[str, Any]]:
    data = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in data["groups"] for rule in group["rules"]]


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        pytest.param("rate(otel_judge_a_total[5m])", {"otel_judge_a_total"}, id="function-and-range"),
        pytest.param(
            'sum by (le, route) (rate(x_bucket{route=~"$route", a="b(c)"}[$__rate_interval]))',
            {"x_bucket"},
            id="by-matchers-variables",
        ),
        pytest.param("a:b:c offset 1d - a:b:c > 0.1 and on (x) y >= 30", {"a:b:c", "y"}, id="recorded-offset"),
        pytest.param("histogram_quantile(0.95, sum by (le) (rate(h_bucket[1m])))", {"h_bucket"}, id="quantile"),
        pytest.param("x / ignoring (status) group_left sum(y) * 1e-6 or vector(0)", {"x", "y"}, id="group-left"),
        pytest.param("count(max by (a) (g) == 1)", {"g"}, id="nested-aggregations"),
    ],
)
def test_metric_name_parser(expr: str, expected: set[str]) -> None:
    """The parser finds the selected metrics and nothing else (so the checks below are not vacuous)."""
    assert metric_names(expr) == expected


def test_dashboard_queries_use_only_exported_metrics() -> None:
    """Every metric a dashboard query selects is one /metrics serves."""
    exported = exported_series()

    unknown = {title: sorted(metric_names(expr) - exported) for title, expr in dashboard_exprs()}

    assert {title: names for title, names in unknown.items() if names} == {}


def test_rules_use_only_exported_or_recorded_metrics() -> None:
    """Every metric a rule selects is exported by otel-judge or recorded by an earlier rule of the file."""
    known = exported_series() | {r["record"] for r in rules() if "record" in r}

    unknown = {r.get("record") or r["alert"]: sorted(metric_names(r["expr"]) - known) for r in rules()}

    assert {name: names for name, names in unknown.items() if names} == {}


def test_dashboard_covers_quality_cost_latency_and_statuses() -> None:
    """The dashboard shows quality per slice with sample sizes, pass rate, judge cost and latency, and statuses."""
    used = set().union(*(metric_names(expr) for _, expr in dashboard_exprs()))

    assert {
        "otel_judge_evaluation_score_sum",
        "otel_judge_evaluation_score_count",
        "otel_judge_evaluation_passed_total",
        "otel_judge_judge_cost_total",
        "otel_judge_evaluation_cost_total",
        "otel_judge_judge_duration_seconds_bucket",
        "otel_judge_evaluation_status_total",
    } <= used


def test_dashboard_is_importable_json() -> None:
    """Unique panel ids, a uid, every query on the templated Prometheus data source, panels within 24 columns."""
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    panels = dashboard["panels"]
    ids = [p["id"] for p in panels]

    assert dashboard["uid"] and len(ids) == len(set(ids))
    assert all(p["gridPos"]["x"] + p["gridPos"]["w"] <= 24 for p in panels)
    assert all(
        t["datasource"] == {"type": "prometheus", "uid": "${datasource}"} for p in panels for t in p.get("targets", [])
    )


# --------------------------------------------------------------------------- docs/alerting.md

ALERTING_DOC = ROOT / "docs" / "alerting.md"


def test_alerting_doc_describes_every_rule() -> None:
    """docs/alerting.md names every recording rule and every alert of the rules file."""
    doc = ALERTING_DOC.read_text(encoding="utf-8")

    missing = [r.get("record") or r["alert"] for r in rules() if f"`{r.get('record') or r['alert']}`" not in doc]

    assert missing == []


def test_trace_queries_use_the_attribute_names_otel_judge_writes() -> None:
    """Every otel-judge attribute in the doc's TraceQL, Jaeger tags and span-metrics dimensions is a name
    from semconv.py, and every status value is an EvaluationStatus."""
    from otel_judge import semconv
    from otel_judge.model import EvaluationStatus

    doc = ALERTING_DOC.read_text(encoding="utf-8")
    written = {v for k, v in vars(semconv).items() if k.isupper() and isinstance(v, str)}
    written |= {semconv.score_value_key("quality"), semconv.score_label_key("quality")}
    written |= {semconv.explanation_key("quality")}
    used = set(re.findall(r"\b((?:otel_judge|gen_ai\.evaluation)\.[a-z_.]*[a-z_])\b", doc))
    used = {name for name in used if not name.startswith("gen_ai.evaluation.<")}
    statuses = set(re.findall(r'evaluation\.status\s*=~?\s*"([a-z_|]+)"', doc))
    statuses |= set(re.findall(r"evaluation\.status=([a-z_]+)", doc))

    assert used - written == set()
    assert {semconv.score_value_key("quality"), semconv.OTEL_JUDGE_EVALUATION_SAME_FAMILY} <= used
    assert {s for group in statuses for s in group.split("|")} - {s.value for s in EvaluationStatus} == set()
