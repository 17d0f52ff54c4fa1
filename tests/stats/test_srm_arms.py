"""The sample-ratio check over three arms (primary, control, candidate)."""

from __future__ import annotations

import numpy as np

from mlserve.stats.srm import srm_p_values_arms


def _counts(rng: np.random.Generator, p: list[float], looks: int = 30, n: int = 600) -> np.ndarray:
    return rng.multinomial(n, p, size=looks).T.astype(float)  # (arms, looks) per interval


def test_a_correct_three_way_split_rarely_halts_and_a_misrouted_control_does() -> None:
    rng = np.random.default_rng(11)
    weights = np.tile(np.array([[80.0], [10.0], [10.0]]), (1, 30))
    false = sum(srm_p_values_arms(_counts(rng, [0.8, 0.1, 0.1]), weights).min() < 0.001 for _ in range(200))
    assert false <= 2  # an always-valid test at 0.001 over 30 looks
    # the control gets 14% where 10% is configured (the candidate's share is right)
    p = srm_p_values_arms(_counts(rng, [0.76, 0.14, 0.10]), weights)
    assert p[-1] < 0.001 and np.all(np.diff(p) <= 1e-12)  # running minimum: never recovers
    # an idle primary (a 50% step: 0/50/50) is checked as the split of the other two
    w50 = np.tile(np.array([[0.0], [50.0], [50.0]]), (1, 30))
    assert srm_p_values_arms(_counts(rng, [0.0, 0.5, 0.5]), w50).min() > 0.001
