"""Estimates with honest uncertainty: weighted means, confidence intervals, sample sizes."""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

T = TypeVar("T", bound=Hashable)

__all__ = [
    "Estimate",
    "adjust_p_values",
    "cohen_kappa",
    "confusion_matrix",
    "estimate",
    "estimate_arrays",
    "mann_whitney_drop",
    "welch_drop",
    "welch_two_sided",
]


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


def estimate_arrays(values: Any, weights: Any, passed: Any = None, confidence: float = 0.95) -> Estimate:
    """:func:`estimate` on numpy arrays (the detector's fast path, same numbers): ``values`` and
    ``weights`` float arrays, ``passed`` a float array of 1 (pass), 0 (fail) and NaN (no verdict)."""
    import numpy as np

    n = len(values)
    pass_rate: float | None = None
    if passed is not None:
        known = ~np.isnan(passed)
        den = float(weights[known].sum())
        pass_rate = float((weights[known] * passed[known]).sum()) / den if den else None
    if n == 0:
        return Estimate(0, None, None, None, pass_rate)
    total = float(weights.sum())
    mean = float((weights * values).sum()) / total
    n_eff = total**2 / float((weights * weights).sum())
    if n < 2:
        return Estimate(n, mean, None, None, pass_rate, n_eff)
    var = float((weights * (values - mean) ** 2).sum()) / total * n_eff / max(n_eff - 1, 1e-9)
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


# --------------------------------------------------------------------------- two-sample tests for a drop


def welch_drop(baseline: Estimate, current: Estimate, *, higher_is_better: bool = True) -> float:
    """One-sided p-value of Welch's t-test that ``current`` is worse than ``baseline``.

    Works on the weighted estimates: means are the inverse-probability-weighted means, and each
    window's standard error uses its Kish effective sample size (``std / sqrt(n_effective)``), with
    the Welch-Satterthwaite degrees of freedom over the effective sizes. With equal weights this is
    exactly scipy's ``ttest_ind(equal_var=False, alternative="less")``."""
    if baseline.mean is None or current.mean is None or baseline.std is None or current.std is None:
        return 1.0
    vb = baseline.std**2 / baseline.n_effective
    vc = current.std**2 / current.n_effective
    diff = current.mean - baseline.mean if higher_is_better else baseline.mean - current.mean
    se2 = vb + vc
    if se2 <= 0:  # no spread in either window: any drop is certain, no drop is not one
        return 0.0 if diff < 0 else 1.0
    df = se2**2 / (vb**2 / max(baseline.n_effective - 1, 1e-9) + vc**2 / max(current.n_effective - 1, 1e-9))
    from scipy import stats  # lazy: scipy stays off the start-up path

    return float(stats.t.cdf(diff / math.sqrt(se2), df))


def welch_two_sided(a: Estimate, b: Estimate) -> float | None:
    """Two-sided p-value of Welch's t-test of equal means, on weighted estimates as :func:`welch_drop`;
    None when either side has fewer than two scores or neither has any spread."""
    if a.mean is None or b.mean is None or a.std is None or b.std is None:
        return None
    va, vb = a.std**2 / a.n_effective, b.std**2 / b.n_effective
    if va + vb <= 0:
        return None
    df = (va + vb) ** 2 / (va**2 / max(a.n_effective - 1, 1e-9) + vb**2 / max(b.n_effective - 1, 1e-9))
    from scipy import stats

    return float(2 * stats.t.sf(abs(a.mean - b.mean) / math.sqrt(va + vb), df))


def mann_whitney_drop(baseline: Sequence[float], current: Sequence[float], *, higher_is_better: bool = True) -> float:
    """One-sided p-value of the Mann-Whitney U test that ``current`` tends to be worse than ``baseline``.

    Unweighted: a rank test has no standard inverse-probability-weighted form, so it tests the judged
    sample as it is (valid when the sampling policy did not change between the two windows)."""
    if len(baseline) == 0 or len(current) == 0:
        return 1.0
    from scipy import stats

    low, high = min(baseline), max(baseline)
    if low == high == min(current) == max(current):  # all tied: scipy answers nan
        return 1.0
    result = stats.mannwhitneyu(current, baseline, alternative="less" if higher_is_better else "greater")
    return float(result.pvalue)


def adjust_p_values(p_values: Sequence[float], method: Literal["holm", "bonferroni", "none"]) -> list[float]:
    """Family-wise adjusted p-values, in the order given: reject where ``adjusted <= alpha``.

    Bonferroni multiplies by the number of tests; Holm's step-down multiplies the i-th smallest by
    ``m - i`` (i from 0) and keeps the sequence monotone. Both control the family-wise error rate under
    any dependence between the tests (tests of nested slices are dependent)."""
    m = len(p_values)
    if method == "none" or m == 0:
        return [min(1.0, p) for p in p_values]
    if method == "bonferroni":
        return [min(1.0, p * m) for p in p_values]
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


# --------------------------------------------------------------------------- agreement


def confusion_matrix(a: Sequence[T], b: Sequence[T], categories: Sequence[T]) -> list[list[int]]:
    """``matrix[i][j]`` = how many items ``a`` put in ``categories[i]`` and ``b`` in ``categories[j]``."""
    index = {c: i for i, c in enumerate(categories)}
    k = len(categories)
    matrix = [[0] * k for _ in range(k)]
    for x, y in zip(a, b, strict=True):
        matrix[index[x]][index[y]] += 1
    return matrix


def cohen_kappa(
    a: Sequence[T],
    b: Sequence[T],
    categories: Sequence[T],
    weights: Literal["linear", "quadratic"] | None = None,
) -> float | None:
    """Cohen's kappa of two raters over ``categories`` (in their order, which weighted kappa uses).

    ``weights=None``: plain kappa (any disagreement counts fully); ``linear`` / ``quadratic``: a
    disagreement between categories i and j counts ``|i-j|/(k-1)`` or its square. None when there are
    no items or the expected disagreement is zero (both raters always used one same category)."""
    n = len(a)
    k = len(categories)
    if n == 0 or k == 0:
        return None
    observed = confusion_matrix(a, b, categories)
    rows = [sum(r) for r in observed]
    cols = [sum(observed[i][j] for i in range(k)) for j in range(k)]

    def weight(i: int, j: int) -> float:
        if weights is None:
            return 0.0 if i == j else 1.0
        d = abs(i - j) / (k - 1) if k > 1 else 0.0
        return d if weights == "linear" else d * d

    disagree_obs = sum(weight(i, j) * observed[i][j] for i in range(k) for j in range(k)) / n
    disagree_exp = sum(weight(i, j) * rows[i] * cols[j] for i in range(k) for j in range(k)) / (n * n)
    if disagree_exp == 0:
        return None
    return 1.0 - disagree_obs / disagree_exp
