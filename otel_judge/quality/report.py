"""``otel-judge report``: quality per slice and evaluator from the store, as a terminal table or an HTML page.

The table has one line per score key and slice group (``--by``): n, the weighted mean with its 95%
CI, the pass rate, and the trend (the mean of the last ``--window`` minus the window before it, with
``*`` when Welch's two-sided test gives p < 0.05). The HTML page adds, per group, an inline SVG plot
of the score over time (weighted mean and 95% CI per time bin) with markers where the regression
detector, run over the same data at regular steps, would have fired and resolved alerts.

:func:`render_table` is the table on its own, for other commands (``otel-judge replay``)::

    render_table(data, *, by=None, now_ns=None, window=None) -> str

``data`` is a sequence of :class:`StoredEvaluation` rows (grouped here) or of :class:`SliceSummary`
(already grouped by :func:`summarize`). With ``window`` (seconds) and ``now_ns`` the estimate is over
``[now - window, now)`` and the trend compares it with the window before; without, over all rows and
no trend. ``by``: the slice names to group by (default: every slice name in the rows).
"""

from __future__ import annotations

import asyncio
import html
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from otel_judge import __version__
from otel_judge.component import Settings
from otel_judge.config import Config, QualityConfig
from otel_judge.errors import ConfigError
from otel_judge.quality.alerts import Alert, iso
from otel_judge.quality.detector import NS, MemoryRows, RegressionDetector, score_scale
from otel_judge.quality.model import StoredEvaluation
from otel_judge.quality.stats import Estimate, estimate, welch_two_sided

__all__ = [
    "Report",
    "SliceSummary",
    "build_report",
    "render_html",
    "render_table",
    "replay_alerts",
    "run_report",
    "summarize",
]

MISSING = "-"  # a row without a value for a grouped slice


@dataclass(frozen=True, slots=True)
class SliceSummary:
    """One line of the report: a score key on one slice group, now and in the window before."""

    score_key: str
    slice: Mapping[str, str]
    current: Estimate
    previous: Estimate | None = None
    trend_p: float | None = None  # Welch, two-sided, current vs previous
    low: float | None = None
    high: float | None = None

    @property
    def trend(self) -> float | None:
        if self.previous is None or self.previous.mean is None or self.current.mean is None:
            return None
        return self.current.mean - self.previous.mean


def _estimate(rows: Sequence[StoredEvaluation]) -> Estimate:
    return estimate([r.value for r in rows if r.value is not None], [r.weight for r in rows], [r.passed for r in rows])


def _slice_names(rows: Sequence[StoredEvaluation]) -> list[str]:
    return sorted({name for r in rows for name in r.slices})


def summarize(
    rows: Sequence[StoredEvaluation],
    *,
    by: Sequence[str] | None = None,
    now_ns: int | None = None,
    window: float | None = None,
) -> list[SliceSummary]:
    """Group scored ``rows`` by score key and the values of the ``by`` slices; estimate each group
    over the last ``window`` before ``now_ns`` (and the window before it, for the trend), or over
    all rows when no window is given."""
    names = list(by) if by is not None else _slice_names(rows)
    scored = [r for r in rows if r.value is not None]
    groups: dict[tuple[str, tuple[str, ...]], list[StoredEvaluation]] = defaultdict(list)
    for row in scored:
        groups[(row.score_key, tuple(row.slices.get(n, MISSING) for n in names))].append(row)
    out: list[SliceSummary] = []
    for (key, values), group in sorted(groups.items()):
        scale = score_scale(group)
        if window is not None and now_ns is not None:
            w = int(window * NS)
            current = [r for r in group if now_ns - w <= r.time_ns < now_ns]
            previous = [r for r in group if now_ns - 2 * w <= r.time_ns < now_ns - w]
            cur, prev = _estimate(current), _estimate(previous)
            if cur.n == 0 and prev.n == 0:
                continue
            summary = SliceSummary(
                key, dict(zip(names, values, strict=True)), cur, prev, welch_two_sided(cur, prev), scale.low, scale.high
            )
        else:
            summary = SliceSummary(
                key, dict(zip(names, values, strict=True)), _estimate(group), None, None, scale.low, scale.high
            )
        out.append(summary)
    return out


def _fmt(value: float | None, low: float | None, high: float | None) -> str:
    if value is None:
        return MISSING
    wide = low is not None and high is not None and abs(high - low) >= 10
    return f"{value:.1f}" if wide else f"{value:.3f}"


def _cells(s: SliceSummary, names: Sequence[str]) -> list[str]:
    c = s.current
    ci = MISSING if c.ci_low is None else f"[{_fmt(c.ci_low, s.low, s.high)}, {_fmt(c.ci_high, s.low, s.high)}]"
    rate = MISSING if c.pass_rate is None else f"{c.pass_rate:.0%}"
    trend = MISSING
    if s.trend is not None:
        trend = ("+" if s.trend >= 0 else "") + _fmt(s.trend, s.low, s.high)
        if s.trend_p is not None and s.trend_p < 0.05:
            trend += " *"
    return [
        s.score_key,
        *(s.slice.get(n, MISSING) for n in names),
        str(c.n),
        _fmt(c.mean, s.low, s.high),
        ci,
        rate,
        trend,
    ]


def _headers(names: Sequence[str]) -> list[str]:
    return ["evaluator", *names, "n", "mean", "95% CI", "pass", "trend"]


def render_table(
    data: Sequence[StoredEvaluation] | Sequence[SliceSummary],
    *,
    by: Sequence[str] | None = None,
    now_ns: int | None = None,
    window: float | None = None,
) -> str:
    """The report's terminal table (see the module docstring); an explanatory line when there is no data."""
    summaries: list[SliceSummary]
    if data and isinstance(data[0], StoredEvaluation):
        rows = [d for d in data if isinstance(d, StoredEvaluation)]
        by = list(by) if by is not None else _slice_names(rows)
        summaries = summarize(rows, by=by, now_ns=now_ns, window=window)
    else:
        summaries = [d for d in data if isinstance(d, SliceSummary)]
    if not summaries:
        return "no scored evaluations" + (f" in the last {_duration(window)}" if window else "") + "\n"
    names = list(by) if by is not None else sorted({n for s in summaries for n in s.slice})
    table = [_headers(names), *(_cells(s, names) for s in summaries)]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    numeric = {len(names) + 1, len(names) + 2, len(names) + 4, len(names) + 5}
    lines = []
    for i, row in enumerate(table):
        cells = [cell.rjust(widths[j]) if j in numeric else cell.ljust(widths[j]) for j, cell in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    if any(s.previous is not None for s in summaries) and window:
        lines.append(
            f"trend: mean of the last {_duration(window)} minus the {_duration(window)} before; "
            "* p < 0.05 (Welch, two-sided). Means are weighted by 1/sampling probability."
        )
    return "\n".join(lines) + "\n"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


# --------------------------------------------------------------------------- alerts over history


async def replay_alerts(
    rows: Sequence[StoredEvaluation], quality: QualityConfig, start_ns: int, end_ns: int, *, max_runs: int = 120
) -> list[Alert]:
    """Every notification (firing and resolved) the detector would have sent running over ``rows``
    from ``start_ns`` to ``end_ns``, at ``regression.interval`` or coarser steps (at most ``max_runs``)."""
    if end_ns <= start_ns:
        return []
    detector = RegressionDetector(quality, MemoryRows(rows), Settings())
    step = max(int(quality.regression.interval * NS), (end_ns - start_ns) // max_runs, 1)
    alerts: list[Alert] = []
    t = start_ns + step
    while t < end_ns + step:
        alerts += await detector.run_once(min(t, end_ns))
        t += step
    return alerts


# --------------------------------------------------------------------------- HTML

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem;color:#1f2328;max-width:1100px}
h1{font-size:1.4rem}h2{font-size:1.15rem;margin-top:2rem}h3{font-size:1rem;margin:1.2rem 0 .3rem}
table{border-collapse:collapse;font-size:.85rem}td,th{padding:.25rem .6rem;border-bottom:1px solid #d0d7de;
text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums}.muted{color:#656d76;font-size:.85rem}
.firing{color:#cf222e}.resolved{color:#1a7f37}svg{background:#f6f8fa;border-radius:6px}
"""
_W, _H, _PAD_L, _PAD_B, _PAD_T = 760, 190, 48, 22, 10


def _bins(rows: Sequence[StoredEvaluation], start: int, end: int, count: int) -> list[tuple[int, Estimate]]:
    width = max((end - start) // count, 1)
    buckets: dict[int, list[StoredEvaluation]] = defaultdict(list)
    for r in rows:
        if start <= r.time_ns < end:
            buckets[(r.time_ns - start) // width].append(r)
    return [(start + i * width + width // 2, _estimate(b)) for i, b in sorted(buckets.items())]


def _svg(
    rows: Sequence[StoredEvaluation],
    alerts: Sequence[Alert],
    start: int,
    end: int,
    *,
    low: float | None,
    high: float | None,
) -> str:
    points = _bins(rows, start, end, 48)
    values = [v for _, e in points for v in (e.mean, e.ci_low, e.ci_high) if v is not None]
    lo = low if low is not None else min(values, default=0.0)
    hi = high if high is not None else max(values, default=1.0)
    if hi <= lo:
        hi = lo + 1.0
    plot_w, plot_h = _W - _PAD_L - 8, _H - _PAD_B - _PAD_T

    def x(t: int) -> float:
        return _PAD_L + (t - start) / max(end - start, 1) * plot_w

    def y(v: float) -> float:
        return _PAD_T + (1 - (min(max(v, lo), hi) - lo) / (hi - lo)) * plot_h

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" viewBox="0 0 {_W} {_H}" role="img">']
    for frac in (0.0, 0.5, 1.0):
        v = lo + frac * (hi - lo)
        parts.append(
            f'<line x1="{_PAD_L}" x2="{_W - 8}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#d0d7de" stroke-width="1"/>'
            f'<text x="{_PAD_L - 6}" y="{y(v) + 4:.1f}" font-size="10" text-anchor="end" fill="#656d76">{v:g}</text>'
        )
    for t, anchor in ((start, "start"), (end, "end")):
        parts.append(
            f'<text x="{x(t):.1f}" y="{_H - 6}" font-size="10" text-anchor="{anchor}" fill="#656d76">'
            f"{html.escape(iso(t) or '')[:16].replace('T', ' ')}</text>"
        )
    band = [(t, e) for t, e in points if e.ci_low is not None and e.ci_high is not None]
    if len(band) > 1:
        upper = " ".join(f"{x(t):.1f},{y(e.ci_high or 0):.1f}" for t, e in band)
        lower = " ".join(f"{x(t):.1f},{y(e.ci_low or 0):.1f}" for t, e in reversed(band))
        parts.append(f'<polygon points="{upper} {lower}" fill="#0969da" fill-opacity="0.15" stroke="none"/>')
    line = [(t, e.mean) for t, e in points if e.mean is not None]
    if len(line) > 1:
        path = " ".join(f"{x(t):.1f},{y(m):.1f}" for t, m in line if m is not None)
        parts.append(f'<polyline points="{path}" fill="none" stroke="#0969da" stroke-width="1.5"/>')
    for t, e in points:
        if e.mean is not None:
            tip = f"{iso(t)}: mean {e.mean:.3g}, n={e.n}"
            parts.append(
                f'<circle cx="{x(t):.1f}" cy="{y(e.mean):.1f}" r="2.5" fill="#0969da">'
                f"<title>{html.escape(tip)}</title></circle>"
            )
    for alert in alerts:
        at = alert.started_at_ns if alert.status == "firing" else alert.resolved_at_ns or alert.detected_at_ns
        if not start <= at <= end:
            continue
        color = "#cf222e" if alert.status == "firing" else "#1a7f37"
        parts.append(
            f'<g class="alert {alert.status}"><line x1="{x(at):.1f}" x2="{x(at):.1f}" y1="{_PAD_T}" '
            f'y2="{_H - _PAD_B}" stroke="{color}" stroke-width="1.5" stroke-dasharray="4 3"/>'
            f'<text x="{x(at) + 3:.1f}" y="{_PAD_T + 10}" font-size="10" fill="{color}">'
            f"{'▼' if alert.status == 'firing' else '✓'}</text><title>{html.escape(alert.summary())}</title></g>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _within(alert_slice: Mapping[str, str], group: Mapping[str, str]) -> bool:
    """Whether an alert concerns traffic within a plotted group: its slice has the group's values
    (and no value where the group has none); an alert of broader traffic is listed, not plotted."""
    return all((k not in alert_slice) if v == MISSING else alert_slice.get(k) == v for k, v in group.items())


def render_html(
    rows: Sequence[StoredEvaluation],
    summaries: Sequence[SliceSummary],
    alerts: Sequence[Alert],
    *,
    by: Sequence[str],
    start_ns: int,
    end_ns: int,
    title: str = "otel-judge quality report",
    window: float | None = None,
) -> str:
    """A self-contained page (inline CSS and SVG, no scripts): the table, every alert, one plot per
    score key and slice group with markers of the alerts within that group."""
    e = html.escape
    names = list(by)
    head = "".join(f"<th>{e(h)}</th>" for h in _headers(names))
    numeric = {len(names) + 1, len(names) + 2, len(names) + 4, len(names) + 5}
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{e(c)}</td>' if i in numeric else f"<td>{e(c)}</td>"
            for i, c in enumerate(_cells(s, names))
        )
        + "</tr>"
        for s in summaries
    )
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        f'<p class="muted">{e(iso(start_ns) or "")} to {e(iso(end_ns) or "")}; generated by otel-judge '
        f"{e(__version__)}. Means are weighted by 1/sampling probability; CIs are 95% (Student t, Kish "
        "effective n).</p>",
        f"<h2>Summary{' (last ' + e(_duration(window)) + ')' if window else ''}</h2>",
        f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>",
        "<h2>Alerts</h2>",
    ]
    if alerts:
        items = "".join(
            f'<li class="{e(a.status)}">{e(iso(a.resolved_at_ns or a.detected_at_ns) or "")} {e(a.summary())}</li>'
            for a in alerts
        )
        out.append(f"<ul>{items}</ul>")
    else:
        out.append('<p class="muted">The detector finds no regression in this period.</p>')
    groups: dict[tuple[str, tuple[str, ...]], list[StoredEvaluation]] = defaultdict(list)
    for row in rows:
        if row.value is not None:
            groups[(row.score_key, tuple(row.slices.get(n, MISSING) for n in names))].append(row)
    current_key = None
    for (key, values), group in sorted(groups.items()):
        if key != current_key:
            out.append(f"<h2>{e(key)}</h2>")
            current_key = key
        group_slice = dict(zip(names, values, strict=True))
        label = ", ".join(f"{n}={v}" for n, v in group_slice.items()) or "all traffic"
        mine = [a for a in alerts if a.score_key == key and _within(a.slice, group_slice)]
        scale = score_scale(group)
        out.append(f"<h3>{e(label)} <span class='muted'>n={len(group)}</span></h3>")
        out.append(_svg(group, mine, start_ns, end_ns, low=scale.low, high=scale.high))
    out.append("</body></html>")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- the command


@dataclass(frozen=True, slots=True)
class Report:
    table: str
    html: str | None = None


async def build_report(
    config: Config,
    store: Any,
    *,
    now_ns: int,
    window: float,
    evaluator: str | None = None,
    by: Sequence[str] | None = None,
    with_html: bool = False,
) -> Report:
    """The terminal table for the last ``window`` before ``now_ns``; ``with_html``: also the page,
    whose plots cover ``max(2 * window, current_window + baseline_window)`` with the detector's alerts."""
    names = list(by) if by is not None else list(config.quality.slices)
    unknown = [n for n in names if n not in config.quality.slices]
    if unknown:
        raise ConfigError([f"--by: {', '.join(unknown)} not in quality.slices ({', '.join(config.quality.slices)})"])
    w = int(window * NS)
    regression = config.quality.regression
    if not with_html:
        rows = await store.rows(evaluator=evaluator, since_ns=now_ns - 2 * w, until_ns=now_ns)
        return Report(render_table(summarize(rows, by=names, now_ns=now_ns, window=window), by=names, window=window))
    span = max(2 * w, int((regression.current_window + regression.baseline_window) * NS))
    lookback = int((regression.current_window + 2 * regression.baseline_window) * NS)
    start = now_ns - span
    rows = await store.rows(evaluator=evaluator, since_ns=start - lookback, until_ns=now_ns)
    summaries = summarize(rows, by=names, now_ns=now_ns, window=window)
    alerts = await replay_alerts(rows, config.quality, start, now_ns)
    shown = [r for r in rows if r.time_ns >= start]
    page = render_html(shown, summaries, alerts, by=names, start_ns=start, end_ns=now_ns, window=window)
    return Report(render_table(summaries, by=names, window=window), page)


def run_report(
    config: Config,
    *,
    window: float,
    evaluator: str | None = None,
    by: Sequence[str] | None = None,
    html_path: str | Path | None = None,
    settings: Settings | None = None,
) -> str:
    """``otel-judge report``: open the configured store (an SQLite file must exist: a report never
    creates an empty store), build the report as of now, write the HTML page if asked; returns the
    table. Raises ConfigError (no store, unknown --by) or OSError (store unreachable, file not writable)."""
    from otel_judge.quality.store import QualityStore, engine_url

    if config.store is None:
        raise ConfigError(["store: not configured; the report reads the evaluation store (store.url)"])
    url = engine_url(config.store.url)
    if url.get_backend_name() == "sqlite" and url.database and not Path(url.database).exists():
        raise OSError(f"store {config.store.url}: no such file (nothing has been stored yet?)")
    settings = settings or Settings()
    store_config = config.store

    async def run() -> Report:
        store = QualityStore(store_config, settings)
        await store.start(retention_task=False)
        try:
            return await build_report(
                config,
                store,
                now_ns=settings.clock.time_ns(),
                window=window,
                evaluator=evaluator,
                by=by,
                with_html=html_path is not None,
            )
        finally:
            await store.shutdown(settings.clock.monotonic() + 5)

    report = asyncio.run(run())
    if html_path is not None and report.html is not None:
        Path(html_path).write_text(report.html, encoding="utf-8")
    return report.table
