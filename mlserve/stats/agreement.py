"""The shadow gate: do the mirrored candidate's predictions agree with the baseline's?

A one-sample always-valid test of the agreement rate against the policy's
``shadow_agreement`` bound, built from the beta-binomial mixture martingales of
``sequential.py``: *pass* is evidence that the disagreement rate is below ``1 - bound``,
*fail* is evidence that the agreement rate is below ``bound`` (each at level alpha).
A shadow step of a rollout is judged on the engine's error-rate and latency comparison
of the mirrored requests plus this gate (:func:`mlserve.stats.shadow.analyze_shadow`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlserve.stats.sequential import always_valid_p, log_beta_binomial_below


@dataclass(frozen=True)
class AgreementResult:
    agree: int
    compared: int
    bound: float
    verdict: str  # pass | fail | inconclusive | no_data
    estimate: float | None = None
    p_value: float | None = None  # always-valid p for "agrees less than the bound"
    p_value_pass: float | None = None
    ci: tuple[float | None, float | None] = (None, None)  # display interval (Wilson)
    note: str = ""
    name: str = "agreement"
    kind: str = "agreement"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "agree": self.agree,
            "compared": self.compared,
            "estimate": self.estimate,
            "bound": self.bound,
            "verdict": self.verdict,
            "p_value": self.p_value,
            "p_value_pass": self.p_value_pass,
            "ci": list(self.ci),
        }
        if self.note:
            out["note"] = self.note
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AgreementResult:
        ci = data.get("ci") or [None, None]
        return cls(
            agree=int(data.get("agree", 0)),
            compared=int(data.get("compared", 0)),
            bound=float(data.get("bound", 0.0)),
            verdict=str(data.get("verdict", "no_data")),
            estimate=data.get("estimate"),
            p_value=data.get("p_value"),
            p_value_pass=data.get("p_value_pass"),
            ci=(ci[0], ci[1]),
            note=str(data.get("note", "")),
            name=str(data.get("name", "agreement")),
        )


def agreement_test(agree: int, total: int, bound: float, alpha: float) -> AgreementResult:
    """Always-valid test of ``agree`` agreeing predictions out of ``total`` against ``bound``."""
    rate = agree / total if total > 0 else None
    if bound <= 0.0:  # the gate is switched off (shadow_agreement = 0)
        return AgreementResult(int(agree), int(total), bound, "pass", rate, note="agreement gate disabled")
    if total <= 0:
        return AgreementResult(int(agree), int(total), bound, "no_data", rate)
    x_dis = np.array([float(total - agree)])
    x_ok = np.array([float(agree)])
    n = np.array([float(total)])
    p_pass = float(always_valid_p(log_beta_binomial_below(x_dis, n, 1.0 - bound))[-1])
    p_fail = float(always_valid_p(log_beta_binomial_below(x_ok, n, bound))[-1])
    verdict = "fail" if p_fail <= alpha else "pass" if p_pass <= alpha else "inconclusive"
    return AgreementResult(int(agree), int(total), bound, verdict, rate, p_fail, p_pass, _wilson(agree, total, alpha))


def _wilson(x: int, n: int, alpha: float) -> tuple[float, float]:
    """A display interval for the agreement rate (not used for the decision)."""
    from scipy.special import ndtri

    z = float(ndtri(1 - alpha / 2))
    p = x / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, centre - half), min(1.0, centre + half)
