"""The comparison statistics against scipy and scikit-learn, and by simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import accuracy_score, log_loss, mean_squared_error, roc_auc_score

from mlserve.batch import agreement as st


@pytest.mark.parametrize(("k", "n"), [(0, 10), (3, 10), (50, 100), (999, 1000), (1000, 1000), (17, 23)])
def test_wilson_matches_scipy(k: int, n: int) -> None:
    ref = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    got = st.wilson(k, n, 0.95)
    assert got.low == pytest.approx(ref.low, abs=1e-12)
    assert got.high == pytest.approx(ref.high, abs=1e-12)


@pytest.mark.parametrize(("b", "c"), [(0, 0), (3, 9), (10, 10), (40, 12), (0, 7), (150, 120)])
def test_mcnemar_exact_is_scipys_binomial_test(b: int, c: int) -> None:
    ref = 1.0 if b + c == 0 else stats.binomtest(b, b + c, 0.5).pvalue
    assert st.mcnemar_exact(b, c) == pytest.approx(ref, rel=1e-10)


def _paired(n: int, p: float, q: float, rho_shift: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two correlated correctness vectors: the candidate flips some of the baseline's answers."""
    x = rng.random(n) < p
    flip = rng.random(n) < rho_shift
    y = np.where(flip, rng.random(n) < q, x)
    return x, y


def test_paired_accuracy_values_and_counts() -> None:
    rng = np.random.default_rng(1)
    y_true = rng.integers(0, 2, 500)
    pa = np.where(rng.random(500) < 0.85, y_true, 1 - y_true)
    pc = np.where(rng.random(500) < 0.9, y_true, 1 - y_true)
    d = st.paired_accuracy(pa == y_true, pc == y_true)
    assert d.baseline == pytest.approx(accuracy_score(y_true, pa))
    assert d.candidate == pytest.approx(accuracy_score(y_true, pc))
    assert d.difference.estimate == pytest.approx(d.candidate - d.baseline)
    assert d.difference.low < d.difference.estimate < d.difference.high
    b = int(np.sum((pa == y_true) & (pc != y_true)))
    c = int(np.sum((pa != y_true) & (pc == y_true)))
    assert d.p_value == pytest.approx(stats.binomtest(min(b, c), b + c, 0.5).pvalue)


def test_newcombe_paired_interval_is_narrower_than_independent_wilson_and_covers() -> None:
    """Coverage of method 10 at 95% over 2,000 simulated paired samples (n = 200)."""
    rng = np.random.default_rng(20261123)
    p, q, shift, n = 0.8, 0.7, 0.3, 200
    true_diff = shift * (q - p)  # E[y] - E[x] = (1 - shift) p + shift q - p
    hits = 0
    widths = []
    for _ in range(2000):
        x, y = _paired(n, p, q, shift, rng)
        d = st.paired_accuracy(x, y)
        hits += d.difference.low <= true_diff <= d.difference.high
        widths.append(d.difference.high - d.difference.low)
    coverage = hits / 2000
    assert 0.93 <= coverage <= 0.97, coverage
    # independent Newcombe hybrid-score width at the same rates is wider: pairing pays off
    wa, wb = st.wilson(int(0.8 * n), n), st.wilson(int(0.77 * n), n)
    independent = math.hypot(wa.high - wa.low, wb.high - wb.low)
    assert float(np.mean(widths)) < independent


def _brute_delong_paired_variance(y: np.ndarray, s1: np.ndarray, s2: np.ndarray) -> float:
    """Var(AUC2 - AUC1) from DeLong's structural components straight from the definition (O(m n))."""
    v10, v01 = [], []
    for s in (s1, s2):
        pos, neg = s[y == 1], s[y == 0]
        psi = (pos[:, None] > neg[None, :]).astype(float) + 0.5 * (pos[:, None] == neg[None, :])
        v10.append(psi.mean(axis=1))
        v01.append(psi.mean(axis=0))
    cov = np.cov(np.vstack(v10)) / len(v10[0]) + np.cov(np.vstack(v01)) / len(v01[0])
    return float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])


def test_delong_auc_is_sklearns_and_variance_is_the_definition() -> None:
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 400)
    s1 = np.round(y * 0.8 + rng.normal(size=400), 1)  # rounding makes ties
    s2 = np.round(y * 1.1 + rng.normal(size=400), 1)
    d = st.delong(y, s1, s2)
    assert d.baseline == pytest.approx(roc_auc_score(y, s1), abs=1e-12)
    assert d.candidate == pytest.approx(roc_auc_score(y, s2), abs=1e-12)
    se = (d.difference.high - d.difference.low) / (2 * st.z_value(0.95))
    assert se**2 == pytest.approx(_brute_delong_paired_variance(y, s1, s2), rel=1e-10)
    one = st.delong(y, s1, s1)  # a version against itself: no difference, no variance
    assert one.difference.estimate == 0 and one.difference.high - one.difference.low == pytest.approx(0, abs=1e-12)


def test_delong_paired_se_agrees_with_a_paired_bootstrap() -> None:
    rng = np.random.default_rng(11)
    n = 600
    y = rng.integers(0, 2, n)
    latent = rng.normal(size=n)
    s1 = y + latent + 0.6 * rng.normal(size=n)
    s2 = y + latent + 0.5 * rng.normal(size=n)
    d = st.delong(y, s1, s2)
    se = (d.difference.high - d.difference.low) / (2 * st.z_value(0.95))

    def auc(yy: np.ndarray, s: np.ndarray) -> float:  # Mann-Whitney U / (m n), from ranks
        r = stats.rankdata(s)
        m = int(yy.sum())
        return float((r[yy == 1].sum() - m * (m + 1) / 2) / (m * (yy.size - m)))

    boot = []
    for _ in range(300):
        i = rng.integers(0, n, n)
        boot.append(auc(y[i], s2[i]) - auc(y[i], s1[i]))
    assert se == pytest.approx(float(np.std(boot, ddof=1)), rel=0.2)


def test_delong_keeps_its_level_under_the_null() -> None:
    """Two equally good scorers: p < 0.05 in about 5% of 600 simulated data sets."""
    rng = np.random.default_rng(3)
    rejections = 0
    for _ in range(600):
        y = rng.integers(0, 2, 300)
        base = y + rng.normal(size=300)
        s1 = base + rng.normal(size=300)
        s2 = base + rng.normal(size=300)
        rejections += st.delong(y, s1, s2).p_value < 0.05  # type: ignore[operator]
    assert 0.025 <= rejections / 600 <= 0.08, rejections


def test_log_loss_means_are_sklearns_and_difference_is_a_paired_t() -> None:
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 300)
    p1 = np.clip(rng.beta(2, 2, 300) * 0.5 + 0.5 * y, 0, 1)
    p2 = np.clip(rng.beta(2, 2, 300) * 0.4 + 0.55 * y, 0, 1)
    p1[0] = 1.0 if y[0] == 0 else 0.0  # a confident mistake: clipped, like sklearn does
    pick = lambda p: np.where(y == 1, p, 1 - p)  # noqa: E731
    d = st.paired_log_loss(pick(p1), pick(p2))
    assert d.baseline == pytest.approx(log_loss(y, np.column_stack([1 - p1, p1])), rel=1e-9)
    assert d.candidate == pytest.approx(log_loss(y, np.column_stack([1 - p2, p2])), rel=1e-9)
    lb, lc = st.row_log_loss(pick(p1)), st.row_log_loss(pick(p2))
    ref = stats.ttest_rel(lc, lb)
    assert d.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    ci = ref.confidence_interval(0.95)
    assert (d.difference.low, d.difference.high) == pytest.approx((ci.low, ci.high), rel=1e-9)


def test_rmse_difference_values_and_coverage() -> None:
    rng = np.random.default_rng(9)
    n = 300
    y = rng.normal(size=n)
    d = st.rmse_difference(y, y + rng.normal(0, 0.5, n), y + rng.normal(0, 0.6, n))
    assert d.baseline > 0 and d.candidate > 0
    a = y + rng.normal(0, 0.5, n)
    assert st.rmse_difference(y, a, a).difference.estimate == 0
    assert st.rmse_difference(y, a, y + 1).baseline == pytest.approx(math.sqrt(mean_squared_error(y, a)))
    # coverage: the two versions' errors share a component, so the pairing matters
    s_shared, s1, s2 = 0.3, 0.4, 0.5
    true = math.sqrt(s_shared**2 + s2**2) - math.sqrt(s_shared**2 + s1**2)
    hits = 0
    for _ in range(1500):
        shared = rng.normal(0, s_shared, n)
        yy = rng.normal(size=n)
        r = st.rmse_difference(yy, yy + shared + rng.normal(0, s1, n), yy + shared + rng.normal(0, s2, n))
        hits += r.difference.low <= true <= r.difference.high
    assert 0.93 <= hits / 1500 <= 0.97, hits


def test_improvement_flips_for_lower_is_better_metrics() -> None:
    d = st.Delta("log_loss", 0.3, 0.25, st.Interval(-0.05, -0.07, -0.03), 0.01, "x", False, 100)
    assert d.improvement.estimate == pytest.approx(0.05)
    assert (d.improvement.low, d.improvement.high) == pytest.approx((0.03, 0.07))
