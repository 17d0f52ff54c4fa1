"""The prediction gate: is the candidate's share of positive predictions the control's, within a
factor, under the same traffic?

A fraud model that suddenly flags twice as many transactions is a regression even when its
latency and errors are fine. Both arms of a canary see the same traffic (random split), so
their shares of positive predictions estimate the same quantity unless the model changed its
behaviour. Positives are events and predictions their exposure, exactly as errors and
requests are for the error-rate gate, so the count evidence of the analysis' test unit
applies (:mod:`mlserve.stats.evidence`: per request, the always-valid mixture test of a rate
ratio; per interval, one bet per look), once in each direction.

The gate is two-sided with a relative margin ``m`` (the manifest's ``margin = "25%"``):

- **fail** (roll back): evidence that ``rho = share_c / share_b`` is above ``1 + m`` (the
  count evidence with lower better and margin ``m``) *or* below ``1 / (1 + m)`` (higher
  better and margin ``m / (1 + m)``, the same edge seen from the other side). Two one-sided
  always-valid tests, Bonferroni: ``p = 2 min(p_up, p_down)``.
- **pass** (promotable): evidence that ``rho`` is inside ``(1 / (1 + m), 1 + m)``: both
  one-sided nulls at the edges are rejected (an intersection-union test, so ``p = max``),
  the sequential counterpart of TOST equivalence.

Assumption, written down: each prediction is a Bernoulli draw whose positive probability does
not depend on the arm under the null. Positives of a Bernoulli stream are less dispersed than
Poisson events of the same rate, so the conditional binomial model is conservative here; the
false-rollback rate on A/A streams is measured in ``tests/monitoring/test_prediction_gate.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from mlserve.stats.evidence import Array, Counts, Evidence, Mask, Summary, Track
from mlserve.stats.spec import Margin, MetricSpec

UNIT = "positives/prediction"


@dataclass(frozen=True)
class PredictionEvidence:
    """Running always-valid p-values at every look, and the two one-sided tracks they join."""

    p_fail: Array
    p_pass: Array
    up: Track  # candidate flags more than (1 + m) times as often (its p_fail), or not (its p_pass)
    down: Track  # candidate flags less than 1 / (1 + m) as often, or not


def prediction_evidence(
    spec: MetricSpec, present: Mask, counts: Counts, regime: Array, evidence: Evidence
) -> PredictionEvidence:
    """``counts``: cumulative positives (x) over predictions (n) of the control (b) and the
    candidate (c) at every look; ``spec.margin`` must be relative and above 0."""
    m = spec.margin.value
    if not (spec.margin.relative and m > 0):
        raise ValueError("the prediction gate needs a relative margin above 0")
    up = evidence.counts(replace(spec, better="lower", margin=Margin(m, True)), present, counts, regime)
    down = evidence.counts(replace(spec, better="higher", margin=Margin(m / (1 + m), True)), present, counts, regime)
    p_fail = np.minimum(1.0, 2.0 * np.minimum(up.p_fail, down.p_fail))
    p_pass = np.maximum(up.p_pass, down.p_pass)
    return PredictionEvidence(p_fail, p_pass, up, down)


def prediction_track(spec: MetricSpec, present: Mask, counts: Counts, regime: Array, evidence: Evidence) -> Track:
    """The gate's track: both shares, their ratio minus one and its confidence sequence (from
    the upper side's count evidence), with how many predictions each arm returned."""
    ev = prediction_evidence(spec, present, counts, regime, evidence)
    idx = np.flatnonzero(present)

    def summary(j: int) -> Summary:
        upto = idx[idx <= j]
        if not upto.size:
            return None, None, None, None, UNIT, "no predictions for both variants yet"
        last = upto[-1]
        b_share, c_share, est, ci, _unit, note = ev.up.summary(j)
        told = f"share of positive predictions, {int(counts.nc[last]):,} candidate / {int(counts.nb[last]):,} control predictions"
        return b_share, c_share, est, ci, UNIT, f"{told}; {note}" if note else told

    return Track(spec, present, ev.p_fail, ev.p_pass, summary)
