"""Drift statistics on binned counts, checked against scipy's reference implementations and
by simulation (what PSI does on windows drawn from the reference itself)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import chi2_contingency, wasserstein_distance

from mlserve.stats import drift as d


@pytest.fixture
def hists() -> tuple[d.Bins, list[int], list[int], np.ndarray]:
    rng = np.random.default_rng(7)
    ref = rng.normal(size=5000)
    cur = rng.normal(0.4, 1.2, size=1500)
    bins = d.quantile_edges(ref, 10)
    return bins, d.histogram(bins, ref), d.histogram(bins, cur), ref


def test_deciles_hold_equal_reference_mass(hists: tuple[d.Bins, list[int], list[int], np.ndarray]) -> None:
    bins, ref_counts, _, _ = hists
    assert bins.size == 10 and not bins.categorical
    assert ref_counts == [500] * 10


def test_jensen_shannon_matches_scipy(hists: tuple[d.Bins, list[int], list[int], np.ndarray]) -> None:
    _, a, b, _ = hists
    p = (np.array(a) + 0.5) / (sum(a) + 5.0)
    q = (np.array(b) + 0.5) / (sum(b) + 5.0)
    assert d.jensen_shannon(a, b) == pytest.approx(float(jensenshannon(p, q, base=2)), rel=1e-12)
    assert d.jensen_shannon(a, a) == pytest.approx(0.0, abs=1e-7)
    assert d.jensen_shannon([1000, 0], [0, 1000]) > 0.97  # disjoint -> close to 1


def test_psi_is_the_symmetrised_kl_divergence(hists: tuple[d.Bins, list[int], list[int], np.ndarray]) -> None:
    _, a, b, _ = hists
    p = (np.array(a) + 0.5) / (sum(a) + 5.0)
    q = (np.array(b) + 0.5) / (sum(b) + 5.0)
    kl = lambda x, y: float(np.sum(x * np.log(x / y)))  # noqa: E731
    assert d.psi(a, b) == pytest.approx(kl(p, q) + kl(q, p), rel=1e-12)
    assert d.psi(a, b) == pytest.approx(d.psi(b, a), rel=1e-12)


def test_wasserstein_matches_scipy_on_the_bin_representatives(
    hists: tuple[d.Bins, list[int], list[int], np.ndarray],
) -> None:
    bins, a, b, ref = hists
    want = wasserstein_distance(bins.centres, bins.centres, a, b) / ref.std()
    assert d.wasserstein(bins.centres, a, b, ref.std()) == pytest.approx(want, rel=1e-12)
    # bin means as representatives keep the binned distance near the true shift of 0.4 sd
    rng = np.random.default_rng(1)
    shifted = d.histogram(bins, rng.normal(0.4, 1.0, 20000))
    assert d.wasserstein(bins.centres, a, shifted, ref.std()) == pytest.approx(0.4, abs=0.05)


def test_chi_square_matches_scipy(hists: tuple[d.Bins, list[int], list[int], np.ndarray]) -> None:
    _, a, b, _ = hists
    stat, dof, p = d.chi2_homogeneity(a, b)
    want = chi2_contingency(np.array([a, b]), correction=False)
    assert (stat, dof) == (pytest.approx(want[0], rel=1e-12), want[2])
    assert p == pytest.approx(want[1], rel=1e-9)


def test_chi_square_is_withheld_when_the_window_is_too_small() -> None:
    ref = [1000] * 10
    assert d.compare(ref, [1, 0, 2, 0, 1, 0, 0, 1, 0, 0], list(range(10)), 1.0).chi2_p_value is None
    assert d.compare(ref, [30] * 10, list(range(10)), 1.0).chi2_p_value == pytest.approx(1.0)


def test_categorical_features_get_one_bin_per_value() -> None:
    bins = d.quantile_edges([0, 1, 1, 0, 1, 1, 1], 10)
    assert bins.categorical and bins.edges == (0.5,) and bins.centres == (0.0, 1.0)
    assert d.histogram(bins, [0, 1, 1, 2, -3]) == [2, 3]  # unseen values go to the outer bins
    assert d.wasserstein(bins.centres, [50, 50], [25, 75], 0.5) == pytest.approx(0.5)


def test_values_on_an_edge_and_non_finite_values() -> None:
    bins = d.quantile_edges(np.arange(100.0), 4)
    assert bins.edges == (24.75, 49.5, 74.25)
    assert d.histogram(bins, [24.75, 24.7, math.nan, math.inf]) == [1, 1, 0, 0]


@pytest.mark.parametrize(("n", "p99_bound"), [(200, 0.15), (1000, 0.04)])
def test_psi_of_windows_from_the_reference_itself_stays_far_below_the_alert_threshold(n: int, p99_bound: float) -> None:
    """The false-alarm side of the drift alert: windows of n rows drawn from the reference
    distribution (1,000 windows) against a 5,000-row reference, 10 decile bins."""
    rng = np.random.default_rng(11)
    ref = rng.normal(size=5000)
    bins = d.quantile_edges(ref, 10)
    counts = d.histogram(bins, ref)
    values = np.array([d.psi(counts, d.histogram(bins, rng.normal(size=n))) for _ in range(1000)])
    assert np.quantile(values, 0.99) < p99_bound < d.PSI_SIGNIFICANT
    assert values.max() < d.PSI_SIGNIFICANT
    # and a one-standard-deviation shift of the mean is far above it at either size
    assert d.psi(counts, d.histogram(bins, rng.normal(1.0, 1.0, n))) > 3 * d.PSI_SIGNIFICANT
