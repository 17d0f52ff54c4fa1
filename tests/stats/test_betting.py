"""The interval tests of mlserve.stats.betting, checked against exact computations.

The null of these tests is that each interval's increment is at most a conditionally
symmetric one. For a fixed set of magnitudes, every sign pattern is then equally likely,
so expectations and crossing probabilities can be computed exactly by enumerating all
2^K patterns: the test supermartingale property and Ville's inequality are checked
exactly, not by simulation.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from mlserve.stats import latency as lat
from mlserve.stats.betting import (
    Betting,
    always_valid_p,
    count_evidence,
    count_increments,
    factor_sequence,
    invert,
    log_capital,
    log_capital_both,
    predictable_boundary,
    predictable_variance,
    ratio_interval,
    standardise,
    tail_evidence,
    tail_increments,
)

K = 12
SIGNS = np.array(list(itertools.product((-1.0, 1.0), repeat=K)))  # (4096, K), all equally likely
STRATEGIES = [Betting(horizon=10), Betting(horizon=10, strategy="constant"), Betting(horizon=4, target=0.3)]


def _magnitudes(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.lognormal(0.0, 1.0, K)  # heavy-ish tails: a stall makes one interval huge


@pytest.mark.parametrize("betting", STRATEGIES, ids=["deadline", "constant", "deadline-short"])
@pytest.mark.parametrize("seed", [1, 2])
def test_capital_is_an_exact_martingale_under_sign_symmetry(betting: Betting, seed: int) -> None:
    y = SIGNS * _magnitudes(seed)[None, :]
    var = predictable_variance(y, np.full(y.shape, 0.5))
    log_k = log_capital(y, var, 0.05, +1, betting)
    assert np.mean(np.exp(log_k[:, -1])) == pytest.approx(1.0, abs=1e-9)
    # and at every look, not only the last
    assert np.allclose(np.mean(np.exp(log_k), axis=0), 1.0, atol=1e-9)


@pytest.mark.parametrize("betting", STRATEGIES, ids=["deadline", "constant", "deadline-short"])
def test_ville_bound_holds_exactly_over_all_sign_patterns(betting: Betting) -> None:
    alpha = 0.05
    for seed in range(3):
        y = SIGNS * _magnitudes(seed)[None, :]
        var = predictable_variance(y, np.full(y.shape, 0.5))
        p = always_valid_p(log_capital(y, var, alpha, +1, betting))
        assert np.mean(p[:, -1] <= alpha) <= alpha


def test_a_candidate_no_worse_than_a_symmetric_copy_keeps_the_supermartingale() -> None:
    """y <= z with z symmetric, even when the slack depends on z itself (the candidate's
    share above b(1+m) is at most its share above b, by an amount that depends on the data)."""
    mags = _magnitudes(5)
    z = SIGNS * mags[None, :]
    slack = np.where(z > 0, 0.7 * z, 0.1 * mags[None, :])  # dominated, slack correlated with z
    y = z - slack
    var = predictable_variance(y, np.full(y.shape, 0.5))
    for betting in STRATEGIES:
        assert np.mean(np.exp(log_capital(y, var, 0.05, +1, betting)[:, -1])) <= 1.0 + 1e-9


def test_constant_strategy_is_the_product_of_tanh_bets() -> None:
    rng = np.random.default_rng(3)
    y = rng.normal(0.2, 1.0, 20)
    var = rng.uniform(0.5, 2.0, 20)
    bet = Betting(horizon=20, strategy="constant", kappa=1.3)
    lam = 1.3 * math.sqrt(2 * math.log(20) / 20)
    want = 1.0
    path = []
    for yi, vi in zip(y, var, strict=True):
        want *= 1.0 + math.tanh(lam * yi / math.sqrt(vi))
        path.append(math.log(want))
    assert np.allclose(log_capital(y, var, 0.05, +1, bet), path, rtol=1e-12)
    # the other side bets on -y
    assert np.allclose(log_capital(y, var, 0.05, -1, bet), log_capital(-y, var, 0.05, +1, bet))


def test_deadline_stakes_follow_the_delta_of_the_fixed_horizon_payoff() -> None:
    """One step by hand: with capital 1 and T looks to go, the implied position is
    d = Phi^-1(level) and the stake per unit of standardised increment phi(d)/(sqrt(T) Phi(d))."""
    from scipy.stats import norm

    level, horizon = 0.025, 30
    d = norm.ppf(level)
    lam = norm.pdf(d) / (math.sqrt(horizon) * level)
    a = np.array([0.8])
    got = log_capital(a, np.ones(1), 0.05, +1, Betting(horizon=horizon, target=0.5))
    assert got[0] == pytest.approx(math.log1p(math.tanh(lam * 0.8)), rel=1e-2)  # the stake is tabulated


def test_log_capital_both_matches_two_one_sided_runs() -> None:
    rng = np.random.default_rng(4)
    y = rng.normal(0.0, 1.0, (3, 25))
    var = np.ones_like(y)
    up, down = log_capital_both(y, var, 0.04, 0.05)
    assert np.allclose(up, log_capital(y, var, 0.04, +1))
    assert np.allclose(down, log_capital(y, var, 0.05, -1))


def test_one_interval_can_at_most_double_the_capital() -> None:
    a = np.full(8, 1e6)
    for bet in STRATEGIES:
        log_k = log_capital(a, np.ones(8), 0.05, +1, bet)
        assert np.all(np.diff(np.concatenate([[0.0], log_k])) <= math.log(2.0) + 1e-12)
    # so at alpha = 0.05 nothing is rejected before the fifth interval
    p = always_valid_p(log_capital(a, np.ones(8), 0.05, +1))
    assert p[3] > 0.05 and p[4] <= 0.05


def test_predictable_variance_uses_earlier_intervals_only() -> None:
    rng = np.random.default_rng(6)
    y = rng.normal(0.0, 2.0, 15)
    live = np.ones(15, dtype=bool)
    live[[3, 7]] = False
    floor = np.full(15, 0.25)
    got = predictable_variance(y, floor, live)
    for i in range(15):
        past = y[:i][live[:i]]
        want = np.var(past, ddof=1) if past.size >= 2 else 0.0
        assert got[i] == pytest.approx(max(want, 0.25))
    # changing the present or the future does not change it
    y2 = y.copy()
    y2[10:] += 100.0
    assert np.allclose(predictable_variance(y2, floor, live)[:11], got[:11])


def test_count_increments_by_hand() -> None:
    xc, nc = np.array([3.0, 0.0, 5.0]), np.array([100.0, 80.0, 120.0])
    xb, nb = np.array([2.0, 1.0, 4.0]), np.array([110.0, 90.0, 0.0])
    y, var = count_increments(xc, nc, xb, nb, ratio=1.5, shift=0.001)
    w0 = 100 * 110 / 210
    assert y[0] == pytest.approx(w0 * (3 / 100 - 1.5 * 2 / 110 - 0.001))
    assert y[1] == pytest.approx(80 * 90 / 170 * (0.0 - 1.5 / 90 - 0.001))
    assert y[2] == 0.0  # no control traffic: no information
    # the first interval's floor uses the prior rate 0.5 (no earlier intervals)
    assert var[0] == pytest.approx(w0 * w0 * 0.5 * (1 / 100 + 1.5**2 / 110))
    # the second one uses the pooled rate of the first
    rate = (5 + 0.5) / (210 + 1)
    w1 = 80 * 90 / 170
    assert var[1] == pytest.approx(w1 * w1 * rate * (1 / 80 + 1.5**2 / 90))


def _histograms(seed: int, looks: int = 6, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    le = np.array([*np.geomspace(0.002, 0.2, 40), np.inf])
    probs_b = np.diff(np.concatenate([[0.0], _lognorm_cdf(le[:-1], 0.0), [1.0]]))
    probs_c = np.diff(np.concatenate([[0.0], _lognorm_cdf(le[:-1], shift), [1.0]]))
    hb = rng.multinomial(3000, probs_b, looks)
    hc = rng.multinomial(1000, probs_c, looks)
    return (
        le,
        np.cumsum(np.cumsum(hb, axis=0), axis=1).astype(float),
        np.cumsum(np.cumsum(hc, axis=0), axis=1).astype(float),
    )


def _lognorm_cdf(x: np.ndarray, shift: float) -> np.ndarray:
    from scipy.stats import norm

    return np.asarray(norm.cdf((np.log(x) - math.log(0.01) - math.log1p(shift)) / 0.5))


def test_tail_increments_match_exceedances_and_a_predictable_boundary() -> None:
    le, base, cand = _histograms(7)
    q = 0.99
    inc = tail_increments(cand, base, le, q, np.array([1.0, 1.1]))
    assert inc.bidx[0] == -1 and np.all(inc.y[:, 0] == 0.0)  # no earlier look: no boundary, no bet
    for i in range(1, base.shape[0]):
        # the boundary is the control's q-quantile over the looks before i, interpolated in its
        # bucket (12.5% wide here: fine enough to interpolate, see FINE_BUCKET)
        b = lat.quantile(base[i - 1], le, q)
        assert inc.boundary[i] == pytest.approx(b)
        assert le[inc.bidx[i] - 1] < b <= le[inc.bidx[i]] if inc.bidx[i] > 0 else b <= le[0]
        for g, factor in enumerate((1.0, 1.1)):
            ex_c = lat.exceedances(cand[i - 1 : i + 1], le, np.array([factor * b]))[:, 0]
            above_c = ex_c[1] - ex_c[0]
            ex_b = lat.exceedances(base[i - 1 : i + 1], le, np.array([b]))[:, 0]
            above_b = ex_b[1] - ex_b[0]
            n_c, n_b = cand[i, -1] - cand[i - 1, -1], base[i, -1] - base[i - 1, -1]
            w = n_c * n_b / (n_c + n_b)
            assert inc.y[g, i] == pytest.approx(w * (above_c / n_c - above_b / n_b))
    idx, bound, share = predictable_boundary(base, le, q)
    assert np.array_equal(idx, inc.bidx)
    assert np.allclose(bound[1:], inc.boundary[1:])
    assert np.allclose(share[1:], 1.0 - q) and np.allclose(inc.resolved_q[1:], q)  # the quantile asked for


def test_invert_keeps_what_neither_side_rejects() -> None:
    values = np.linspace(0.0, 1.0, 11)
    crit = math.log(2 / 0.05)
    fail = np.where(values < 0.3, crit + 1, 0.0)
    ok = np.where(values > 0.65, crit + 1, 0.0)
    assert invert(values, fail, ok, 0.05) == (pytest.approx(0.3), pytest.approx(0.6))
    assert invert(values, np.zeros(11), np.zeros(11), 0.05) == (-math.inf, math.inf)
    assert invert(values, np.full(11, 99.0), np.zeros(11), 0.05) is None


def test_ratio_confidence_sequence_covers_the_truth_at_every_look() -> None:
    """A/A arms of equal size (exchangeable): the ratio's sequence must contain 1 at every
    look in at least 1 - alpha of runs (exact argument; here checked on 150 seeded runs)."""
    rng = np.random.default_rng(8)
    misses = 0
    for _ in range(150):
        n = rng.poisson(400, (2, 30)).astype(float)
        x = rng.binomial(n.astype(int), 0.02).astype(float)
        lo, hi = ratio_interval(x[0], n[0], x[1], n[1], 0.05)
        assert lo < hi
        # the running sequence: check every look
        from mlserve.stats.betting import ratio_sequence

        grid, fail, ok = ratio_sequence(x[0], n[0], x[1], n[1], 0.05)
        one = int(np.argmin(np.abs(grid - 1.0)))
        misses += bool(np.any(fail[one] >= math.log(2 / 0.05)) or np.any(ok[one] >= math.log(2 / 0.05)))
    assert misses <= 15  # 5% of 150 is 7.5; 15 is far in the tail of Binomial(150, 0.05)


def test_a_doubled_error_rate_is_caught_within_the_planned_looks() -> None:
    """The realistic horizon of issue 15: 1% errors, margin 0.5 points, a 25% canary against a
    25% control, 2,000 requests per look, 30 looks. The fixed-horizon z-test's power there
    is 0.97; the interval test (deadline strategy) catches about 0.92 (benchmark)."""
    rng = np.random.default_rng(9)
    caught = 0
    reps = 120
    for _ in range(reps):
        n = rng.poisson(500, (2, 30)).astype(float)
        xc = rng.binomial(n[0].astype(int), 0.02).astype(float)
        xb = rng.binomial(n[1].astype(int), 0.01).astype(float)
        ev = count_evidence(xc, n[0], xb, n[1], 0.005, False, True, 0.05, 0.05, Betting(horizon=30))
        caught += bool(ev.p_fail[-1] <= 0.05)
        assert ev.p_pass[-1] > 0.05  # never shown non-inferior
    assert caught >= 0.8 * reps


def test_absolute_margin_needs_no_errors_at_the_control() -> None:
    """An error-free control does not make an absolute margin untestable (the ratio test's
    plug-in did): a candidate failing 5% of requests is rolled back."""
    n = np.full(20, 200.0)
    xc = np.full(20, 10.0)
    ev = count_evidence(xc, n, np.zeros(20), n, 0.005, False, True, 0.05, 0.05, Betting(horizon=20))
    assert ev.p_fail[-1] <= 0.05
    # and zero errors against zero errors, with plenty of traffic, is evidence of non-inferiority
    ev0 = count_evidence(np.zeros(20), n * 10, np.zeros(20), n * 10, 0.005, False, True, 0.05, 0.05)
    assert ev0.p_pass[-1] <= 0.05 and ev0.p_fail[-1] == 1.0


def test_higher_is_better_swaps_the_direction() -> None:
    n = np.full(20, 1000.0)
    low = np.full(20, 50.0)  # the candidate converts 5%, the control 10%
    high = np.full(20, 100.0)
    ev = count_evidence(low, n, high, n, 0.1, True, False, 0.05, 0.05, Betting(horizon=20))
    assert ev.p_fail[-1] <= 0.05 and ev.p_pass[-1] == 1.0
    ev = count_evidence(high, n, low, n, 0.1, True, False, 0.05, 0.05, Betting(horizon=20))
    assert ev.p_pass[-1] <= 0.05 and ev.p_fail[-1] == 1.0


def test_latency_evidence_and_its_sequence() -> None:
    le, base, cand = _histograms(10, looks=20, shift=0.5)
    ev = tail_evidence(cand, base, le, 0.99, 0.1, True, 0.05, 0.05, Betting(horizon=20))
    assert not ev.defined[0] and ev.defined[1:].all()
    assert np.allclose(ev.threshold[1:], ev.boundary[1:] * 1.1)
    assert ev.p_fail[-1] <= 0.05 and ev.p_pass[-1] == 1.0
    grid, fail, ok = factor_sequence(cand, base, le, 0.99, 0.05, Betting(horizon=20))
    lo, hi = invert(grid - 1.0, fail[:, -1], ok[:, -1], 0.05) or (None, None)
    assert lo is not None and hi is not None and lo < 0.5 < hi
    _, base2, cand2 = _histograms(11, looks=20)
    same = tail_evidence(cand2, base2, le, 0.99, 0.1, True, 0.05, 0.05, Betting(horizon=20))
    assert same.p_fail[-1] > 0.05


def test_standardise_without_variance_is_no_bet() -> None:
    assert np.array_equal(standardise(np.array([1.0, -2.0]), np.array([0.0, 4.0])), np.array([0.0, -1.0]))


def test_the_interval_unit_is_registered_and_bets_with_these_tests() -> None:
    """``test_unit = "interval"`` is an entry of the evidence units the engine dispatches
    through; its tracks are exactly ``count_evidence`` and ``tail_evidence`` on the looks'
    increments, at Holm's first-step share of alpha and the spec's horizon."""
    from mlserve.stats.evidence import UNITS, Counts, Histograms, PerInterval
    from mlserve.stats.spec import AnalysisSpec, Margin, MetricSpec

    errors = MetricSpec("error_rate", "error_rate", Margin(0.002, relative=False), critical=True)
    p99 = MetricSpec("latency_p99", "latency", Margin(0.1, relative=True), quantile=0.99)
    spec = AnalysisSpec(metrics=(errors, p99), alpha=0.05, test_unit="interval", horizon=20)
    unit = UNITS["interval"](spec)
    assert isinstance(unit, PerInterval) and unit.betting == Betting(horizon=20)
    assert unit.level(errors) == pytest.approx(0.04) and unit.level(p99) == pytest.approx(0.01)

    rng = np.random.default_rng(5)
    n = np.full(20, 2000.0)
    xb, xc = rng.binomial(2000, 0.01, 20).astype(float), rng.binomial(2000, 0.02, 20).astype(float)
    present = np.ones(20, dtype=bool)
    counts = Counts(np.cumsum(xb), np.cumsum(n), np.cumsum(xc), np.cumsum(n), "errors/request")
    track = unit.counts(errors, present, counts, np.ones(20))
    ev = count_evidence(xc, n, xb, n, 0.002, False, True, 0.04, 0.05, Betting(horizon=20))
    assert np.array_equal(track.p_fail, ev.p_fail) and np.array_equal(track.p_pass, ev.p_pass)
    assert track.p_fail[-1] <= 0.05

    le, base, cand = _histograms(12, looks=20, shift=0.5)
    lat_track = unit.latency(p99, present, Histograms(base, cand, le), np.ones(20))
    tail = tail_evidence(cand, base, le, 0.99, 0.1, True, 0.01, 0.05, Betting(horizon=20))
    assert np.array_equal(lat_track.p_fail, tail.p_fail) and np.array_equal(lat_track.p_pass, tail.p_pass)
    assert "interval test" in lat_track.summary(19)[5]
