"""Power planning: how much traffic (and time) a canary step needs to decide.

For a step at candidate weight ``w``, the always-valid test of sequential.py sees
events (errors, or requests slower than the latency threshold) split between the
variants; conditional on ``N`` events, the candidate's count is Binomial(N, theta).
The plan finds, by a seeded Monte Carlo over event streams, the number of events by
which the mixture test (checked after every event) has rejected with the requested
probability, and converts events into requests and wall time. Looks come at intervals,
not after every event, so a real rollout needs up to one interval more.
The fixed-horizon sample size for the same power is reported beside it for scale.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from mlserve.stats.kinds import kind_of
from mlserve.stats.sequential import DEFAULT_MIXTURE, Mixture, logsumexp
from mlserve.stats.snapshot import Snapshot
from mlserve.stats.spec import AnalysisSpec, MetricSpec


@dataclass(frozen=True)
class MetricPlan:
    metric: str
    kind: str
    null_ratio: float  # rate ratio at the margin
    alt_ratio: float  # rate ratio of the regression to detect
    events: int | None  # events needed (None: regression within the margin, undetectable)
    candidate_requests: int | None
    total_requests: int | None
    seconds: float | None
    fixed_horizon_requests: int | None
    promote_total_requests: int | None  # to show a harmless candidate non-inferior
    promote_seconds: float | None
    note: str = ""


@dataclass(frozen=True)
class StepPlan:
    weight: float
    metrics: tuple[MetricPlan, ...]
    seconds: float | None  # time to catch the regression whichever metric it hits (the slowest)
    promote_seconds: float | None


@dataclass(frozen=True)
class Plan:
    rps: float
    alpha: float
    power: float
    baseline_error_rate: float
    error_ratio: float
    latency_shift: float
    latency_sigma: float
    steps: tuple[StepPlan, ...]
    assumptions: list[str] = field(default_factory=list)


def _theta(log_ratio: float, w: float) -> float:
    return 1.0 / (1.0 + (1.0 - w) / (w * math.exp(log_ratio)))


def events_needed(
    w: float,
    log_rho0: float,
    log_rho1: float,
    alpha: float,
    power: float,
    side: int = 1,
    mixture: Mixture = DEFAULT_MIXTURE,
    limit: int = 400_000,
    paths: int = 600,
    seed: int = 20261123,
) -> int | None:
    """Events (both variants together) by which the sequential mixture test, checked
    after every event, has rejected with probability ``power`` (seeded Monte Carlo over
    ``paths`` event streams; at a constant weight each event moves the statistic by a
    fixed amount, so a path costs a cumulative sum)."""
    if side * (log_rho1 - log_rho0) <= 0 or not 0 < w < 1:
        return None
    g, logw = mixture.arrays()
    g = g * (1.0 if side > 0 else -1.0)
    t0 = _theta(log_rho0, w)
    t1g = np.array([_theta(log_rho0 + x, w) for x in g])
    a = np.log(t1g / t0)  # a candidate event
    b = np.log((1 - t1g) / (1 - t0))  # a baseline event
    theta = _theta(log_rho1, w)
    rng = np.random.default_rng(seed)
    crit = math.log(1.0 / alpha)
    first = np.full(paths, np.inf)
    x = np.zeros(paths)
    done = 0
    chunk = 256
    while done < limit:
        draws = rng.random((paths, chunk)) < theta
        xs_all = x[:, None] + np.cumsum(draws, axis=1)  # candidate events after each event
        # check every event early on, then at a few hundred points per chunk (the
        # rollout itself only looks once per interval)
        stride = max(1, chunk // 256)
        cols = np.arange(stride - 1, chunk, stride)
        xs = xs_all[:, cols]
        ns = done + 1.0 + cols[None, :].astype(float)
        lm = logsumexp(
            logw[None, None, :] + xs[:, :, None] * a[None, None, :] + (ns - xs)[:, :, None] * b[None, None, :],
            axis=2,
        )
        crossed = lm >= crit
        hit = crossed.any(axis=1) & ~np.isfinite(first)
        first[hit] = done + 1 + cols[np.argmax(crossed[hit], axis=1)]
        x = xs_all[:, -1]
        done += chunk
        if np.mean(np.isfinite(first)) >= power:
            return int(np.quantile(first, power))
        chunk = min(chunk * 2, 65536)
    return None


def fixed_horizon_events(w: float, log_rho0: float, log_rho1: float, alpha: float, power: float) -> float:
    """Events for a one-sided fixed-sample binomial test of theta0 vs theta1 (normal approx.)."""
    from scipy.stats import norm

    t0, t1 = _theta(log_rho0, w), _theta(log_rho1, w)
    za, zb = norm.ppf(1 - alpha), norm.ppf(power)
    return float(((za * math.sqrt(t0 * (1 - t0)) + zb * math.sqrt(t1 * (1 - t1))) / (t1 - t0)) ** 2)


def _metric_plan(
    spec: MetricSpec,
    w: float,
    event_rate_base: float,
    log_rho0: float,
    log_rho1: float,
    rps: float,
    alpha: float,
    power: float,
    note: str,
    compared: float = 1.0,
) -> MetricPlan:
    """``w``: the candidate's share of the compared requests; ``compared``: the share of all
    traffic the compared arms take (1 against the primary; twice the step's weight against a
    control, whose share equals the candidate's)."""
    n = events_needed(w, log_rho0, log_rho1, alpha, power, +1)
    n_ok = events_needed(w, log_rho0, 0.0, alpha, power, -1) if log_rho0 > 0 else None
    per_request = event_rate_base * ((1 - w) + w * math.exp(log_rho1)) * compared
    per_request_ok = event_rate_base * compared
    total = n / per_request if n is not None and per_request > 0 else None
    total_ok = n_ok / per_request_ok if n_ok is not None and per_request_ok > 0 else None
    fh = None
    if log_rho1 > log_rho0 and per_request > 0:
        fh = math.ceil(fixed_horizon_events(w, log_rho0, log_rho1, alpha, power) / per_request)
    if n is None and log_rho1 <= log_rho0:
        note = (note + "; " if note else "") + "the regression is within the margin: it is not a reason to roll back"
    return MetricPlan(
        metric=spec.name,
        kind=spec.kind,
        null_ratio=math.exp(log_rho0),
        alt_ratio=math.exp(log_rho1),
        events=n,
        candidate_requests=math.ceil(total * compared * w) if total is not None else None,
        total_requests=math.ceil(total) if total is not None else None,
        seconds=total / rps if total is not None else None,
        fixed_horizon_requests=fh,
        promote_total_requests=math.ceil(total_ok) if total_ok is not None else None,
        promote_seconds=total_ok / rps if total_ok is not None else None,
        note=note,
    )


def plan(
    spec: AnalysisSpec,
    *,
    steps: Sequence[float],
    rps: float,
    error_rate: float,
    error_ratio: float = 2.0,
    latency_shift: float = 0.25,
    latency_sigma: float = 0.5,
    power: float = 0.8,
    control: bool = False,
) -> Plan:
    """Traffic and time each step (candidate weight in percent) needs to catch the given
    regressions (and to promote a harmless candidate), under the spec's margins and alpha.
    ``control``: the candidate is compared with a control of its own share (steps up to
    50%), so half of the compared requests are the candidate's and the primary's are not
    compared."""
    alpha = spec.alpha
    out = []
    for pct in [float(s) for s in steps if 0 < float(s) < 100]:
        w = pct / 100.0
        compared = 1.0
        if control and w <= 0.5:
            w, compared = 0.5, 2 * w
        metrics = []
        for m in spec.metrics:
            kind = kind_of(m)
            if kind.planned_as == "errors":  # error_rate; stream_errors (broken streams per stream)
                rho0 = 1.0 + (m.margin.value if m.margin.relative else m.margin.value / max(error_rate, 1e-12))
                metrics.append(
                    _metric_plan(
                        m, w, error_rate, math.log(rho0), math.log(error_ratio), rps, alpha, power, "", compared
                    )
                )
            elif kind.planned_as == "latency":  # latency, ttft, inter_token; tokens_per_second on seconds per token
                metrics.append(
                    _latency_plan(kind.oriented(m), w, rps, alpha, power, latency_shift, latency_sigma, compared)
                )
        secs = [m.seconds for m in metrics]
        psecs = [m.promote_seconds for m in metrics]
        out.append(
            StepPlan(weight=pct, metrics=tuple(metrics), seconds=_slowest(secs), promote_seconds=_slowest(psecs))
        )
    assumptions = [
        f"steady traffic of {rps:g} requests/s split by the step's weight",
        f"baseline error rate {error_rate:g}; latencies log-normal with spread sigma={latency_sigma:g}",
        "a step must run until the slowest metric would catch its regression (Holm across metrics adds a little)",
        "promotion: every metric must show non-inferiority, so the slowest metric sets the time",
        "ratio metrics are not planned here (no baseline rate given)",
    ]
    if control:
        assumptions.append(
            "control = 'replica': the candidate is compared with a control of its own share, so only the "
            "candidate's and the control's requests count (twice the step's weight of the traffic)"
        )
    return Plan(
        rps=rps,
        alpha=alpha,
        power=power,
        baseline_error_rate=error_rate,
        error_ratio=error_ratio,
        latency_shift=latency_shift,
        latency_sigma=latency_sigma,
        steps=tuple(out),
        assumptions=assumptions,
    )


def _slowest(seconds: Sequence[float | None]) -> float | None:
    """The step lasts until its slowest metric decides (unknown when any cannot)."""
    if not seconds or any(s is None for s in seconds):
        return None
    return max(s for s in seconds if s is not None)


def _latency_plan(
    m: MetricSpec,
    w: float,
    rps: float,
    alpha: float,
    power: float,
    latency_shift: float,
    latency_sigma: float,
    compared: float = 1.0,
) -> MetricPlan:
    from scipy.stats import norm

    q = float(m.quantile or 0.99)
    # log-normal latencies with spread sigma; fine buckets assumed at the quantile
    base_q = math.exp(latency_sigma * norm.ppf(q))
    thr = base_q * (1 + m.margin.value) if m.margin.relative else base_q + m.margin.value
    z_t = math.log(thr) / latency_sigma
    tail = 1.0 - q
    cand_tail = float(norm.sf(z_t - math.log1p(latency_shift) / latency_sigma))
    base_tail_at_thr = float(norm.sf(z_t))
    log_rho1 = math.log(max(cand_tail, 1e-300) / tail)
    # the margin's own null: the candidate's tail at the threshold equals the
    # baseline's at its quantile (rho0 = 1); promotion needs the tail below that
    note = (
        f"p{q * 100:g}; a harmless candidate's tail share at the threshold is "
        f"{base_tail_at_thr / tail:.2f}x the baseline's"
    )
    first = _metric_plan(m, w, tail, 0.0, log_rho1, rps, alpha, power, note, compared)
    # promotion for latency: a harmless candidate has ratio base_tail_at_thr/tail < 1
    n_ok = events_needed(w, 0.0, math.log(base_tail_at_thr / tail), alpha, power, -1)
    per_req = tail * ((1 - w) + w * base_tail_at_thr / tail) * compared
    tot_ok = n_ok / per_req if n_ok is not None else None
    return replace(
        first,
        promote_total_requests=math.ceil(tot_ok) if tot_ok is not None else None,
        promote_seconds=tot_ok / rps if tot_ok is not None else None,
    )


@dataclass(frozen=True)
class ObservedRates:
    error_rate: float | None
    latency_sigma: float | None
    rps: float | None


def rates_from_snapshot(snapshot: Snapshot) -> ObservedRates:
    """Planning inputs read off a snapshot's baseline: its error rate, the spread of its
    log latency (from the p50 and p90 of the histogram) and the request rate between the
    first and last look (when the looks carry ISO timestamps)."""
    from datetime import datetime

    from mlserve.stats.latency import quantile

    last = snapshot.looks[-1]
    base = last.variants[snapshot.baseline]
    error_rate = base.errors / base.requests if base.requests > 0 and base.errors > 0 else None
    sigma = None
    if base.latency is not None and base.requests > 0:
        le = np.asarray(base.latency.le, dtype=float)
        cum = np.asarray(base.latency.counts, dtype=float)
        q50, q90 = quantile(cum, le, 0.5), quantile(cum, le, 0.9)
        if q50 > 0 and q90 > q50:
            sigma = math.log(q90 / q50) / 1.2815515655446004
    rps = None
    if len(snapshot.looks) >= 2:
        try:
            t0 = datetime.fromisoformat(snapshot.looks[0].at.replace("Z", "+00:00"))
            t1 = datetime.fromisoformat(last.at.replace("Z", "+00:00"))
            seconds = (t1 - t0).total_seconds()
        except (ValueError, TypeError):
            seconds = 0.0
        first = snapshot.looks[0]
        done = sum(v.requests for v in last.variants.values()) - sum(v.requests for v in first.variants.values())
        if seconds > 0 and done > 0:
            rps = done / seconds
    return ObservedRates(error_rate, sigma, rps)
