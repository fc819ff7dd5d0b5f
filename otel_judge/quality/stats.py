"""Estimates with honest uncertainty: weighted means, confidence intervals, sample sizes."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Estimate", "estimate"]


@dataclass(frozen=True, slots=True)
class Estimate:
    """Quality of one slice and evaluator over one window.

    ``mean`` is the inverse-probability-weighted mean of the scores; ``ci_low``/``ci_high`` its
    ``confidence`` interval (Student t with the Kish effective sample size, so that uneven weights
    widen it); ``n`` the number judged; ``pass_rate`` the weighted share of passes among scores that
    have a pass/fail (None when none has)."""

    n: int
    mean: float | None
    ci_low: float | None
    ci_high: float | None
    pass_rate: float | None
    n_effective: float = 0.0
    std: float | None = None

    def to_json(self) -> dict[str, float | int | None]:
        return {
            "n": self.n,
            "mean": self.mean,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "pass_rate": self.pass_rate,
            "n_effective": self.n_effective,
        }


def estimate(
    values: Sequence[float],
    weights: Sequence[float] | None = None,
    passed: Sequence[bool | None] | None = None,
    confidence: float = 0.95,
) -> Estimate:
    """The weighted mean of ``values`` with a ``confidence`` interval, and the weighted pass rate."""
    n = len(values)
    w = list(weights) if weights is not None else [1.0] * n
    pass_rate = _pass_rate(passed, w) if passed is not None else None
    if n == 0:
        return Estimate(0, None, None, None, pass_rate)
    total = sum(w)
    mean = sum(wi * v for wi, v in zip(w, values, strict=True)) / total
    n_eff = total**2 / sum(wi * wi for wi in w)
    if n < 2:
        return Estimate(n, mean, None, None, pass_rate, n_eff)
    # Weighted variance (reliability weights), then the standard error with the effective n.
    var = sum(wi * (v - mean) ** 2 for wi, v in zip(w, values, strict=True)) / total * n_eff / max(n_eff - 1, 1e-9)
    std = math.sqrt(max(var, 0.0))
    half = _t_quantile(1 - (1 - confidence) / 2, max(n_eff - 1, 1.0)) * std / math.sqrt(n_eff)
    return Estimate(n, mean, mean - half, mean + half, pass_rate, n_eff, std)


def _pass_rate(passed: Sequence[bool | None], weights: Sequence[float]) -> float | None:
    num = den = 0.0
    for p, wi in zip(passed, weights, strict=True):
        if p is None:
            continue
        den += wi
        num += wi if p else 0.0
    return num / den if den else None


def _t_quantile(q: float, df: float) -> float:
    from scipy import stats  # lazy: scipy stays off the start-up path

    return float(stats.t.ppf(q, df))
