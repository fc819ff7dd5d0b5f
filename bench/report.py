"""Numbers derived from the raw measurements of each scenario, and the printed tables."""

from __future__ import annotations

from typing import Any

__all__ = ["PASS_THROUGH_TARGET", "derive", "report"]

PASS_THROUGH_TARGET = 0.8  # otel-judge at 0% sampling vs the reference forwarder, spans/s
DISTURBED_CORES = 0.2  # other processes used more CPU than this during a window: marked "!"


def derive(result: dict[str, Any], passthrough_us: dict[int, float]) -> dict[str, Any]:
    """Rates and per-span costs of one scenario.

    ``passthrough_us`` maps a batch size to otel-judge's CPU µs per span at 0% sampling, so the
    judging cost can also be given net of what the same spans cost without judging.
    """
    window = result["window_s"]
    sink = result["sink"]
    spans = sink["spans"]
    evaluated = sink["statuses"].get("evaluated", 0)
    cpu_s = result["cpu_s"]
    target_cpu = cpu_s.get("target")
    ours = sum(v for k, v in cpu_s.items() if k != "machine")
    out: dict[str, Any] = {
        "spans_per_s": spans / window,
        "sent_spans_per_s": result["load"]["window_spans_sent"] / window,
        "judged_per_s": evaluated / window,
        "cpu_us_per_span": target_cpu / spans * 1e6 if target_cpu is not None and spans else None,
        "cpu_ms_per_judged": target_cpu / evaluated * 1e3 if target_cpu is not None and evaluated else None,
        "target_cores": target_cpu / window if target_cpu is not None else None,
        "harness_cores": (ours - (target_cpu or 0.0)) / window,
        # Busy CPU of the whole machine not spent by our processes: other work disturbing the run.
        "foreign_cores": max(0.0, cpu_s["machine"] - ours) / window,
    }
    batch = result["scenario"]["batch"]
    if evaluated and target_cpu is not None and batch in passthrough_us:
        net = target_cpu - passthrough_us[batch] * 1e-6 * spans
        out["cpu_ms_per_judged_net"] = net / evaluated * 1e3
    return out


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _other(cores: float) -> str:
    """Foreign CPU load during the window, flagged when it may have disturbed the measurement."""
    return f"{cores:.2f}" + ("!" if cores > DISTURBED_CORES else "")


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def _throughput_table(results: list[dict[str, Any]]) -> str:
    forwarder = {
        r["scenario"]["batch"]: r["derived"]["spans_per_s"] for r in results if r["scenario"]["target"] == "forwarder"
    }
    rows = []
    for r in results:
        d, s = r["derived"], r["scenario"]
        ratio = d["spans_per_s"] / forwarder[s["batch"]] if forwarder.get(s["batch"]) else None
        rss = r["target_peak_rss_bytes"]
        judging = bool(s["sampling"])
        rows.append(
            [
                s["label"],
                str(s["batch"]),
                _fmt(d["spans_per_s"], ",.0f"),
                _fmt(ratio, ".2f"),
                _fmt(d["judged_per_s"], ",.0f") if judging else "-",
                _fmt(d["cpu_us_per_span"], ".1f"),
                _fmt(d["cpu_ms_per_judged"], ".2f"),
                _fmt(d.get("cpu_ms_per_judged_net"), ".2f"),
                _fmt(rss / 2**20 if rss else None, ".0f"),
                _fmt(d["target_cores"], ".2f"),
                _fmt(d["harness_cores"], ".2f"),
                _other(d["foreign_cores"]),
                str(r["load"]["window_calls"].get("rejected", 0)),
                str(sum(n for k, n in r["load"]["window_calls"].items() if k not in ("ok", "rejected"))),
                str(r["sink"]["statuses"].get("skipped_overload", 0)) if judging else "-",
            ]
        )
    headers = [
        "throughput (closed loop)", "spans/req", "spans/s", "vs fwd", "judged/s", "CPU us/span", "CPU ms/judged",
        "net ms/judged", "peak RSS MiB", "cores", "harness", "other", "rejected", "failed", "overload",
    ]  # fmt: skip
    return _table(headers, rows)


def _verdicts(results: list[dict[str, Any]]) -> list[str]:
    """otel-judge's pass-through throughput as a share of the forwarder's, against the 0.8 target."""
    by_key = {(r["scenario"]["target"], r["scenario"]["sampling"], r["scenario"]["batch"]): r for r in results}
    lines = []
    for (target, sampling, batch), r in by_key.items():
        forwarder = by_key.get(("forwarder", None, batch))
        if target != "otel-judge" or sampling != 0 or forwarder is None:
            continue
        ratio = r["derived"]["spans_per_s"] / forwarder["derived"]["spans_per_s"]
        verdict = "meets" if ratio >= PASS_THROUGH_TARGET else "MISSES"
        ours, theirs = r["derived"]["cpu_us_per_span"], forwarder["derived"]["cpu_us_per_span"]
        lines.append(
            f"pass-through at {batch} spans/request: otel-judge 0% = {ratio:.2f} x forwarder spans/s "
            f"({verdict} the {PASS_THROUGH_TARGET} target); CPU per span {ours:.1f} vs {theirs:.1f} us "
            f"= {theirs / ours:.2f} x the forwarder's efficiency"
        )
    return lines


def _delay_table(results: list[dict[str, Any]]) -> str:
    rows = []
    for r in results:
        s, d = r["scenario"], r["derived"]
        plain, genai = r["sink"]["plain_delay_ms"] or {}, r["sink"]["genai_delay_ms"] or {}
        judged = r["sink"]["evaluated_delay_ms"] or {}
        rows.append(
            [
                s["label"],
                f"{s['rate']:g} x {s['batch']}",
                _fmt(d["spans_per_s"], ",.0f"),
                _fmt(plain.get("p50"), ".2f"),
                _fmt(plain.get("p90"), ".2f"),
                _fmt(plain.get("p99"), ".2f"),
                _fmt(plain.get("max"), ".1f"),
                _fmt(genai.get("p50"), ".1f"),
                _fmt(judged.get("p50"), ".1f"),
                _fmt(judged.get("p99"), ".1f"),
                _fmt(d["target_cores"], ".2f"),
                _fmt(d["cpu_ms_per_judged"], ".2f"),
                _other(d["foreign_cores"]),
            ]
        )
    headers = [
        "delay (open loop)", "req/s x spans", "spans/s", "plain p50 ms", "p90 ms", "p99 ms", "max ms",
        "GenAI p50 ms", "judged p50 ms", "judged p99 ms", "cores", "CPU ms/judged", "other",
    ]  # fmt: skip
    return _table(headers, rows)


def least_disturbed(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One run per scenario (in first-run order): the one during which the rest of the machine used
    the least CPU. On a shared 2-core machine foreign load is the main source of noise, and it is
    measured, so the least disturbed run is the best estimate of what the software does."""
    by_key: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        by_key.setdefault(r["scenario"]["key"], []).append(r)
    return [min(runs, key=lambda r: float(r["derived"]["foreign_cores"])) for runs in by_key.values()]


def report(results: list[dict[str, Any]]) -> str:
    """The throughput table (closed-loop scenarios) and the delay table (open-loop scenarios); with
    repeated runs, the least disturbed run of each scenario."""
    chosen = least_disturbed(results)
    throughput = [r for r in chosen if not r["scenario"]["rate"]]
    delay = [r for r in chosen if r["scenario"]["rate"]]
    tables = []
    if throughput:
        tables.append("\n".join([_throughput_table(throughput), "", *_verdicts(throughput)]))
    if delay:
        tables.append(_delay_table(delay))
    if any(r["derived"]["foreign_cores"] > DISTURBED_CORES for r in chosen):
        tables.append(
            f"other: CPU cores used by the rest of the machine in the window; ! = over {DISTURBED_CORES}, disturbed"
        )
    return "\n\n".join(tables)
