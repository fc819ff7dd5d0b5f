"""``otel-judge calibrate``: agreement with human labels on small files with hand-computed answers."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from otel_judge.cli import main
from otel_judge.component import Settings
from otel_judge.config import StoreConfig, validate_config
from otel_judge.model import EvaluationRecord
from otel_judge.quality.calibrate import LabelError, calibrate, judge_items, load_labels, match_stored, run_calibrate
from otel_judge.quality.store import QualityStore
from otel_judge.testing import FakeJudge, JudgeRequest
from tests.quality_data import NOW, S, record
from tests.test_report import check_html

# Five spans: human and judge scores on 1..100, the judged model, the response. By hand:
# judge ranks 2 1 4 3 5 against 1 2 3 4 5 -> sum d^2 = 4 -> Spearman 1 - 6*4/(5*24) = 0.8;
# 8 concordant, 2 discordant pairs -> Kendall (8-2)/10 = 0.6; MAE (10+10+10+10+0)/5 = 8;
# response lengths 5 1 4 2 3 -> ranks against the judge's: sum d^2 = 14 -> length rho 1 - 84/120 = 0.3;
# judge - human: +10 +10 on the two gpt-4o answers (judge openai/gpt-4o-mini: same family),
# -10 -10 0 on the three claude ones -> gap 10 - (-20/3) = 16.667; 5 bins of the scale agree -> kappa 1.
SPANS = [
    ("0a" * 16, "1b" * 8, 10, 20, "gpt-4o", "aaaaa"),
    ("0a" * 16, "2b" * 8, 20, 10, "claude-3-5-sonnet", "a"),
    ("0c" * 16, "3b" * 8, 30, 40, "gpt-4o", "aaaa"),
    ("0c" * 16, "4b" * 8, 40, 30, "claude-3-5-sonnet", "aa"),
    ("0d" * 16, "5b" * 8, 50, 50, "claude-3-5-sonnet", "aaa"),
]


def span_records() -> list[EvaluationRecord]:
    return [
        record(
            NOW - i * S,
            judge,
            trace_id=bytes.fromhex(t),
            span_id=bytes.fromhex(s),
            judged_model=model,
            judge_model="openai/gpt-4o-mini",
        )
        for i, (t, s, _, judge, model, _) in enumerate(SPANS)
    ]


def write_store(path: Path, records: list[EvaluationRecord]) -> str:
    url = f"sqlite:///{path}"

    async def insert() -> None:
        store = QualityStore(StoreConfig(url=url), Settings())
        await store.start(retention_task=False)
        await store.insert(records)
        await store.shutdown(time.monotonic() + 5)

    asyncio.run(insert())
    return url


def scores_csv(path: Path) -> Path:
    lines = ["trace_id,span_id,human_score,completion"]
    lines += [f"{t},{s},{human},{text}" for t, s, human, _, _, text in SPANS]
    lines.append(f"{'ff' * 16},{'ee' * 8},50,zzz")  # a span the store does not know
    path.write_text("\n".join(lines) + "\n")
    return path


def test_scores_keyed_by_span_agree_as_computed_by_hand(tmp_path: Path) -> None:
    """CSV labels matched by trace/span id to stored scores: Spearman 0.8, Kendall 0.6, MAE 8, kappa 1
    on binned scores, the length probe 0.3, the same-family gap +16.7 points; one label unmatched."""
    url = write_store(tmp_path / "q.db", span_records())
    config = validate_config({"exporters": {"debug": {}}, "store": {"url": url}})

    result = run_calibrate(config, scores_csv(tmp_path / "labels.csv"))

    assert (result.score_key, result.labels, result.pairs, result.unmatched) == ("quality", 6, 5, 1)
    assert result.spearman is not None and result.spearman[0] == pytest.approx(0.8)
    assert result.kendall is not None and result.kendall[0] == pytest.approx(0.6)
    assert 0 < result.spearman[1] < 1 and 0 < result.kendall[1] < 1
    assert result.mae == pytest.approx(8)
    assert result.kappa_basis == "scores in 5 bins" and result.kappa == pytest.approx(1.0)
    assert result.length_rho is not None and result.length_rho[0] == pytest.approx(0.3)
    family = result.family
    assert family is not None and family["judge_family"] == ["openai"]
    assert (family["same"]["n"], family["other"]["n"]) == (2, 3)
    assert family["same"]["mean"] == pytest.approx(10) and family["gap"] == pytest.approx(50 / 3)


# Ten items with ordinal labels bad < ok < good (judge values 0, 1, 2). Confusion, human by judge:
#   bad [2 1 0] / ok [1 2 1] / good [0 1 2]; rows and columns 3 4 3.
# Plain kappa: po 0.6, pe 0.34 -> 0.26/0.66 = 0.3939. Linear: observed disagreement 4*0.5/10 = 0.2,
# expected (48*0.5 + 18*1)/100 = 0.42 -> 1 - 0.2/0.42 = 0.5238. Quadratic: 0.1 vs 0.30 -> 0.6667.
ORDINAL = [("bad", "bad")] * 2 + [("bad", "ok"), ("ok", "bad")] + [("ok", "ok")] * 2
ORDINAL += [("ok", "good"), ("good", "ok")] + [("good", "good")] * 2
VALUES = {"bad": 0.0, "ok": 1.0, "good": 2.0}


def test_ordinal_labels_give_the_hand_computed_kappas(tmp_path: Path) -> None:
    """JSONL labels against a classify-style evaluator: kappa 0.394, linear 0.524, quadratic 0.667, and
    the confusion matrix in the judge's order of the labels."""
    records = [
        record(NOW - i * S, VALUES[judge], evaluator="tone", label=judge, low=0, high=2)
        for i, (_, judge) in enumerate(ORDINAL)
    ]
    lines = [
        json.dumps({"trace_id": r.trace_id.hex(), "span_id": r.span_id.hex(), "label": human})
        for r, (human, _) in zip(records, ORDINAL, strict=True)
    ]
    labels = tmp_path / "labels.jsonl"
    labels.write_text("\n".join(lines) + "\n")
    config = validate_config({"exporters": {"debug": {}}, "store": {"url": write_store(tmp_path / "q.db", records)}})

    result = run_calibrate(config, labels, evaluator="tone")

    assert result.kappa_basis == "labels" and result.categories == ["bad", "ok", "good"]
    assert result.confusion == [[2, 1, 0], [1, 2, 1], [0, 1, 2]]
    assert result.kappa == pytest.approx(26 / 66)
    assert result.kappa_linear == pytest.approx(11 / 21)
    assert result.kappa_quadratic == pytest.approx(2 / 3)
    assert result.spearman is None and result.mae is None  # labels only: no human scores


# Ten prompt+completion items judged now; the fake judge reads the score from the response text.
# Human by judge: pass/pass 4, fail/fail 3, pass/fail 2, fail/pass 1 -> po 0.7; human pass 6/10,
# judge pass 5/10 -> pe 0.6*0.5 + 0.4*0.5 = 0.5 -> kappa (0.7-0.5)/0.5 = 0.4.
CONTENT = [("pass", 80)] * 4 + [("fail", 20)] * 3 + [("pass", 30)] * 2 + [("fail", 90)]


def scored_by_text(request: JudgeRequest) -> str:
    match = re.search(r"score=(\d+)", request.response_text or "")
    return json.dumps({"score": int(match.group(1)) if match else 1, "explanation": "as written"})


async def test_prompt_and_completion_labels_are_judged_with_the_configured_evaluator(tmp_path: Path) -> None:
    """Items without ids go to the configured judge (a real HTTP fake): each completion is judged once,
    fenced in the prompt; pass/fail agreement gives kappa 0.4 and the matrix [[3, 1], [2, 4]]."""
    labels = tmp_path / "labels.jsonl"
    labels.write_text(
        "".join(
            json.dumps({"prompt": f"question {i}", "completion": f"answer {i} score={judge}", "human_label": human})
            + "\n"
            for i, (human, judge) in enumerate(CONTENT)
        )
    )
    async with FakeJudge(scored_by_text) as fake:
        config = validate_config(
            {
                "exporters": {"debug": {}},
                "judge": {"model": fake.model, "api_base": fake.api_base, "api_key": "sk-test"},
                "evaluators": [{"name": "quality", "type": "score", "threshold": 50}],
            }
        )
        pairs, failed = await judge_items(load_labels(labels), config, None)
        requests = list(fake.requests)

    result = calibrate(pairs)

    assert failed == [] and len(pairs) == 10 and len(requests) == 10
    assert sorted(r.response_text or "" for r in requests) == sorted(
        f"answer {i} score={j}" for i, (_, j) in enumerate(CONTENT)
    )
    assert result.categories == ["fail", "pass"]
    assert result.confusion == [[3, 1], [2, 4]]
    assert result.kappa == pytest.approx(0.4)
    assert result.kappa_linear == pytest.approx(0.4) and result.kappa_quadratic == pytest.approx(0.4)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("a.csv", "trace_id,span_id\nab,cd\n", "a.csv:2: neither human_score nor human_label"),
        ("b.csv", "prompt,human_score\nhi,3\n", "b.csv:2: needs trace_id and span_id, or prompt and completion"),
        ("c.jsonl", '{"trace_id": "zz", "span_id": "01", "score": 1}\n', "c.jsonl:1: trace_id 'zz' is not hex"),
        ("d.jsonl", '{"prompt": "p", "completion": "c", "score": "high"}\n', "d.jsonl:1: human_score 'high'"),
        ("e.jsonl", "\n", "e.jsonl: no labels"),
        ("f.jsonl", "[1]\n", "f.jsonl:1: each line must be a JSON object"),
    ],
    ids=["no-human", "no-key", "bad-hex", "bad-score", "empty", "not-object"],
)
def test_bad_label_files_name_the_line(tmp_path: Path, name: str, text: str, message: str) -> None:
    """A label file that cannot be used: LabelError with the file, the line and what is wrong."""
    path = tmp_path / name
    path.write_text(text)

    with pytest.raises(LabelError) as caught:
        load_labels(path)

    assert str(caught.value).endswith(message) or message in str(caught.value)


def test_match_picks_the_newest_score_of_a_span_and_needs_a_key_when_ambiguous() -> None:
    """Two evaluations of one span: the newest is compared. A span with two score keys and no
    --evaluator stays unmatched rather than guessing."""
    from tests.quality_data import as_rows

    trace, span = bytes.fromhex("01" * 16), bytes.fromhex("02" * 8)
    rows = as_rows(
        [
            record(NOW - 10 * S, 40, trace_id=trace, span_id=span),
            record(NOW, 60, trace_id=trace, span_id=span),
            record(NOW, 5, evaluator="tone", trace_id=trace, span_id=span, low=0, high=10),
        ]
    )
    (item,) = [i for i in _items(trace.hex(), span.hex())]

    pairs, _ = match_stored([item], rows, "quality")
    ambiguous, unmatched = match_stored([item], rows, None)

    assert [p.value for p in pairs] == [60]
    assert ambiguous == [] and unmatched == [item]


def _items(trace: str, span: str) -> list[Any]:
    from otel_judge.quality.calibrate import LabelItem

    return [LabelItem(line=2, human_score=50, trace_id=trace, span_id=span)]


def test_calibrate_command_prints_the_table_json_and_html(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """otel-judge calibrate LABELS -c CONFIG: the table (exit 0); --json the numbers; --html a valid
    page; a bad label file exits 2 with the line named."""
    url = write_store(tmp_path / "q.db", span_records())
    config = tmp_path / "config.yaml"
    config.write_text(f"exporters:\n  debug: {{}}\nstore:\n  url: {url}\n")
    labels = scores_csv(tmp_path / "labels.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("trace_id,span_id\nab,cd\n")
    page = tmp_path / "calibration.html"

    table_code = main(["calibrate", str(labels), "-c", str(config), "--html", str(page)])
    table = capsys.readouterr().out
    json_code = main(["calibrate", str(labels), "-c", str(config), "--json"])
    data = json.loads(capsys.readouterr().out)
    bad_code = main(["calibrate", str(bad), "-c", str(config)])
    error = capsys.readouterr().err

    assert table_code == json_code == 0 and bad_code == 2
    assert "Spearman rho     +0.800" in table and "Kendall tau      +0.600" in table
    assert "same family (openai)" in table and "1 without a stored score" in table
    assert data["spearman"]["rho"] == pytest.approx(0.8) and data["mae"] == pytest.approx(8)
    check_html(page.read_text())
    assert "bad.csv:2: neither human_score nor human_label" in error
