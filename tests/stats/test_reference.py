"""Fixed-sample pieces of mlserve.stats checked against scipy reference values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

from mlserve.stats import latency as lat
from mlserve.stats.sequential import (
    Mixture,
    always_valid_p,
    log_beta_binomial_below,
    log_mixture_last,
    log_mixture_per_look,
    log_mixture_rate_ratio,
    merge_intervals,
    wald_sprt_log_lr,
)
from mlserve.stats.srm import chisquare_p_values, srm_p_values
from tests.support.holm_oracle import holm_adjusted, holm_reject, weighted_holm_adjusted


def _theta(rho: float, n_a: float, n_b: float) -> float:
    return rho * n_a / (rho * n_a + n_b)


def test_single_alternative_mixture_is_the_binomial_likelihood_ratio() -> None:
    """With one alternative, the martingale is the conditional binomial likelihood ratio."""
    mix = Mixture(grid=(math.log(2.0),), weights=(1.0,))
    x_a, x_b, n_a, n_b = 7.0, 40.0, 100.0, 900.0
    got = log_mixture_rate_ratio(np.array([x_a]), np.array([x_b]), np.array([n_a]), np.array([n_b]), 0.0, 1, mix)
    t0, t1 = _theta(1.0, n_a, n_b), _theta(2.0, n_a, n_b)
    n = int(x_a + x_b)
    want = stats.binom.logpmf(int(x_a), n, t1) - stats.binom.logpmf(int(x_a), n, t0)
    assert got[-1] == pytest.approx(want, rel=1e-9)


def test_mixture_over_intervals_multiplies_likelihood_ratios() -> None:
    """Changing weights: the statistic is the product of each interval's ratio."""
    mix = Mixture(grid=(0.5,), weights=(1.0,))
    x_a = np.array([3.0, 9.0])
    x_b = np.array([30.0, 20.0])
    n_a = np.array([100.0, 500.0])
    n_b = np.array([900.0, 500.0])
    got = log_mixture_rate_ratio(x_a, x_b, n_a, n_b, math.log(1.1), 1, mix)
    want = 0.0
    for i in range(2):
        n = int(x_a[i] + x_b[i])
        t0 = _theta(1.1, n_a[i], n_b[i])
        t1 = _theta(1.1 * math.exp(0.5), n_a[i], n_b[i])
        want += stats.binom.logpmf(int(x_a[i]), n, t1) - stats.binom.logpmf(int(x_a[i]), n, t0)
    assert got[-1] == pytest.approx(want, rel=1e-9)
    # the oracle SPRT is the same ratio
    assert wald_sprt_log_lr(x_a, x_b, n_a, n_b, math.log(1.1), math.log(1.1) + 0.5)[-1] == pytest.approx(want)


def test_mixture_weights_average_likelihood_ratios() -> None:
    mix = Mixture(grid=(0.3, 0.9), weights=(0.25, 0.75))
    one = [
        log_mixture_rate_ratio(
            np.array([5.0]), np.array([20.0]), np.array([1.0]), np.array([4.0]), 0.0, 1, Mixture((g,), (1.0,))
        )[0]
        for g in (0.3, 0.9)
    ]
    got = log_mixture_rate_ratio(np.array([5.0]), np.array([20.0]), np.array([1.0]), np.array([4.0]), 0.0, 1, mix)[0]
    assert got == pytest.approx(math.log(0.25 * math.exp(one[0]) + 0.75 * math.exp(one[1])))


def test_batched_and_per_look_forms_agree_with_the_plain_one() -> None:
    rng = np.random.default_rng(3)
    x_a, x_b = rng.poisson(4, 12).astype(float), rng.poisson(30, 12).astype(float)
    n_a, n_b = np.full(12, 100.0), np.full(12, 900.0)
    plain = log_mixture_rate_ratio(x_a, x_b, n_a, n_b, 0.2, 1)
    last = log_mixture_last(x_a, x_b, n_a, n_b, np.array([0.2, 0.2]), 1)
    assert last == pytest.approx([plain[-1], plain[-1]])
    per_look = log_mixture_per_look(x_a, x_b, n_a, n_b, np.full(12, 0.2), 1)
    assert per_look == pytest.approx(plain)
    merged = merge_intervals(np.array([1, 1, 2, 2, 2]), np.arange(5.0))
    assert merged[0].tolist() == [1.0, 9.0]


def test_intervals_without_exposure_carry_no_information() -> None:
    got = log_mixture_rate_ratio(
        np.array([0.0, 5.0]), np.array([10.0, 0.0]), np.array([0.0, 1.0]), np.array([1.0, 0.0]), 0.0
    )
    assert got.tolist() == [0.0, 0.0]


def test_always_valid_p_is_a_running_minimum() -> None:
    p = always_valid_p(np.array([-1.0, math.log(4.0), 0.5, math.log(40.0)]))
    assert p.tolist() == pytest.approx([1.0, 0.25, 0.25, 0.025])


def test_beta_binomial_mixture_matches_numerical_integration() -> None:
    a, b, bound = 1.0, 100.0, 0.01
    x, n = 3.0, 2000.0
    got = log_beta_binomial_below(np.array([x]), np.array([n]), bound, (a, b))[0]
    num, _ = integrate.quad(lambda p: p**x * (1 - p) ** (n - x) * stats.beta.pdf(p, a, b), 0, bound, points=[x / n])
    den = stats.beta.cdf(bound, a, b) * bound**x * (1 - bound) ** (n - x)
    assert got == pytest.approx(math.log(num / den), rel=1e-6)


def test_chisquare_matches_scipy_for_one_and_several_intervals() -> None:
    n_b, n_c = np.array([880.0, 700.0]), np.array([120.0, 330.0])
    w_b, w_c = np.array([90.0, 75.0]), np.array([10.0, 25.0])
    got = chisquare_p_values(n_b, n_c, w_b, w_c)
    one = stats.chisquare([880, 120], f_exp=[900, 100])
    assert got[0] == pytest.approx(one.pvalue, rel=1e-9)
    second = stats.chisquare([700, 330], f_exp=[1030 * 0.75, 1030 * 0.25])
    assert got[1] == pytest.approx(stats.chi2.sf(one.statistic + second.statistic, 2), rel=1e-9)


def test_sequential_srm_flags_a_broken_split_and_not_a_good_one() -> None:
    rng = np.random.default_rng(11)
    good_c = rng.binomial(1000, 0.10, 50).astype(float)
    bad_c = rng.binomial(1000, 0.13, 50).astype(float)
    w_b, w_c = np.full(50, 90.0), np.full(50, 10.0)
    assert srm_p_values(1000 - good_c, good_c, w_b, w_c)[-1] > 0.01
    assert srm_p_values(1000 - bad_c, bad_c, w_b, w_c)[-1] < 1e-6
    # traffic where the weight is zero is a mismatch outright
    assert srm_p_values(np.array([100.0]), np.array([3.0]), np.array([100.0]), np.array([0.0]))[0] == 0.0


def test_holm_against_hand_computed_values() -> None:
    adjusted = holm_adjusted([0.01, 0.04, 0.03, 0.005])
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm_reject([0.01, 0.04, 0.03, 0.005], 0.05) == [True, False, False, True]
    assert holm_adjusted([]) == []


def test_histogram_quantile_and_exceedances() -> None:
    le = np.array([0.1, 0.2, 0.4, np.inf])
    cum = np.array([[50.0, 80.0, 100.0, 100.0]])
    # the 0.9 quantile lies halfway through the (0.2, 0.4] bucket
    assert lat.quantile(cum[0], le, 0.9) == pytest.approx(0.3)
    assert lat.quantile(cum[0], le, 0.25) == pytest.approx(0.05)
    ex = lat.exceedances(cum, le, np.array([0.1, 0.15, 0.2, 0.3, 5.0]))
    assert ex[0].tolist() == pytest.approx([50.0, 35.0, 20.0, 10.0, 0.0])
    assert lat.resolution(le, 0.3) == pytest.approx(2.0)


def test_uniform_data_quantile_agrees_with_numpy() -> None:
    rng = np.random.default_rng(5)
    data = rng.uniform(0, 1, 200_000)
    le = np.append(np.linspace(0.05, 1.0, 20), np.inf)
    cum = np.array([(data <= b).sum() for b in le], dtype=float)
    for q in (0.5, 0.9, 0.99):
        assert lat.quantile(cum, le, q) == pytest.approx(np.quantile(data, q), abs=2e-3)


def test_weighted_holm_reduces_to_holm_and_favours_heavy_hypotheses() -> None:
    from mlserve.stats.multiple import holm_columns

    p = [0.01, 0.04, 0.03, 0.005]
    assert weighted_holm_adjusted(p, [1, 1, 1, 1]) == pytest.approx(holm_adjusted(p))
    # weight 4 vs 1: the heavy one is tested at 0.8 alpha first
    assert weighted_holm_adjusted([0.03, 0.5], [4, 1]) == pytest.approx([0.0375, 0.5])
    cols = holm_columns(np.array([[0.03, 0.2], [0.5, 0.001]]), np.array([4.0, 1.0]))
    assert cols[:, 0] == pytest.approx([0.0375, 0.5])
    assert cols[:, 1] == pytest.approx(weighted_holm_adjusted([0.2, 0.001], [4, 1]))
