"""``otel-judge calibrate LABELS``: how well the judge agrees with human labels, and two bias probes.

A label file is CSV (with a header) or JSON lines; each item has a human ``human_score`` (or
``score``) and/or ``human_label`` (or ``label``), and either

* ``trace_id`` + ``span_id`` (hex): matched to the judge's stored score of that span (the store of
  the config; the newest evaluation wins), or
* ``prompt`` + ``completion``: judged now by the configured evaluator (the judge model of the config;
  prompt and completion are not stored, so they cannot be matched against the store).

Optional per item: ``evaluator`` (the score key to compare; else ``--evaluator``, else the only one
there is), ``completion`` (its length feeds the length probe), ``model`` (the judged model, for the
same-family probe; stored rows carry their own), ``system`` (system instructions, when judging).

Agreement: Spearman's rho and Kendall's tau with p-values (scipy), the mean absolute error on the
judge's scale (human scores are mapped linearly from ``--human-scale``, default the judge's scale),
Cohen's kappa plain and weighted (linear, quadratic) with the confusion matrix. Kappa compares labels
when both sides have them (categories ordered by the judge's mean score per label), otherwise scores
binned into ``--bins`` equal-width bins of the scale. Bias probes: the rank correlation of the judge's
score (and of judge minus human) with the response length, and the judge-minus-human gap when the
judge and the judged model share a family (:func:`otel_judge.bias.same_family`) against when not.
"""

from __future__ import annotations

import asyncio
import csv
import html
import io
import json
import math
import statistics
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from otel_judge.bias import model_family, same_family
from otel_judge.component import Settings
from otel_judge.config import Config
from otel_judge.errors import ConfigError
from otel_judge.quality.model import StoredEvaluation
from otel_judge.quality.stats import cohen_kappa, confusion_matrix, estimate, welch_two_sided

__all__ = [
    "Calibration",
    "LabelError",
    "LabelItem",
    "Pair",
    "calibrate",
    "judge_items",
    "load_labels",
    "match_stored",
    "render_calibration",
    "render_calibration_html",
    "run_calibrate",
]


class LabelError(ValueError):
    """A label file that cannot be used; the message names the file and line."""


@dataclass(frozen=True, slots=True)
class LabelItem:
    """One human judgment from the label file."""

    line: int
    human_score: float | None = None
    human_label: str | None = None
    trace_id: str | None = None
    span_id: str | None = None
    prompt: str | None = None
    completion: str | None = None
    system: str | None = None
    model: str | None = None
    evaluator: str | None = None


@dataclass(frozen=True, slots=True)
class Pair:
    """A human judgment next to the judge's score of the same item."""

    item: LabelItem
    score_key: str
    value: float
    label: str | None
    low: float | None
    high: float | None
    judged_model: str | None = None
    judge_model: str | None = None


_ALIASES = {"score": "human_score", "label": "human_label", "judged_model": "model"}
_FIELDS = {"human_score", "human_label", "trace_id", "span_id", "prompt", "completion", "system", "model", "evaluator"}


def _item(raw: Mapping[str, Any], where: str, line: int) -> LabelItem:
    data: dict[str, Any] = {}
    for key, value in raw.items():
        name = _ALIASES.get(str(key).strip(), str(key).strip())
        if name in _FIELDS and value is not None and value != "":
            data[name] = value
    score: float | None = None
    if "human_score" in data:
        try:
            score = float(data["human_score"])
        except (TypeError, ValueError):
            raise LabelError(f"{where}:{line}: human_score {data['human_score']!r} is not a number") from None
        if not math.isfinite(score):
            raise LabelError(f"{where}:{line}: human_score must be finite")
    label = str(data["human_label"]) if "human_label" in data else None
    if score is None and label is None:
        raise LabelError(f"{where}:{line}: neither human_score nor human_label (columns: score/human_score, label)")
    keyed = "trace_id" in data and "span_id" in data
    content = "prompt" in data and "completion" in data
    if not keyed and not content:
        raise LabelError(f"{where}:{line}: needs trace_id and span_id, or prompt and completion")
    names = ("trace_id", "span_id", "prompt", "completion", "system", "model", "evaluator")
    texts = {k: str(data[k]) for k in names if k in data}
    for key in ("trace_id", "span_id"):
        if key in texts:
            texts[key] = texts[key].strip().lower()
            if not all(c in "0123456789abcdef" for c in texts[key]):
                raise LabelError(f"{where}:{line}: {key} {texts[key]!r} is not hex")
    return LabelItem(line=line, human_score=score, human_label=label, **texts)


def load_labels(path: str | Path) -> list[LabelItem]:
    """Read a CSV (header row) or JSON-lines label file; :class:`LabelError` names the bad line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise LabelError(f"{path}: {exc.strerror or exc}") from None
    items: list[LabelItem] = []
    if path.suffix.lower() in {".jsonl", ".ndjson", ".json"} or text.lstrip().startswith("{"):
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as exc:
                raise LabelError(f"{path}:{number}: not JSON: {exc}") from None
            if not isinstance(obj, dict):
                raise LabelError(f"{path}:{number}: each line must be a JSON object")
            items.append(_item(obj, str(path), number))
    else:
        reader = csv.DictReader(io.StringIO(text))
        for row in reader:
            items.append(_item(row, str(path), reader.line_num))
    if not items:
        raise LabelError(f"{path}: no labels")
    return items


# --------------------------------------------------------------------------- matching and judging


def match_stored(
    items: Sequence[LabelItem], rows: Sequence[StoredEvaluation], evaluator: str | None
) -> tuple[list[Pair], list[LabelItem]]:
    """Pair the trace/span-keyed items with stored scores (the newest of a span and score key);
    returns the pairs and the items that found no score."""
    newest: dict[tuple[str, str, str], StoredEvaluation] = {}
    for row in rows:
        if row.value is None:
            continue
        key = (row.trace_id, row.span_id, row.score_key)
        if key not in newest or newest[key].time_ns < row.time_ns:
            newest[key] = row
    keys_by_span: dict[tuple[str, str], set[str]] = defaultdict(set)
    for trace_id, span_id, score_key in newest:
        keys_by_span[(trace_id, span_id)].add(score_key)
    pairs: list[Pair] = []
    unmatched: list[LabelItem] = []
    for item in items:
        if item.trace_id is None or item.span_id is None:
            continue
        wanted = item.evaluator or evaluator
        available = keys_by_span.get((item.trace_id, item.span_id), set())
        if wanted is None and len(available) == 1:
            wanted = next(iter(available))
        found = newest.get((item.trace_id, item.span_id, wanted)) if wanted else None
        if found is None or found.value is None:
            unmatched.append(item)
            continue
        pairs.append(
            Pair(
                item,
                found.score_key,
                found.value,
                found.label,
                found.low,
                found.high,
                found.judged_model,
                found.judge_model,
            )
        )
    return pairs, unmatched


async def judge_items(
    items: Sequence[LabelItem], config: Config, evaluator: str | None, settings: Settings | None = None
) -> tuple[list[Pair], list[tuple[LabelItem, str]]]:
    """Judge the prompt+completion items with the configured evaluator (its judge model and settings);
    returns the pairs and the items the judge could not score, with why."""
    from otel_judge.evaluators import CHECK_TYPES, build_evaluator
    from otel_judge.judge import JudgeRouter, build_judge_client
    from otel_judge.model import Exchange, Message

    todo = [i for i in items if i.prompt is not None and i.completion is not None]
    if not todo:
        return [], []
    settings = settings or Settings()
    wanted = {i.evaluator or evaluator for i in todo}
    names = [e.name for e in config.evaluators]
    if None in wanted:
        if len(names) != 1:
            raise ConfigError([f"--evaluator: name one of the configured evaluators ({', '.join(names) or 'none'})"])
        wanted = {names[0]}
    routers: list[JudgeRouter] = []
    judge = JudgeRouter(config.judge, settings) if config.judge.model is not None else None
    if judge is not None:
        routers.append(judge)

    def panel_judge(target: Any) -> JudgeRouter:
        router = JudgeRouter(config.judge, settings, [build_judge_client(config.judge, settings, target)])
        routers.append(router)
        return router

    evaluators = {}
    for econfig in config.evaluators:
        owns = any(w == econfig.name or (w or "").startswith(econfig.name + ".") for w in wanted)
        if not owns:
            continue
        if judge is None and econfig.type not in CHECK_TYPES:
            raise ConfigError([f"judge.model: evaluator {econfig.name!r} needs a judge model"])
        evaluators[econfig.name] = build_evaluator(econfig, judge, panel_judge)
    missing = [w for w in wanted if w is not None and not any(w == n or w.startswith(n + ".") for n in evaluators)]
    if missing:
        raise ConfigError([f"evaluators: no evaluator {', '.join(sorted(missing))} (configured: {', '.join(names)})"])
    limit = asyncio.Semaphore(config.judge.max_concurrency)
    judge_model = judge.model if judge is not None else None

    async def one(item: LabelItem) -> Pair | tuple[LabelItem, str]:
        key = item.evaluator or evaluator or next(iter(wanted))
        assert key is not None
        name = next(n for n in evaluators if key == n or key.startswith(n + "."))
        exchange = Exchange(
            format="labels",
            system=item.system,
            messages=[Message("user", item.prompt)],
            completion=item.completion,
            response_model=item.model,
        )
        async with limit:
            try:
                scores = await evaluators[name].evaluate(exchange)
            except Exception as exc:  # a judge or parse error: reported per item, the rest go on
                return item, f"{type(exc).__name__}: {exc}"[:200]
        score = next((s for s in scores if s.key == key), None)
        if score is None:
            return item, f"the evaluator gave no score {key!r}"
        return Pair(item, key, score.value, score.label, score.low, score.high, item.model, judge_model)

    try:
        for router in routers:
            await router.start()
        results = await asyncio.gather(*(one(i) for i in todo))
    finally:
        for router in routers:
            await router.shutdown(settings.clock.monotonic() + 5)
    pairs = [r for r in results if isinstance(r, Pair)]
    failed = [r for r in results if not isinstance(r, Pair)]
    return pairs, failed


# --------------------------------------------------------------------------- the statistics


@dataclass(slots=True)
class Calibration:
    """What ``calibrate`` reports. Correlations and MAE need human scores; kappa needs categories."""

    score_key: str
    labels: int
    pairs: int
    unmatched: int = 0
    failed: int = 0
    spearman: tuple[float, float] | None = None  # (rho, p)
    kendall: tuple[float, float] | None = None  # (tau, p)
    mae: float | None = None  # on the judge's scale
    scale: tuple[float, float] | None = None  # the judge's (low, high)
    kappa: float | None = None
    kappa_linear: float | None = None
    kappa_quadratic: float | None = None
    kappa_basis: str | None = None  # labels | bins
    categories: list[str] = field(default_factory=list)
    confusion: list[list[int]] = field(default_factory=list)  # rows: human, columns: judge
    length_rho: tuple[float, float, int] | None = None  # Spearman(judge score, response length): rho, p, n
    length_residual_rho: tuple[float, float, int] | None = None  # Spearman(judge - human, length)
    family: dict[str, Any] | None = None  # the same-family probe
    points: list[tuple[float, float]] = field(default_factory=list)  # (human on the judge's scale, judge)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "score_key": self.score_key,
            "labels": self.labels,
            "pairs": self.pairs,
            "unmatched": self.unmatched,
            "failed": self.failed,
            "spearman": None if self.spearman is None else {"rho": self.spearman[0], "p_value": self.spearman[1]},
            "kendall": None if self.kendall is None else {"tau": self.kendall[0], "p_value": self.kendall[1]},
            "mae": self.mae,
            "kappa": self.kappa,
            "kappa_linear": self.kappa_linear,
            "kappa_quadratic": self.kappa_quadratic,
            "kappa_basis": self.kappa_basis,
            "categories": self.categories,
            "confusion": self.confusion,
            "length": None
            if self.length_rho is None
            else dict(zip(("rho", "p_value", "n"), self.length_rho, strict=True)),
            "family": self.family,
            "notes": self.notes,
        }


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _spearman(a: Sequence[float], b: Sequence[float]) -> tuple[float, float] | None:
    from scipy import stats

    if len(a) < 3 or len(set(a)) < 2 or len(set(b)) < 2:
        return None
    result = stats.spearmanr(a, b)
    rho, p = _finite(float(result.statistic)), _finite(float(result.pvalue))
    return None if rho is None or p is None else (rho, p)


def _kendall(a: Sequence[float], b: Sequence[float]) -> tuple[float, float] | None:
    from scipy import stats

    if len(a) < 3 or len(set(a)) < 2 or len(set(b)) < 2:
        return None
    result = stats.kendalltau(a, b)
    tau, p = _finite(float(result.statistic)), _finite(float(result.pvalue))
    return None if tau is None or p is None else (tau, p)


def _label_order(pairs: Sequence[Pair]) -> list[str]:
    """Labels ordered by the judge's mean score given with them (then by name): ordinal for kappa."""
    values: dict[str, list[float]] = defaultdict(list)
    for p in pairs:
        if p.label is not None:
            values[p.label].append(p.value)
    human_only = {p.item.human_label for p in pairs if p.item.human_label is not None} - set(values)
    ordered = sorted(values, key=lambda lab: (statistics.fmean(values[lab]), lab))
    return ordered + sorted(h for h in human_only if h is not None)


def calibrate(
    pairs: Sequence[Pair],
    *,
    labels: int | None = None,
    unmatched: int = 0,
    failed: int = 0,
    human_scale: tuple[float, float] | None = None,
    bins: int = 5,
) -> Calibration:
    """The agreement statistics and bias probes of ``pairs`` (one score key)."""
    keys = {p.score_key for p in pairs}
    if len(keys) > 1:
        raise LabelError(f"labels compare with several score keys ({', '.join(sorted(keys))}); use --evaluator")
    key = next(iter(keys), "-")
    out = Calibration(key, labels if labels is not None else len(pairs), len(pairs), unmatched, failed)
    if not pairs:
        out.notes.append("no label matched a judge score")
        return out
    low = next((p.low for p in pairs if p.low is not None), None)
    high = next((p.high for p in pairs if p.high is not None), None)
    if low is None or high is None or low == high:
        low, high = min(p.value for p in pairs), max(p.value for p in pairs)
        out.notes.append("the judge's scale is unknown: its observed range is used")
    out.scale = (low, high)
    hlow, hhigh = human_scale if human_scale is not None else (low, high)

    def to_judge_scale(h: float) -> float:
        return low + (h - hlow) / (hhigh - hlow) * (high - low) if hhigh != hlow else h

    scored = [p for p in pairs if p.item.human_score is not None]
    human = [to_judge_scale(p.item.human_score) for p in scored if p.item.human_score is not None]
    judge = [p.value for p in scored]
    out.points = list(zip(human, judge, strict=True))
    if scored:
        out.spearman = _spearman(human, judge)
        out.kendall = _kendall(human, judge)
        out.mae = statistics.fmean(abs(h - j) for h, j in out.points)
        if human_scale is None and any(not min(low, high) <= h <= max(low, high) for h in human):
            out.notes.append("human scores fall outside the judge's scale: give --human-scale LOW,HIGH")
    # Kappa: labels when both sides have them, else scores binned on the scale.
    labelled = [p for p in pairs if p.item.human_label is not None and p.label is not None]
    if labelled:
        out.kappa_basis = "labels"
        out.categories = _label_order(labelled)
        human_cats = [str(p.item.human_label) for p in labelled]
        judge_cats = [str(p.label) for p in labelled]
    elif scored and bins >= 2:
        out.kappa_basis = f"scores in {bins} bins"

        def bin_of(v: float) -> str:
            frac = (v - low) / (high - low) if high != low else 0.0
            return str(min(max(int(frac * bins), 0), bins - 1) + 1)

        out.categories = [str(i) for i in range(1, bins + 1)]
        human_cats = [bin_of(h) for h in human]
        judge_cats = [bin_of(j) for j in judge]
    else:
        human_cats = judge_cats = []
    if human_cats:
        out.kappa = cohen_kappa(human_cats, judge_cats, out.categories)
        out.kappa_linear = cohen_kappa(human_cats, judge_cats, out.categories, "linear")
        out.kappa_quadratic = cohen_kappa(human_cats, judge_cats, out.categories, "quadratic")
        out.confusion = confusion_matrix(human_cats, judge_cats, out.categories)
    _length_probe(out, pairs, to_judge_scale)
    _family_probe(out, pairs, to_judge_scale)
    return out


def _length_probe(out: Calibration, pairs: Sequence[Pair], to_judge_scale: Any) -> None:
    with_text = [p for p in pairs if p.item.completion is not None]
    if len(with_text) < 3:
        out.notes.append("length probe: needs the completion text in the label file")
        return
    lengths = [float(len(p.item.completion or "")) for p in with_text]
    rho = _spearman([p.value for p in with_text], lengths)
    if rho is not None:
        out.length_rho = (rho[0], rho[1], len(with_text))
    both = [p for p in with_text if p.item.human_score is not None]
    if len(both) >= 3:
        residual = [p.value - to_judge_scale(p.item.human_score) for p in both]
        rho = _spearman(residual, [float(len(p.item.completion or "")) for p in both])
        if rho is not None:
            out.length_residual_rho = (rho[0], rho[1], len(both))


def _family_probe(out: Calibration, pairs: Sequence[Pair], to_judge_scale: Any) -> None:
    known = [p for p in pairs if p.judge_model and p.judged_model and model_family(p.judge_model)]
    if not known:
        out.notes.append("same-family probe: needs judge and judged models of known families")
        return
    use_human = all(p.item.human_score is not None for p in known)
    groups: dict[bool, list[float]] = {True: [], False: []}
    for p in known:
        gap = p.value - to_judge_scale(p.item.human_score) if use_human and p.item.human_score is not None else p.value
        groups[same_family(p.judge_model, p.judged_model)].append(gap)
    same, other = groups[True], groups[False]
    probe: dict[str, Any] = {
        "measure": "judge - human" if use_human else "judge score (no human scores: confounded by answer quality)",
        "judge_family": sorted({model_family(p.judge_model) for p in known if model_family(p.judge_model)}),
        "same": {"n": len(same), "mean": statistics.fmean(same) if same else None},
        "other": {"n": len(other), "mean": statistics.fmean(other) if other else None},
        "gap": None,
        "p_value": None,
    }
    if same and other:
        probe["gap"] = statistics.fmean(same) - statistics.fmean(other)
        probe["p_value"] = welch_two_sided(estimate(same), estimate(other))
    out.family = probe


# --------------------------------------------------------------------------- output


def _num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _p(value: float | None) -> str:
    return "-" if value is None else (f"{value:.2g}" if value >= 0.001 else "<0.001")


def render_calibration(c: Calibration) -> str:
    """The calibration as terminal text."""
    lines = [
        f"calibration of {c.score_key}: {c.labels} labels, {c.pairs} compared"
        + (f", {c.unmatched} without a stored score" if c.unmatched else "")
        + (f", {c.failed} not judged" if c.failed else ""),
        "",
        "agreement",
    ]
    n_scored = len(c.points)
    if c.spearman is not None:
        lines.append(f"  Spearman rho     {c.spearman[0]:+.3f}   p={_p(c.spearman[1])}   n={n_scored}")
    if c.kendall is not None:
        lines.append(f"  Kendall tau      {c.kendall[0]:+.3f}   p={_p(c.kendall[1])}")
    if c.mae is not None and c.scale is not None:
        width = abs(c.scale[1] - c.scale[0]) or 1.0
        scale = f"{c.scale[0]:g}..{c.scale[1]:g}"
        lines.append(f"  MAE              {c.mae:.3g}   ({c.mae / width:.1%} of the judge's scale {scale})")
    if c.kappa_basis is not None:
        lines.append(f"  Cohen's kappa    {_num(c.kappa)}   (on {c.kappa_basis})")
        lines.append(f"  weighted kappa   linear {_num(c.kappa_linear)}, quadratic {_num(c.kappa_quadratic)}")
    if c.confusion:
        width = max(6, *(len(x) for x in c.categories)) + 1
        lines += ["", "confusion matrix (rows: human, columns: judge)"]
        lines.append(" " * (width + 2) + "".join(cat.rjust(width) for cat in c.categories))
        for cat, row in zip(c.categories, c.confusion, strict=True):
            lines.append("  " + cat.ljust(width) + "".join(str(v).rjust(width) for v in row))
    lines += ["", "bias probes"]
    if c.length_rho is not None:
        rho, p, n = c.length_rho
        text = f"  length: Spearman(judge score, response length) {rho:+.3f} (p={_p(p)}, n={n})"
        if c.length_residual_rho is not None:
            rho2, p2, _ = c.length_residual_rho
            text += f"; of judge - human {rho2:+.3f} (p={_p(p2)})"
        lines.append(text)
    if c.family is not None:
        f = c.family
        same, other = f["same"], f["other"]
        lines.append(
            f"  same family ({', '.join(f['judge_family'])}): {f['measure']} = {_num(same['mean'])} on "
            f"{same['n']} same-family vs {_num(other['mean'])} on {other['n']} others; gap {_num(f['gap'])} "
            f"(p={_p(f['p_value'])})"
        )
    lines += [f"  note: {n}" for n in c.notes]
    return "\n".join(lines) + "\n"


def render_calibration_html(c: Calibration) -> str:
    """A self-contained page: the text report and a scatter plot of judge against human (inline SVG)."""
    e = html.escape
    size, pad = 360, 36
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" role="img">']
    if c.points and c.scale is not None:
        lo, hi = min(c.scale), max(c.scale)
        span = (hi - lo) or 1.0

        def at(v: float) -> float:
            return pad + (min(max(v, lo), hi) - lo) / span * (size - 2 * pad)

        svg.append(
            f'<line x1="{pad}" y1="{size - pad}" x2="{size - pad}" y2="{pad}" stroke="#d0d7de" stroke-dasharray="4 3"/>'
        )
        svg += [
            f'<circle cx="{at(h):.1f}" cy="{size - at(j):.1f}" r="3" fill="#0969da" fill-opacity="0.6">'
            f"<title>human {h:g}, judge {j:g}</title></circle>"
            for h, j in c.points
        ]
        svg.append(f'<text x="{size / 2}" y="{size - 8}" font-size="11" text-anchor="middle">human</text>')
        svg.append(f'<text x="12" y="{size / 2}" font-size="11" transform="rotate(-90 12 {size / 2})">judge</text>')
    svg.append("</svg>")
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f"<title>otel-judge calibration: {e(c.score_key)}</title>"
        "<style>body{font-family:system-ui,sans-serif;margin:2rem}pre{background:#f6f8fa;padding:1rem}"
        "svg{background:#f6f8fa;border-radius:6px}</style></head><body>\n"
        f"<h1>Calibration of {e(c.score_key)} against human labels</h1>\n"
        f"<pre>{e(render_calibration(c))}</pre>\n<h2>Judge against human</h2>\n{''.join(svg)}\n"
        f'<script type="application/json" id="calibration">{e(json.dumps(c.to_json()))}</script>\n'
        "</body></html>\n"
    )


async def _calibrate(
    config: Config,
    items: Sequence[LabelItem],
    *,
    evaluator: str | None,
    human_scale: tuple[float, float] | None,
    bins: int,
    settings: Settings,
) -> Calibration:
    pairs: list[Pair] = []
    unmatched: list[LabelItem] = []
    if any(i.trace_id is not None for i in items):
        if config.store is None:
            raise ConfigError(["store: labels keyed by trace_id/span_id are matched against the store (store.url)"])
        from otel_judge.quality.store import QualityStore

        store = QualityStore(config.store, settings)
        await store.start(retention_task=False)
        try:
            rows = await store.rows(evaluator=None)
        finally:
            await store.shutdown(settings.clock.monotonic() + 5)
        keyed = [i for i in items if i.trace_id is not None and i.span_id is not None]
        matched, unmatched = match_stored(keyed, rows, evaluator)
        pairs += matched
    content = [i for i in items if i.trace_id is None or i.span_id is None]
    judged, failed = await judge_items(content, config, evaluator, settings)
    pairs += judged
    return calibrate(
        pairs,
        labels=len(items),
        unmatched=len(unmatched),
        failed=len(failed),
        human_scale=human_scale,
        bins=bins,
    )


def run_calibrate(
    config: Config,
    labels_path: str | Path,
    *,
    evaluator: str | None = None,
    human_scale: tuple[float, float] | None = None,
    bins: int = 5,
    html_path: str | Path | None = None,
    settings: Settings | None = None,
) -> Calibration:
    """``otel-judge calibrate``: load the labels, match or judge them, compute; writes the HTML page
    when ``html_path`` is given. Raises LabelError, ConfigError or OSError with a clear message."""
    items = load_labels(labels_path)
    if config.store is not None and any(i.trace_id is not None for i in items):
        from otel_judge.quality.store import engine_url

        url = engine_url(config.store.url)
        if url.get_backend_name() == "sqlite" and url.database and not Path(url.database).exists():
            raise OSError(f"store {config.store.url}: no such file")
    result = asyncio.run(
        _calibrate(
            config, items, evaluator=evaluator, human_scale=human_scale, bins=bins, settings=settings or Settings()
        )
    )
    if html_path is not None:
        Path(html_path).write_text(render_calibration_html(result), encoding="utf-8")
    return result
