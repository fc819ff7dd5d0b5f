"""``otel-judge report``: the terminal table (hand-checked numbers), the HTML page, the command."""

from __future__ import annotations

import asyncio
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from otel_judge.cli import main
from otel_judge.component import Settings
from otel_judge.config import StoreConfig, validate_config
from otel_judge.quality.report import build_report, render_table, summarize
from otel_judge.quality.store import QualityStore, stored_evaluations
from tests.quality_data import HOUR, NOW, S, quality_store, record, stream

__all__ = ["quality_store"]

VOID = {"meta", "link", "br", "hr", "img", "input"}


class _Checker(HTMLParser):
    """Fails on a closing tag that does not match the open one; records every tag and its classes."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.tags: list[str] = []
        self.classes: list[str] = []
        self.errors: list[str] = []
        self.doctype = False

    def handle_decl(self, decl: str) -> None:
        self.doctype = decl.lower() == "doctype html"

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.classes += [v or "" for k, v in attrs if k == "class"]
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:]}")
        else:
            self.stack.pop()


def check_html(page: str) -> _Checker:
    checker = _Checker()
    checker.feed(page)
    checker.close()
    assert checker.doctype and not checker.errors and checker.stack == []
    return checker


def test_table_has_weighted_mean_ci_pass_rate_and_trend() -> None:
    """Three scores now (60, 70, and 80 sampled at 50%: weight 2) -> weighted mean 72.5, n 3; the hour
    before averaged 50 -> trend +22.5 (not marked: effective n 2.7 is too few for p < 0.05); pass rate
    2 of 4 by weight."""
    rows = [
        row
        for r in (
            record(NOW - 50 * 60 * S, 60, slices={"model": "m1"}, passed=False),
            record(NOW - 40 * 60 * S, 70, slices={"model": "m1"}, passed=False),
            record(NOW - 30 * 60 * S, 80, slices={"model": "m1"}, probability=0.5, passed=True),
            record(NOW - 90 * 60 * S, 49, slices={"model": "m1"}),
            record(NOW - 80 * 60 * S, 50, slices={"model": "m1"}),
            record(NOW - 70 * 60 * S, 51, slices={"model": "m1"}),
        )
        for row in stored_evaluations(r)
    ]

    (summary,) = summarize(rows, by=["model"], now_ns=NOW, window=3600)
    table = render_table(rows, by=["model"], now_ns=NOW, window=3600)

    assert summary.current.n == 3 and summary.current.mean == pytest.approx(72.5)
    assert summary.current.pass_rate == pytest.approx(0.5)
    assert summary.trend == pytest.approx(22.5)
    header, rule, line, legend = table.splitlines()
    assert header.split() == ["evaluator", "model", "n", "mean", "95%", "CI", "pass", "trend"]
    assert set(rule) <= {"-", " "}
    ci_low, ci_high = summary.current.ci_low, summary.current.ci_high
    assert ci_low is not None and ci_high is not None
    assert line.split() == [
        "quality", "m1", "3", "72.5", f"[{ci_low:.1f},", f"{ci_high:.1f}]", "50%", "+22.5",
    ]  # fmt: skip
    assert legend.startswith("trend: mean of the last 1h minus the 1h before")


@pytest.mark.parametrize(
    ("by", "expected_groups"),
    [
        (None, {("quality", ("m1", "/a")), ("quality", ("m2", "/a")), ("quality", ("m2", "-"))}),
        (["route"], {("quality", ("/a",)), ("quality", ("-",))}),
        ([], {("quality", ())}),
    ],
    ids=["every-slice", "one-slice", "no-slice"],
)
def test_groups_follow_by_and_missing_values_show_as_dash(
    by: list[str] | None, expected_groups: set[tuple[str, tuple[str, ...]]]
) -> None:
    """Without --by every slice name in the rows groups; a row without a value shows '-'."""
    rows = [
        row
        for r in (
            record(NOW - 60 * S, 70, slices={"model": "m1", "route": "/a"}),
            record(NOW - 60 * S, 70, slices={"model": "m2", "route": "/a"}),
            record(NOW - 60 * S, 70, slices={"model": "m2"}),
        )
        for row in stored_evaluations(r)
    ]

    summaries = summarize(rows, by=by)

    assert {(s.score_key, tuple(s.slice.values())) for s in summaries} == expected_groups


def test_an_empty_table_says_so() -> None:
    """No rows in the window: one explanatory line, no table."""
    assert render_table([], window=3600) == "no scored evaluations in the last 1h\n"


async def test_html_report_plots_each_slice_with_alert_markers(quality_store: QualityStore) -> None:
    """The page is valid, self-contained HTML (no scripts, no external resources) with the table, one
    SVG plot per evaluator and slice group, and a firing marker where the detector finds the drop of
    route /support; the route that held steady has no marker."""
    rng = np.random.default_rng(31)
    for route, after in (("/support", 52), ("/search", 70)):
        slices = {"route": route, "model": "m1"}
        await quality_store.insert(
            stream(rng, 300, NOW - 7 * HOUR, NOW - HOUR, 70, slices=slices)
            + stream(rng, 300, NOW - HOUR, NOW, after, slices=slices)
        )
    config = validate_config(
        {
            "exporters": {"debug": {}},
            "quality": {
                "slices": {"model": "gen_ai.response.model", "route": "root.http.route"},
                "regression": {"current_window": "1h", "baseline_window": "6h", "interval": "5m"},
            },
        }
    )

    report = await build_report(config, quality_store, now_ns=NOW, window=3600, by=["route"], with_html=True)

    assert report.html is not None
    checker = check_html(report.html)
    assert "script" not in checker.tags and "http://" not in report.html.replace("http://www.w3.org/2000/svg", "")
    assert checker.tags.count("svg") == 2
    sections = report.html.split("<h3>")[1:]
    support = next(s for s in sections if s.startswith("route=/support"))
    search = next(s for s in sections if s.startswith("route=/search"))
    assert 'class="alert firing"' in support and "alert firing" not in search
    assert "/support" in report.table and "/search" in report.table
    assert "[FIRING] quality on route=/support" in report.html


def _write_store(path: Path, records: list[object]) -> None:
    async def insert() -> None:
        store = QualityStore(StoreConfig(url=f"sqlite:///{path}"), Settings())
        await store.start(retention_task=False)
        await store.insert(records)  # type: ignore[arg-type]
        await store.shutdown(time.monotonic() + 5)

    asyncio.run(insert())


def test_report_command_prints_the_table_and_writes_the_page(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """otel-judge report --config --window --by --evaluator --html: the table on stdout (slices
    included), the page written; exit 0."""
    now = time.time_ns()
    rng = np.random.default_rng(37)
    db = tmp_path / "quality.db"
    _write_store(db, stream(rng, 40, now - 2 * HOUR, now - 60 * S, 70, slices={"model": "small", "route": "/a"}))
    config = tmp_path / "config.yaml"
    config.write_text(f"exporters:\n  debug: {{}}\nstore:\n  url: sqlite:///{db}\n")
    page = tmp_path / "report.html"

    code = main(
        ["report", "-c", str(config), "--window", "1h", "--by", "model", "--evaluator", "quality", "--html", str(page)]
    )

    out = capsys.readouterr().out
    assert code == 0
    assert out.splitlines()[0].split()[:2] == ["evaluator", "model"]
    assert "small" in out and "quality" in out
    check_html(page.read_text())


@pytest.mark.parametrize(
    ("config_text", "args", "code", "message"),
    [
        ("exporters:\n  debug: {}\n", [], 2, "store: not configured"),
        ("exporters:\n  debug: {}\nstore:\n  url: sqlite:///{missing}\n", [], 1, "no such file"),
        ("exporters:\n  debug: {}\nstore:\n  url: sqlite:///{db}\n", ["--by", "colour"], 2, "--by: colour"),
        ("exporters:\n  debug: {}\nstore:\n  url: sqlite:///{db}\n", ["--window", "soon"], 2, "--window"),
    ],
    ids=["no-store", "missing-file", "unknown-slice", "bad-window"],
)
def test_report_command_errors_are_clear(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], *, config_text: str, args: list[str], code: int, message: str
) -> None:
    """No store, a missing SQLite file, an unknown --by slice or a bad --window: a one-line error."""
    db = tmp_path / "quality.db"
    _write_store(db, [])
    config = tmp_path / "config.yaml"
    config.write_text(config_text.replace("{db}", str(db)).replace("{missing}", str(tmp_path / "nope.db")))

    result = main(["report", "-c", str(config), *args])

    assert result == code
    assert message in capsys.readouterr().err
