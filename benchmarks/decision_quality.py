"""Decision quality of canary judges, side by side on the same simulated streams.

Judges: mlserve (always-valid mixture tests, Holm, margins), a Kayenta-style judge
(Mann-Whitney U at 98% confidence re-run at every look on the growing window of
per-interval values, as NetflixACAJudge does), a Flagger-style rule (absolute
thresholds per check, rollback after `threshold` failed checks), a fixed-horizon test
with the sample size for 80% power, and Wald's SPRT told the true alternative (an
oracle: the lower bound on expected sample size).

Streams: A/A; error-rate regressions 1.5x, 2x, 3x; latency shifts +10%, +25%, +50%;
canary weights 5% and 10%; 50 looks of 60 s. Every judge sees the same snapshots.

Also measures the replay speed of `mlserve analyze --replay` on 1,000 snapshots of 50
looks, through the real CLI.

    .venv/bin/python benchmarks/decision_quality.py [--quick] [--reps N] [--no-write]
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._report import write_section  # noqa: E402
from mlserve.manifest.analysis import analysis_spec  # noqa: E402
from mlserve.manifest.models import MetricSpec, RolloutPolicy  # noqa: E402
from mlserve.manifest.units import Margin  # noqa: E402
from mlserve.stats import latency as lat  # noqa: E402
from mlserve.stats.engine import analyze  # noqa: E402
from mlserve.stats.power import fixed_horizon_events  # noqa: E402
from mlserve.stats.sequential import wald_sprt_log_lr  # noqa: E402
from mlserve.stats.simulate import Scenario, geometric_buckets, simulate  # noqa: E402
from mlserve.stats.snapshot import Snapshot  # noqa: E402

LOOKS = 50
RPS = 60.0
INTERVAL = 60.0
ERROR_RATE = 0.01
MEDIAN_S = 0.05
SIGMA = 0.5
Q = 0.99
ALPHA = 0.05
POWER = 0.8
ERROR_MARGIN = 0.10  # relative: a candidate up to 10% worse on errors is acceptable
LATENCY_MARGIN = 0.05  # relative: up to 5% slower at p99
BUCKETS = geometric_buckets(0.005, 1.05, 10.0)
WEIGHTS = (5.0, 10.0)
EFFECTS: tuple[tuple[str, str, float], ...] = (
    ("A/A", "none", 0.0),
    ("errors x1.5", "error", 1.5),
    ("errors x2", "error", 2.0),
    ("errors x3", "error", 3.0),
    ("latency +10%", "latency", 0.10),
    ("latency +25%", "latency", 0.25),
    ("latency +50%", "latency", 0.50),
)
# Flagger-style thresholds an operator would set with headroom over the baseline
FLAGGER_ERROR = 2.0 * ERROR_RATE
FLAGGER_P99 = 1.3 * MEDIAN_S * math.exp(SIGMA * stats.norm.ppf(Q))
FLAGGER_THRESHOLD = 5
KAYENTA_CONFIDENCE = 0.98

POLICY = RolloutPolicy(
    alpha=ALPHA,
    min_requests=500,
    metrics=[
        MetricSpec(name="error_rate", kind="error_rate", margin=Margin(ERROR_MARGIN, True), critical=True),
        MetricSpec(name="latency_p99", kind="latency", quantile=Q, margin=Margin(LATENCY_MARGIN, True)),
    ],
)
ZERO_MARGIN = RolloutPolicy(
    alpha=ALPHA,
    min_requests=500,
    metrics=[
        MetricSpec(name="error_rate", kind="error_rate", margin=Margin(0.0, True), critical=True),
        MetricSpec(name="latency_p99", kind="latency", quantile=Q, margin=Margin(0.0, True)),
    ],
)


@dataclasses.dataclass(frozen=True)
class Outcome:
    decision: str  # rollback | promote | none
    look: int  # look of the decision (LOOKS when none)
    cand_requests: int  # candidate requests served up to the decision


@dataclasses.dataclass
class Arrays:
    """Per-look cumulative counts and per-interval values, shared by all judges."""

    req_b: np.ndarray
    req_c: np.ndarray
    err_b: np.ndarray
    err_c: np.ndarray
    cum_b: np.ndarray  # (K, B) cumulative histogram
    cum_c: np.ndarray
    le: np.ndarray


def arrays(snap: Snapshot) -> Arrays:
    vb = [look.variants["v1"] for look in snap.looks]
    vc = [look.variants["v2"] for look in snap.looks]
    return Arrays(
        np.array([v.requests for v in vb], float),
        np.array([v.requests for v in vc], float),
        np.array([v.errors for v in vb], float),
        np.array([v.errors for v in vc], float),
        np.array([v.latency.counts for v in vb], float),  # type: ignore[union-attr]
        np.array([v.latency.counts for v in vc], float),  # type: ignore[union-attr]
        np.asarray(vb[0].latency.le, float),  # type: ignore[union-attr]
    )


def inc(x: np.ndarray) -> np.ndarray:
    return np.diff(np.concatenate([np.zeros((1, *x.shape[1:])), x]), axis=0)


def _outcome(decision: str, j: int, a: Arrays) -> Outcome:
    return Outcome(decision, j + 1, int(a.req_c[j]))


# ---------------------------------------------------------------------------
# Judges
# ---------------------------------------------------------------------------


def judge_mlserve(snap: Snapshot, a: Arrays, policy: RolloutPolicy = POLICY) -> Outcome:
    v = analyze(snap, analysis_spec(policy))
    if v.verdict in ("rollback", "promote") and v.decided_at_look is not None:
        return _outcome(v.verdict, v.decided_at_look - 1, a)
    if v.verdict == "halt" and v.decided_at_look is not None:
        return _outcome("halt", v.decided_at_look - 1, a)
    return _outcome("none", LOOKS - 1, a)


def interval_values(a: Arrays) -> tuple[np.ndarray, ...]:
    """Per-interval error rate and p99 for each variant (the points Kayenta and Flagger see)."""
    db, dc = inc(a.req_b), inc(a.req_c)
    eb = np.where(db > 0, inc(a.err_b) / np.where(db > 0, db, 1), 0.0)
    ec = np.where(dc > 0, inc(a.err_c) / np.where(dc > 0, dc, 1), 0.0)
    hb, hc = inc(a.cum_b), inc(a.cum_c)
    pb = np.array([lat.quantile(h, a.le, Q) for h in hb])
    pc = np.array([lat.quantile(h, a.le, Q) for h in hc])
    return eb, ec, np.nan_to_num(pb), np.nan_to_num(pc)


def mwu_prefix_pvalues(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided Mann-Whitney U p-value on the first k points of x and y, for every k
    (normal approximation without tie correction, as commons-math's MannWhitneyUTest,
    which Kayenta uses). Also returns whether x tends to be larger."""
    gt = (x[:, None] > y[None, :]).astype(float) + 0.5 * (x[:, None] == y[None, :])
    u_x = np.cumsum(np.cumsum(gt, axis=0), axis=1).diagonal()  # U for x over the k x k prefix
    k = np.arange(1, len(x) + 1, dtype=float)
    n1n2 = k * k
    u_max = np.maximum(u_x, n1n2 - u_x)
    var = n1n2 * (2 * k + 1) / 12.0
    z = (u_max - n1n2 / 2.0) / np.sqrt(var)
    p = 2.0 * stats.norm.sf(np.abs(z))
    return p, u_x > n1n2 / 2.0


def judge_kayenta(snap: Snapshot, a: Arrays) -> Outcome:
    eb, ec, pb, pc = interval_values(a)
    fail = np.zeros(LOOKS, bool)
    for base, cand in ((eb, ec), (pb, pc)):
        p, higher = mwu_prefix_pvalues(cand, base)
        fail |= (p < 1 - KAYENTA_CONFIDENCE) & higher
    hits = np.flatnonzero(fail)
    if hits.size:
        return _outcome("rollback", int(hits[0]), a)
    return _outcome("promote", LOOKS - 1, a)


def judge_flagger(snap: Snapshot, a: Arrays) -> Outcome:
    _, ec, _, pc = interval_values(a)
    failed = np.cumsum((ec > FLAGGER_ERROR) | (pc > FLAGGER_P99))
    hits = np.flatnonzero(failed >= FLAGGER_THRESHOLD)
    if hits.size:
        return _outcome("rollback", int(hits[0]), a)
    return _outcome("promote", LOOKS - 1, a)


def _theta(log_rho: float, share: float) -> float:
    return 1.0 / (1.0 + (1.0 - share) / (share * math.exp(log_rho)))


def lognormal_tail_ratio(shift: float, margin: float) -> float:
    """Candidate's share above (1+margin) x the baseline p99, over the baseline's 1%."""
    z = stats.norm.ppf(Q)
    return float(stats.norm.sf(z + (math.log1p(margin) - math.log1p(shift)) / SIGMA) / (1 - Q))


def design_requests(w: float, err_ratio: float, shift: float, alpha: float) -> float:
    """Candidate requests for 80% power, each metric at alpha (Bonferroni over two)."""
    need = 0.0
    if err_ratio > 1 + ERROR_MARGIN:
        ev = fixed_horizon_events(w, math.log1p(ERROR_MARGIN), math.log(err_ratio), alpha, POWER)
        need = max(need, ev / (ERROR_RATE * ((1 - w) + w * err_ratio)) * w)
    if shift > LATENCY_MARGIN:
        rho1 = lognormal_tail_ratio(shift, LATENCY_MARGIN)
        ev = fixed_horizon_events(w, 0.0, math.log(rho1), alpha, POWER)
        need = max(need, ev / ((1 - Q) * ((1 - w) + w * rho1)) * w)
    return need


def _z_reject(x_c: float, x_b: float, n_c: float, n_b: float, log_rho0: float, alpha: float) -> bool:
    n = x_c + x_b
    if n <= 0 or n_c <= 0 or n_b <= 0:
        return False
    t0 = _theta(log_rho0 + math.log(n_c / n_b), 0.5)
    z = (x_c - n * t0) / math.sqrt(n * t0 * (1 - t0))
    return bool(z > stats.norm.ppf(1 - alpha))


def judge_fixed(snap: Snapshot, a: Arrays, horizon: float) -> Outcome:
    """Wait for the designed number of candidate requests (or the last look), test once."""
    reached = np.flatnonzero(a.req_c >= horizon)
    j = int(reached[0]) if reached.size else LOOKS - 1
    a2 = alpha2 = ALPHA / 2
    bad = _z_reject(a.err_c[j], a.err_b[j], a.req_c[j], a.req_b[j], math.log1p(ERROR_MARGIN), a2)
    b = lat_boundary(a.cum_b[j], a.le)
    if b is not None:
        thr = a.le[b] * (1 + LATENCY_MARGIN)
        x_c = float(lat.exceedances(a.cum_c[j : j + 1], a.le, np.array([thr]))[0, 0])
        x_b = float(a.cum_b[j, -1] - a.cum_b[j, b])
        bad |= _z_reject(x_c, x_b, a.req_c[j], a.req_b[j], 0.0, alpha2)
    return _outcome("rollback" if bad else "promote", j, a)


def lat_boundary(cum_last: np.ndarray, le: np.ndarray) -> int | None:
    total = cum_last[-1]
    if total <= 0:
        return None
    share = (total - cum_last[:-1]) / total
    ok = share > 0
    if not ok.any():
        return None
    return int(np.argmin(np.where(ok, np.abs(np.log(np.where(ok, share, 1.0)) - math.log(1 - Q)), np.inf)))


def judge_oracle(snap: Snapshot, a: Arrays, kind: str, effect: float, beta: float = 1 - POWER) -> Outcome | None:
    """Wald's SPRT on the regressed metric, told the true alternative (A=(1-b)/a, B=b/(1-a))."""
    upper, lower = math.log((1 - beta) / ALPHA), math.log(beta / (1 - ALPHA))
    db, dc = inc(a.req_b), inc(a.req_c)
    if kind == "error":
        llr = wald_sprt_log_lr(inc(a.err_c), inc(a.err_b), dc, db, math.log1p(ERROR_MARGIN), math.log(effect))
    elif kind == "latency":
        # the oracle also knows the true boundary: the bucket bound nearest the baseline's p99
        true_p99 = MEDIAN_S * math.exp(SIGMA * stats.norm.ppf(Q))
        b = int(np.argmin(np.abs(np.log(a.le[:-1]) - math.log(true_p99))))
        thr = a.le[b] * (1 + LATENCY_MARGIN)
        x_c = inc(lat.exceedances(a.cum_c, a.le, np.array([thr]))[:, 0])
        x_b = inc(a.cum_b[:, -1] - a.cum_b[:, b])
        s_b = float(stats.norm.sf((math.log(a.le[b]) - math.log(MEDIAN_S)) / SIGMA))
        s_c = float(stats.norm.sf((math.log(thr) - math.log(MEDIAN_S) - math.log1p(effect)) / SIGMA))
        llr = wald_sprt_log_lr(x_c, x_b, dc, db, 0.0, math.log(s_c / s_b))
    else:
        return None
    hit = np.flatnonzero((llr >= upper) | (llr <= lower))
    if not hit.size:
        return _outcome("none", LOOKS - 1, a)
    j = int(hit[0])
    return _outcome("rollback" if llr[j] >= upper else "promote", j, a)


# ---------------------------------------------------------------------------
# Running the grid
# ---------------------------------------------------------------------------

JUDGES = ("mlserve", "kayenta-style", "flagger-style", "fixed-horizon", "oracle SPRT")


def run(reps: int, seed: int) -> dict[tuple[str, float, str], list[Outcome]]:
    out: dict[tuple[str, float, str], list[Outcome]] = {}
    rng = np.random.default_rng(seed)
    # one fixed-horizon design for every stream: 80% power at the smallest regressions
    # of the benchmark (x1.5 errors, +10% latency), as a team must fix n in advance
    for w in WEIGHTS:
        horizon = design_requests(w / 100, 1.5, 0.10, ALPHA / 2)
        for label, kind, effect in EFFECTS:
            scenario = Scenario(
                looks=LOOKS,
                rps=RPS,
                interval_s=INTERVAL,
                weights=(w,),
                error_rate=ERROR_RATE,
                error_ratio=effect if kind == "error" else 1.0,
                latency_median_s=MEDIAN_S,
                latency_sigma=SIGMA,
                latency_shift=effect if kind == "latency" else 0.0,
                buckets=BUCKETS,
            )
            for _ in range(reps):
                snap = simulate(scenario, rng)
                a = arrays(snap)
                res: dict[str, Outcome | None] = {
                    "mlserve": judge_mlserve(snap, a),
                    "kayenta-style": judge_kayenta(snap, a),
                    "flagger-style": judge_flagger(snap, a),
                    "fixed-horizon": judge_fixed(snap, a, horizon),
                    "oracle SPRT": judge_oracle(snap, a, kind, effect),
                }
                if kind == "none":
                    res["mlserve (zero margins)"] = judge_mlserve(snap, a, ZERO_MARGIN)
                for name, o in res.items():
                    if o is not None:
                        out.setdefault((label, w, name), []).append(o)
    return out


def rate(outs: list[Outcome], decision: str) -> float:
    return sum(o.decision == decision for o in outs) / len(outs) if outs else float("nan")


def median_requests(outs: list[Outcome], decision: str) -> float:
    vals = [o.cand_requests for o in outs if o.decision == decision]
    return float(np.median(vals)) if vals else float("nan")


def upper95(k: int, n: int) -> float:
    """Clopper-Pearson upper bound."""
    return float(stats.beta.ppf(0.975, k + 1, n - k)) if k < n else 1.0


def fmt_pct(x: float) -> str:
    return "-" if math.isnan(x) else f"{x * 100:.1f}%"


def fmt_n(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:,.0f}"


def replay_speed(n: int = 1000) -> tuple[float, float, int]:
    """Wall and CPU seconds for `mlserve analyze --replay DIR --json` on n snapshots of 50
    looks (CPU time is what the machine's load does not inflate)."""
    import resource

    rng = np.random.default_rng(99)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        scenario = Scenario(looks=LOOKS, rps=RPS, weights=(10.0,))  # Prometheus' default buckets
        for i in range(n):
            simulate(scenario, rng).write(d / f"snap-{i:05d}.json")
        exe = Path(sys.executable).with_name("mlserve")
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        done = subprocess.run(
            [str(exe), "analyze", "--replay", str(d), "--json"], capture_output=True, text=True, check=False
        )
        elapsed = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, cpu, done.returncode


def plot(results: dict[tuple[str, float, str], list[Outcome]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    names = list(JUDGES)
    colors = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#666666"]
    # 1: false rollback (A/A)
    ax = axes[0]
    vals = [rate(results.get(("A/A", 10.0, n), []) + results.get(("A/A", 5.0, n), []), "rollback") for n in names[:4]]
    ax.bar(names[:4], [v * 100 for v in vals], color=colors[:4])
    ax.axhline(ALPHA * 100, color="black", ls="--", lw=1, label=f"alpha = {ALPHA:g}")
    ax.set_ylabel("false rollback, A/A (%)")
    ax.set_title("A/A streams, 50 looks")
    ax.legend()
    ax.tick_params(axis="x", rotation=20)
    # 2: rollback rate by error effect (10%)
    ax = axes[1]
    labels = [e[0] for e in EFFECTS]
    x = np.arange(len(labels))
    for i, n in enumerate(names[:4]):
        ys = [rate(results.get((lab, 10.0, n), []), "rollback") * 100 for lab in labels]
        ax.plot(x, ys, marker="o", color=colors[i], label=n)
    ax.set_xticks(x, labels, rotation=30, ha="right")
    ax.set_ylabel("rolled back within 50 looks (%)")
    ax.set_title("Rollback rate, 10% canary")
    ax.legend(fontsize=8)
    # 3: median candidate requests to rollback
    ax = axes[2]
    bad = [e[0] for e in EFFECTS if e[1] != "none"]
    x = np.arange(len(bad))
    width = 0.16
    for i, n in enumerate(names):
        ys = [median_requests(results.get((lab, 10.0, n), []), "rollback") for lab in bad]
        ax.bar(x + (i - 2) * width, ys, width, color=colors[i], label=n)
    ax.set_yscale("log")
    ax.set_xticks(x, bad, rotation=30, ha="right")
    ax.set_ylabel("candidate requests to rollback (median)")
    ax.set_title("Speed of detection, 10% canary")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(
    results: dict[tuple[str, float, str], list[Outcome]], reps: int, speed: tuple[float, float, int] | None
) -> str:
    lines: list[str] = []
    bad_labels = [e[0] for e in EFFECTS if e[1] != "none"]
    lines.append(
        f"Simulated canaries: {LOOKS} looks of {INTERVAL:g} s at {RPS:g} requests/s, baseline errors "
        f"{ERROR_RATE:.0%}, log-normal latency (median {MEDIAN_S * 1000:g} ms, sigma {SIGMA:g}) in buckets 5% apart; "
        f"{reps} streams per cell (7 effects x 2 weights); every judge sees the same streams. "
        f"mlserve's policy: alpha {ALPHA:g}, error-rate margin {ERROR_MARGIN:.0%}, p99 margin {LATENCY_MARGIN:.0%}, "
        "so every regression in the grid is beyond its margin (a bad candidate). "
        f"Kayenta-style: Mann-Whitney at {KAYENTA_CONFIDENCE:.0%} confidence on per-interval error rate and p99, re-run "
        f"at every look; Flagger-style: error rate > {FLAGGER_ERROR:.1%} or p99 > {FLAGGER_P99 * 1000:.0f} ms in an "
        f"interval is a failed check, rollback at {FLAGGER_THRESHOLD}; both promote at the last look otherwise. "
        "Fixed-horizon: one-sided z-tests at alpha/2 per metric after the candidate requests that give 80% power "
        "against the smallest regressions of the grid (x1.5 errors, +10% latency); decides at the last look if the "
        "horizon is not reached. Oracle: Wald's SPRT on the regressed metric with the true alternative "
        f"(alpha {ALPHA:g}, beta {1 - POWER:g}). Requests are candidate requests.\n"
    )
    # summary table
    lines.append(
        "| judge | false rollback (A/A) | false promotion (bad) | no decision (bad) | median requests to rollback (bad) | median bad requests served |"
    )
    lines.append("|---|---:|---:|---:|---:|---:|")
    for n in (*JUDGES, "mlserve (zero margins)"):
        aa = results.get(("A/A", 5.0, n), []) + results.get(("A/A", 10.0, n), [])
        bad = [o for lab in bad_labels for w in WEIGHTS for o in results.get((lab, w, n), [])]
        fr = rate(aa, "rollback")
        k = sum(o.decision == "rollback" for o in aa)
        fr_txt = f"{fmt_pct(fr)} (95% CI <= {upper95(k, len(aa)) * 100:.1f}%)" if aa else "n/a"
        served = float(np.median([o.cand_requests for o in bad])) if bad else float("nan")
        lines.append(
            f"| {n} | {fr_txt} | {fmt_pct(rate(bad, 'promote')) if bad else 'n/a'} | "
            f"{fmt_pct(rate(bad, 'none')) if bad else 'n/a'} | {fmt_n(median_requests(bad, 'rollback')) if bad else 'n/a'} | "
            f"{fmt_n(served)} |"
        )
    lines.append(
        "\n_mlserve (zero margins)_ runs only on the A/A streams: with margins of zero an A/A candidate sits exactly "
        "on the boundary of 'worse', the hardest case for the false-rollback guarantee. The oracle is defined only "
        "where there is a regression.\n"
    )
    # per-cell table
    lines.append("Per stream type: rolled back / promoted / median candidate requests to the decision.\n")
    head = "| stream | weight | " + " | ".join(JUDGES) + " |"
    lines.append(head)
    lines.append("|---|---:|" + "---|" * len(JUDGES))
    for label, _, _ in EFFECTS:
        for w in WEIGHTS:
            cells = []
            for n in JUDGES:
                outs = results.get((label, w, n), [])
                if not outs:
                    cells.append("n/a")
                    continue
                decided = [o.cand_requests for o in outs if o.decision in ("rollback", "promote")]
                med = fmt_n(float(np.median(decided))) if decided else "-"
                cells.append(f"{fmt_pct(rate(outs, 'rollback'))} / {fmt_pct(rate(outs, 'promote'))} / {med}")
            lines.append(f"| {label} | {w:g}% | " + " | ".join(cells) + " |")
    # goals
    lines.append("\nGoals (issue 3):\n")
    aa = results.get(("A/A", 5.0, "mlserve"), []) + results.get(("A/A", 10.0, "mlserve"), [])
    aa0 = results.get(("A/A", 5.0, "mlserve (zero margins)"), []) + results.get(
        ("A/A", 10.0, "mlserve (zero margins)"), []
    )
    k0 = sum(o.decision == "rollback" for o in aa0)
    ok1 = rate(aa, "rollback") <= ALPHA and rate(aa0, "rollback") <= ALPHA
    lines.append(
        f"- False rollback <= alpha at {LOOKS} looks: policy margins {fmt_pct(rate(aa, 'rollback'))}, zero margins "
        f"{fmt_pct(rate(aa0, 'rollback'))} (95% CI <= {upper95(k0, len(aa0)) * 100:.1f}%): **{'met' if ok1 else 'not met'}**. "
        f"Kayenta-style: {fmt_pct(rate(results.get(('A/A', 5.0, 'kayenta-style'), []) + results.get(('A/A', 10.0, 'kayenta-style'), []), 'rollback'))}."
    )
    for w in WEIGHTS:
        ml = median_requests(results.get(("errors x2", w, "mlserve"), []), "rollback")
        orc = median_requests(results.get(("errors x2", w, "oracle SPRT"), []), "rollback")
        fh_mde = design_requests(w / 100, 1.5, 0.10, ALPHA / 2)
        fh_true = design_requests(w / 100, 2.0, 0.0, ALPHA / 2)
        r_fh, r_true, r_or = ml / fh_mde, ml / fh_true, ml / orc
        lines.append(
            f"- 2x error-rate regression at {w:g}%: mlserve median {fmt_n(ml)} candidate requests; fixed-horizon design "
            f"{fmt_n(fh_mde)} (for x1.5) -> ratio {r_fh:.2f} (goal <= 0.5: **{'met' if r_fh <= 0.5 else 'not met'}**); "
            f"against a design for exactly x2 ({fmt_n(fh_true)}) the ratio is {r_true:.2f}; oracle SPRT median {fmt_n(orc)} "
            f"-> ratio {r_or:.2f} (goal <= 1.5: **{'met' if r_or <= 1.5 else 'not met'}**)."
        )
    bad = [o for lab in bad_labels for w in WEIGHTS for o in results.get((lab, w, "mlserve"), [])]
    fp = rate(bad, "promote")
    lines.append(f"- False promotion <= 5%: {fmt_pct(fp)}: **{'met' if fp <= 0.05 else 'not met'}**.")
    if speed is not None:
        secs, cpu, rc = speed
        load = os.getloadavg()[0]
        lines.append(
            f"- Replay speed: `mlserve analyze --replay DIR --json` on 1,000 snapshots of {LOOKS} looks (12 buckets) "
            f"took {secs:.1f} s wall, {cpu:.1f} s CPU, including start-up (exit {rc}; 1-minute load average "
            f"{load:.1f} on {os.cpu_count()} cores while measuring); goal < 10 s: "
            f"**{'met' if secs < 10 and rc == 0 else ('met in CPU time, not in wall time under this load' if cpu < 10 and rc == 0 else 'not met')}**."
        )
    lines.append("\n![decision quality](img/decision_quality.png)\n")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50 streams per cell instead of 200")
    parser.add_argument("--reps", type=int, default=None)
    parser.add_argument("--seed", type=int, default=20261123)
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/ alone")
    parser.add_argument("--no-speed", action="store_true", help="skip the replay-speed measurement")
    args = parser.parse_args(argv)
    reps = args.reps or (50 if args.quick else 200)
    t0 = time.perf_counter()
    results = run(reps, args.seed)
    t_sim = time.perf_counter() - t0
    speed = None if args.no_speed else replay_speed()
    body = report(results, reps, speed)
    body += f"\n_Simulation and judging took {t_sim:.0f} s for {reps * len(EFFECTS) * len(WEIGHTS)} streams._\n"
    print(body)
    if not args.no_write:
        plot(results, ROOT / "docs" / "img" / "decision_quality.png")
        write_section(
            "decision_quality", "Decision quality: mlserve vs Kayenta, Flagger, fixed horizon, oracle SPRT", body
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
