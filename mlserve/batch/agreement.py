"""Statistics of an offline comparison: two versions scored on the same rows.

Pure functions over arrays (or counts). Every difference is *paired*: both versions saw
the same rows, so the rows' difficulty cancels and the intervals are much narrower
than two independent ones would be. Assumptions, per function:

- rows are independent draws from the population the file stands for; the intervals
  speak about that population, not about the rows themselves (those are just counted);
- ``paired_accuracy``: Newcombe's (1998) method 10 for the difference of paired
  proportions (Wilson score limits combined with the correlation of the pairs), and the
  exact McNemar test on the discordant pairs;
- ``delong``: DeLong, DeLong and Clarke-Pearson (1988) for two correlated ROC AUCs,
  computed with the midrank algorithm of Sun and Xu (2014); normal approximation;
- ``paired_mean``: the mean of per-row differences (log loss) with a CLT interval
  (Student t with n-1 degrees of freedom);
- ``rmse_difference``: the delta method on the two mean squared errors and their
  covariance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float

    def to_dict(self) -> dict[str, float]:
        return {"estimate": self.estimate, "low": self.low, "high": self.high}


@dataclass(frozen=True)
class Delta:
    """One metric of both versions, the difference candidate - baseline, its interval and p-value."""

    metric: str
    baseline: float
    candidate: float
    difference: Interval
    p_value: float | None
    method: str
    higher_is_better: bool
    n: int

    @property
    def improvement(self) -> Interval:
        """The difference signed so that positive is better for the candidate."""
        d = self.difference
        if self.higher_is_better:
            return d
        return Interval(-d.estimate, -d.high, -d.low)

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "baseline": self.baseline,
            "candidate": self.candidate,
            "difference": self.difference.to_dict(),
            "improvement": self.improvement.to_dict(),
            "p_value": self.p_value,
            "method": self.method,
            "higher_is_better": self.higher_is_better,
            "n": self.n,
        }


def z_value(confidence: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(0.5 + confidence / 2))


def wilson(k: int, n: int, confidence: float = 0.95) -> Interval:
    """Wilson's score interval for a proportion k/n."""
    if n <= 0:
        return Interval(math.nan, 0.0, 1.0)
    z = z_value(confidence)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half))


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: the discordant pairs as Binomial(b + c, 1/2)."""
    n = b + c
    if n == 0:
        return 1.0
    from scipy.stats import binom

    return float(min(1.0, 2 * binom.cdf(min(b, c), n, 0.5)))


def paired_accuracy(correct_base: np.ndarray, correct_cand: np.ndarray, confidence: float = 0.95) -> Delta:
    """Accuracy of both versions on the same rows; the difference by Newcombe's method 10."""
    x = np.asarray(correct_base, dtype=bool)
    y = np.asarray(correct_cand, dtype=bool)
    n = int(x.size)
    both = int(np.sum(x & y))
    base_only = int(np.sum(x & ~y))  # b: the baseline right, the candidate wrong
    cand_only = int(np.sum(~x & y))  # c
    neither = n - both - base_only - cand_only
    lo, hi = newcombe_paired(both, cand_only, base_only, neither, confidence)
    p_cand = (both + cand_only) / n if n else math.nan
    p_base = (both + base_only) / n if n else math.nan
    return Delta(
        metric="accuracy",
        baseline=p_base,
        candidate=p_cand,
        difference=Interval(p_cand - p_base, lo, hi),
        p_value=mcnemar_exact(base_only, cand_only),
        method="Newcombe paired (method 10); exact McNemar",
        higher_is_better=True,
        n=n,
    )


def newcombe_paired(a: int, b: int, c: int, d: int, confidence: float = 0.95) -> tuple[float, float]:
    """Interval for p1 - p2 with p1 = (a + b)/n and p2 = (a + c)/n from a paired 2x2 table
    (a: both yes, b: first only, c: second only, d: neither). Newcombe (1998), method 10."""
    n = a + b + c + d
    if n == 0:
        return (-1.0, 1.0)
    p1, p2 = (a + b) / n, (a + c) / n
    w1, w2 = wilson(a + b, n, confidence), wilson(a + c, n, confidence)
    l1, u1, l2, u2 = w1.low, w1.high, w2.low, w2.high
    marg = (a + b) * (c + d) * (a + c) * (b + d)
    phi = (a * d - b * c) / math.sqrt(marg) if marg > 0 else 0.0
    delta = p1 - p2
    dl = math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    du = math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    return (max(-1.0, delta - dl), min(1.0, delta + du))


def _midranks(x: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(x, method="average")


def delong(y: np.ndarray, score_base: np.ndarray, score_cand: np.ndarray, confidence: float = 0.95) -> Delta:
    """Paired DeLong test of two ROC AUCs on the same rows (binary labels 0/1)."""
    y = np.asarray(y).astype(bool)
    pos, neg = int(y.sum()), int((~y).sum())
    n = int(y.size)
    if pos == 0 or neg == 0:
        raise ValueError("AUC needs both classes among the labels")
    aucs, v10, v01 = [], [], []
    for s in (np.asarray(score_base, float), np.asarray(score_cand, float)):
        xs, ys = s[y], s[~y]
        tx, ty, tz = _midranks(xs), _midranks(ys), _midranks(np.concatenate([xs, ys]))
        auc = (tz[:pos].sum() - pos * (pos + 1) / 2) / (pos * neg)
        aucs.append(float(auc))
        v10.append((tz[:pos] - tx) / neg)  # per positive: share of negatives ranked below it
        v01.append(1.0 - (tz[pos:] - ty) / pos)  # per negative: share of positives ranked above it
    s10 = np.cov(np.vstack(v10)) if pos > 1 else np.zeros((2, 2))
    s01 = np.cov(np.vstack(v01)) if neg > 1 else np.zeros((2, 2))
    cov = s10 / pos + s01 / neg
    diff = aucs[1] - aucs[0]
    var = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    se = math.sqrt(max(var, 0.0))
    z = z_value(confidence)
    p = _two_sided_normal(diff, se)
    return Delta(
        metric="auc",
        baseline=aucs[0],
        candidate=aucs[1],
        difference=Interval(diff, diff - z * se, diff + z * se),
        p_value=p,
        method="DeLong paired (Sun-Xu midranks)",
        higher_is_better=True,
        n=n,
    )


def _two_sided_normal(estimate: float, se: float) -> float:
    from scipy.stats import norm

    if se <= 0:
        return 1.0 if estimate == 0 else 0.0
    return float(2 * norm.sf(abs(estimate) / se))


def paired_mean(diff: np.ndarray, confidence: float = 0.95) -> tuple[Interval, float | None]:
    """Mean of per-row differences with a Student-t interval and p-value (H0: mean 0)."""
    d = np.asarray(diff, float)
    n = int(d.size)
    mean = float(d.mean()) if n else math.nan
    if n < 2:
        return Interval(mean, -math.inf, math.inf), None
    from scipy.stats import t

    se = float(d.std(ddof=1) / math.sqrt(n))
    q = float(t.ppf(0.5 + confidence / 2, n - 1))
    if se == 0:
        return Interval(mean, mean, mean), (1.0 if mean == 0 else 0.0)
    p = float(2 * t.sf(abs(mean) / se, n - 1))
    return Interval(mean, mean - q * se, mean + q * se), p


LOG_EPS = float(np.finfo(np.float64).eps)


def row_log_loss(prob_of_label: np.ndarray) -> np.ndarray:
    """-log p(true class) per row, clipped like scikit-learn's log_loss (eps = float64 eps)."""
    p = np.clip(np.asarray(prob_of_label, float), LOG_EPS, 1 - LOG_EPS)
    return -np.log(p)


def paired_log_loss(p_base: np.ndarray, p_cand: np.ndarray, confidence: float = 0.95) -> Delta:
    """Log loss of both versions from each row's probability of its true class."""
    lb, lc = row_log_loss(p_base), row_log_loss(p_cand)
    interval, p = paired_mean(lc - lb, confidence)
    return Delta(
        metric="log_loss",
        baseline=float(lb.mean()),
        candidate=float(lc.mean()),
        difference=interval,
        p_value=p,
        method="paired per-row differences (t interval)",
        higher_is_better=False,
        n=int(lb.size),
    )


def rmse_difference(y: np.ndarray, pred_base: np.ndarray, pred_cand: np.ndarray, confidence: float = 0.95) -> Delta:
    """RMSE of both versions; the difference's interval by the delta method on the paired
    squared errors (their means, variances and covariance)."""
    yy = np.asarray(y, float)
    eb = (np.asarray(pred_base, float) - yy) ** 2
    ec = (np.asarray(pred_cand, float) - yy) ** 2
    n = int(yy.size)
    mb, mc = float(eb.mean()), float(ec.mean())
    rb, rc = math.sqrt(mb), math.sqrt(mc)
    diff = rc - rb
    if n < 2 or rb == 0 or rc == 0:
        return Delta("rmse", rb, rc, Interval(diff, diff, diff), None, "delta method", False, n)
    cov = np.cov(np.vstack([eb, ec]))
    gb, gc = -1 / (2 * rb), 1 / (2 * rc)  # d(rc - rb)/d(mb), d/d(mc)
    var = (gb * gb * cov[0, 0] + gc * gc * cov[1, 1] + 2 * gb * gc * cov[0, 1]) / n
    se = math.sqrt(max(float(var), 0.0))
    z = z_value(confidence)
    return Delta(
        metric="rmse",
        baseline=rb,
        candidate=rc,
        difference=Interval(diff, diff - z * se, diff + z * se),
        p_value=_two_sided_normal(diff, se),
        method="delta method on paired squared errors",
        higher_is_better=False,
        n=n,
    )
