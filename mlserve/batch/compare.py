"""``mlserve compare ENDPOINT V1 V2 --input FILE``: two versions on the same rows, offline.

Both versions score the file through the batch path (resumable, bad rows aside), each
into its own output; the two outputs are merged on the row number and compared:
agreement (same class, or numbers within a tolerance), a sample of the rows where they
disagree, with labels the paired metric differences (accuracy, AUC, log loss; RMSE for
regressors) with confidence intervals, and latency per version. A gate turns it into
an exit code for CI: 0 passed, 3 a threshold missed.

Gate semantics (also in docs/batch.md): ``--max-disagreement X`` fails when the share of
rows on which the versions disagree *in this file* exceeds X (a count, not an
inference). ``--min-delta METRIC=VALUE`` fails unless the lower confidence bound of the
candidate's improvement over the baseline is at least VALUE, where improvement is
candidate - baseline for accuracy and AUC and baseline - candidate for log loss and
RMSE (so ``accuracy=-0.01`` means "at most one point worse, with confidence"). A
check that cannot be computed fails: no evidence is never a pass.
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from mlserve import format as fmt
from mlserve.batch import agreement as st
from mlserve.batch.core import BatchOptions, BatchSummary, Progress, plan_batch, run_batch
from mlserve.batch.formats import ROW_ID, read_output
from mlserve.errors import UsageError
from mlserve.status import ExitStatus
from mlserve.timefmt import utc

COMPARE_FORMAT = "mlserve.compare/v1"
METRICS = {"accuracy": "classification", "auc": "classification", "log_loss": "classification", "rmse": "regression"}
TASKS = ("auto", "classification", "regression")


@dataclass(frozen=True)
class CompareOptions:
    batch: BatchOptions  # endpoint, env, input, columns and client settings (version unused)
    baseline: str
    candidate: str
    labels: str | None = None
    prediction: str | None = None  # which output to compare (default: predict, else the first)
    task: str = "auto"
    rtol: float = 1e-6
    atol: float = 1e-9
    sample: int = 20
    confidence: float = 0.95
    max_disagreement: float | None = None
    min_delta: dict[str, float] = field(default_factory=dict)
    out_dir: Path | None = None


@dataclass(frozen=True)
class GateCheck:
    name: str
    threshold: float
    observed: float | None
    passed: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class CompareResult:
    endpoint: str
    baseline: str
    candidate: str
    env: str
    input: str
    out_dir: str
    task: str
    prediction: str
    rows: int
    compared: int
    failed: dict[str, int]
    agreement: dict[str, Any]
    metrics: list[dict[str, Any]]
    disagreements: list[dict[str, Any]]
    latency: dict[str, dict[str, Any]]
    gate: list[GateCheck]
    notes: list[str]
    files: dict[str, str]
    confidence: float
    created: str

    @property
    def passed(self) -> bool:
        return all(g.passed for g in self.gate)

    @property
    def exit_code(self) -> ExitStatus:
        return ExitStatus.OK if self.passed else ExitStatus.REJECTED

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"format": COMPARE_FORMAT}
        for k in self.__dataclass_fields__:
            v = getattr(self, k)
            out[k] = [g.to_dict() for g in v] if k == "gate" else v
        out["passed"] = self.passed
        out["exit_code"] = int(self.exit_code)
        return finite(out)


def finite(value: Any) -> Any:
    """JSON has no NaN or infinity: an undefined number is null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def parse_min_delta(items: list[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or name not in METRICS:
            raise UsageError(
                f"--min-delta: expected METRIC=VALUE with METRIC one of {', '.join(METRICS)} (got {item!r})"
            )
        try:
            out[name] = float(value)
        except ValueError:
            raise UsageError(f"--min-delta {name}: {value!r} is not a number") from None
        if not math.isfinite(out[name]):
            raise UsageError(f"--min-delta {name}: must be finite")
    return out


def check_options(o: CompareOptions) -> None:
    if o.baseline == o.candidate:
        raise UsageError(f"compare needs two different versions (got {o.baseline!r} twice)")
    if o.task not in TASKS:
        raise UsageError(f"--task: must be one of {', '.join(TASKS)} (got {o.task!r})")
    if not 0.5 <= o.confidence < 1:
        raise UsageError(f"--confidence: must be in [0.5, 1) (got {o.confidence:g})")
    if o.max_disagreement is not None and not 0 <= o.max_disagreement <= 1:
        raise UsageError(f"--max-disagreement: must be a share between 0 and 1 (got {o.max_disagreement:g})")
    if o.min_delta and o.labels is None:
        raise UsageError("--min-delta needs --labels COLUMN: metric deltas are computed against the labels")
    if not 0 <= o.sample <= 10_000:
        raise UsageError(f"--sample: must be between 0 and 10000 (got {o.sample})")
    if o.rtol < 0 or o.atol < 0:
        raise UsageError("--rtol and --atol must not be negative")


def default_out_dir(project: Any, endpoint: str, baseline: str, candidate: str) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    base = project.experiments_dir / endpoint / f"compare-{baseline}-{candidate}-{stamp}"
    out, n = base, 1
    while out.exists():
        n += 1
        out = base.with_name(f"{base.name}-{n}")
    return out


def _probe_outputs(project: Any, opts: BatchOptions, version: str) -> tuple[str, ...]:
    """Ask for predict and predict_proba where the server offers both (MLServer's sklearn
    runtime with a classifier); else the server's default outputs."""
    import asyncio

    from mlserve.batch.client import V2Client
    from mlserve.batch.formats import read_chunk

    ep = project.manifest.endpoints[opts.endpoint]
    if opts.outputs or ep.runtime != "sklearn":
        return opts.outputs
    plan = plan_batch(project, replace(opts, version=version, outputs=("predict", "predict_proba")))
    rows = None
    for spec in plan.layout.chunks:
        got = read_chunk(plan.layout, spec, plan.settings.tensor)
        if got.values:
            rows = got.values[:1]
            break
    if rows is None:
        return ()

    async def probe() -> bool:
        client = V2Client(replace(plan.settings, retries=1))
        try:
            outcome = await client.score(rows)
        finally:
            await client.close()
        return not outcome.rejected

    return ("predict", "predict_proba") if asyncio.run(probe()) else ()


def run_compare(
    project: Any,
    o: CompareOptions,
    say: Callable[[str], None] = lambda _m: None,
    progress: Callable[[str, Progress], None] = lambda _v, _p: None,
) -> CompareResult:
    check_options(o)
    b = o.batch
    env_name = project.environment(b.env)
    project.endpoint(b.endpoint, env_name)
    ep = project.manifest.endpoints[b.endpoint]
    for v in (o.baseline, o.candidate):
        if v not in ep.versions:
            raise UsageError(f"endpoint {b.endpoint!r} has no version {v!r} (versions: {', '.join(ep.versions)})")
    out_dir = Path(o.out_dir) if o.out_dir else default_out_dir(project, b.endpoint, o.baseline, o.candidate)
    base_opts = replace(b, labels=o.labels, row_numbers=True, output_format="jsonl", env=env_name)
    outputs = _probe_outputs(project, base_opts, o.baseline)
    summaries: dict[str, BatchSummary] = {}
    paths: dict[str, Path] = {}
    for version in (o.baseline, o.candidate):
        paths[version] = out_dir / f"scores-{version}.jsonl"
        opts = replace(
            base_opts,
            version=version,
            outputs=outputs,
            output=paths[version],
            errors=out_dir / f"errors-{version}.jsonl",
        )
        plan = plan_batch(project, opts)
        say(f"scoring {fmt.count(plan.layout.rows)} rows with {b.endpoint}/{version}")
        summaries[version] = run_batch(plan, functools.partial(progress, version))
    merged = _merge(paths[o.baseline], paths[o.candidate])
    result = _analyse(o, merged, summaries, out_dir, env_name)
    from mlserve.batch.report import write_reports

    files = write_reports(result, out_dir)
    return replace(result, files=files)


@dataclass
class _Merged:
    rows: list[int] = field(default_factory=list)
    ids: list[Any] = field(default_factory=list)
    labels: list[Any] = field(default_factory=list)
    base: list[dict[str, Any]] = field(default_factory=list)
    cand: list[dict[str, Any]] = field(default_factory=list)


def _merge(path_a: Path, path_b: Path) -> _Merged:
    """Rows scored by both versions, matched on the row number (both outputs are in input order)."""
    out = _Merged()
    ia: Iterator[dict[str, Any]] = read_output(path_a, "jsonl")
    ib: Iterator[dict[str, Any]] = read_output(path_b, "jsonl")
    ra, rb = next(ia, None), next(ib, None)
    while ra is not None and rb is not None:
        na, nb = int(ra[ROW_ID]), int(rb[ROW_ID])
        if na == nb:
            out.rows.append(na)
            out.base.append(ra)
            out.cand.append(rb)
            ra, rb = next(ia, None), next(ib, None)
        elif na < nb:
            ra = next(ia, None)
        else:
            rb = next(ib, None)
    return out


def _pick_prediction(record: dict[str, Any], wanted: str | None) -> str:
    if wanted is not None:
        if wanted not in record:
            known = ", ".join(k for k in record if k not in (ROW_ID,))
            raise UsageError(f"--prediction: the endpoint has no output {wanted!r} (fields: {known})")
        return wanted
    for name in ("predict", "predictions", "output-0", "output_0"):
        if name in record:
            return name
    for k, v in record.items():
        if k != ROW_ID and isinstance(v, int | float | list) and not isinstance(v, bool):
            return k
    raise UsageError("the endpoint's answers hold no numeric output to compare")


def _num(v: Any) -> float | None:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return None
    return None


def _analyse(
    o: CompareOptions, m: _Merged, summaries: dict[str, BatchSummary], out_dir: Path, env_name: str
) -> CompareResult:
    notes: list[str] = []
    b = o.batch
    n = len(m.rows)
    failed = {v: s.failed for v, s in summaries.items()}
    if n == 0:
        raise UsageError("no row was scored by both versions; nothing to compare")
    first = m.base[0]
    id_key = next(iter(first))
    pred = _pick_prediction(first, o.prediction)
    proba_key = "predict_proba" if isinstance(first.get("predict_proba"), list) else None
    if proba_key is None and isinstance(first.get(pred), list):
        proba_key = pred
    a_vals = [r.get(pred) for r in m.base]
    c_vals = [r.get(pred) for r in m.cand]
    task = o.task
    if task == "auto":
        scalars = [x for x in a_vals[:1000] + c_vals[:1000] if not isinstance(x, list)]
        integral = all(isinstance(x, int) or (isinstance(x, float) and x.is_integer()) for x in scalars)
        task = "classification" if (proba_key is not None or (scalars and integral)) else "regression"
    probs_a = np.array([r[proba_key] for r in m.base], float) if proba_key else None
    probs_c = np.array([r[proba_key] for r in m.cand], float) if proba_key else None

    def cls(vals: list[Any], probs: np.ndarray | None) -> list[Any]:
        if vals and isinstance(vals[0], list):
            assert probs is not None
            return [int(i) for i in probs.argmax(axis=1)]
        return [_num(v) if _num(v) is not None else v for v in vals]

    if task == "classification":
        ca, cc = cls(a_vals, probs_a), cls(c_vals, probs_c)
        agree = np.array([x == y for x, y in zip(ca, cc, strict=True)])
        agreement: dict[str, Any] = {"kind": "class", "rule": "same predicted class"}
    else:
        fa = np.array([_num(v) for v in a_vals], float)
        fc = np.array([_num(v) for v in c_vals], float)
        agree = np.abs(fa - fc) <= o.atol + o.rtol * np.abs(fa)
        agreement = {
            "kind": "numeric",
            "rule": f"|v2 - v1| <= {o.atol:g} + {o.rtol:g} * |v1|",
            "mean_abs_difference": float(np.mean(np.abs(fa - fc))),
            "max_abs_difference": float(np.max(np.abs(fa - fc))),
        }
        ca, cc = list(fa), list(fc)
    k = int(agree.sum())
    rate = st.wilson(k, n, o.confidence)
    agreement.update(
        {
            "rows": n,
            "agree": k,
            "disagree": n - k,
            "agreement": rate.estimate,
            "disagreement": 1 - rate.estimate,
            "interval": {"low": rate.low, "high": rate.high, "confidence": o.confidence},
        }
    )
    if probs_a is not None and probs_c is not None and probs_a.shape == probs_c.shape:
        diff = np.abs(probs_a - probs_c)
        agreement["probability_mean_abs_difference"] = float(diff.mean())
        agreement["probability_max_abs_difference"] = float(diff.max())

    labels_raw = [r.get(o.labels) for r in m.base] if o.labels else []
    metrics: list[st.Delta] = []
    unusable: dict[str, str] = {}
    if o.labels:
        metrics, unusable, note = _label_metrics(o, task, labels_raw, ca, cc, probs_a, probs_c)
        notes += note
    disagreements = _sample(o, m, agree, pred, proba_key, labels_raw, id_key)
    latency = {
        v: {
            "rows_per_second": s.rows_per_second,
            "seconds": s.seconds,
            "requests": s.requests,
            "latency_ms": s.latency_ms,
            "failed_rows": s.failed,
            "batch_size": b.batch_size,
        }
        for v, s in summaries.items()
    }
    gate = _gate(o, agreement, metrics, unusable)
    if any(failed.values()):
        notes.append(
            "rows that failed in either version are left out of the comparison: "
            + ", ".join(f"{v} {fmt.count(c)}" for v, c in failed.items())
        )
    return CompareResult(
        endpoint=b.endpoint,
        baseline=o.baseline,
        candidate=o.candidate,
        env=env_name,
        input=str(b.input),
        out_dir=str(out_dir),
        task=task,
        prediction=pred,
        rows=max(s.rows for s in summaries.values()),
        compared=n,
        failed=failed,
        agreement=agreement,
        metrics=[d.to_dict() for d in metrics] + [{"metric": k, "unavailable": v} for k, v in unusable.items()],
        disagreements=disagreements,
        latency=latency,
        gate=gate,
        notes=notes,
        files={},
        confidence=o.confidence,
        created=utc(fraction=False),
    )


def _label_metrics(
    o: CompareOptions,
    task: str,
    labels_raw: list[Any],
    ca: list[Any],
    cc: list[Any],
    pa: np.ndarray | None,
    pc: np.ndarray | None,
) -> tuple[list[st.Delta], dict[str, str], list[str]]:
    notes: list[str] = []
    unusable: dict[str, str] = {}
    out: list[st.Delta] = []
    nums = [_num(v) for v in labels_raw]
    keep = np.array(
        [v is not None and (x is not None and math.isfinite(x)) for v, x in zip(labels_raw, nums, strict=True)]
    )
    if not keep.any():
        reason = f"no row has a numeric label in column {o.labels!r}"
        for name in METRICS:
            unusable[name] = reason
        return out, unusable, notes
    if int((~keep).sum()):
        notes.append(f"{fmt.count(int((~keep).sum()))} row(s) without a usable label left out of the metrics")
    y = np.array([x for x, k in zip(nums, keep, strict=True) if k], float)
    if task == "classification":
        ya = np.array([_num(x) if _num(x) is not None else math.nan for x in ca], float)[keep]
        yc = np.array([_num(x) if _num(x) is not None else math.nan for x in cc], float)[keep]
        out.append(st.paired_accuracy(ya == y, yc == y, o.confidence))
        classes = np.unique(y)
        if pa is not None and pc is not None:
            pa_k, pc_k = pa[keep], pc[keep]
            width = pa_k.shape[1]
            index = y.astype(int)
            if not np.all(y == index) or index.min() < 0 or index.max() >= width:
                reason = f"labels are not class indices 0..{width - 1} of the probability output"
                unusable["auc"] = unusable["log_loss"] = reason
            else:
                rows = np.arange(index.size)
                out.append(st.paired_log_loss(pa_k[rows, index], pc_k[rows, index], o.confidence))
                if width == 2 and classes.size == 2:
                    out.append(st.delong(index == 1, pa_k[:, 1], pc_k[:, 1], o.confidence))
                else:
                    unusable["auc"] = "AUC is computed for binary classifiers (two classes among the labels)"
        else:
            unusable["auc"] = unusable["log_loss"] = "the endpoint gives no class probabilities"
        unusable["rmse"] = "RMSE is for regressors"
    else:
        fa = np.array([float(x) for x in ca], float)[keep]
        fc = np.array([float(x) for x in cc], float)[keep]
        out.append(st.rmse_difference(y, fa, fc, o.confidence))
        for name in ("accuracy", "auc", "log_loss"):
            unusable[name] = "a classifier's metric; this endpoint's predictions are numbers (regression)"
    return out, unusable, notes


def _sample(
    o: CompareOptions,
    m: _Merged,
    agree: np.ndarray,
    pred: str,
    proba_key: str | None,
    labels: list[Any],
    id_key: str,
) -> list[dict[str, Any]]:
    where = [int(i) for i in np.flatnonzero(~agree)]
    rng = random.Random(20261123)  # the same rows each run
    chosen = sorted(rng.sample(where, min(o.sample, len(where))))
    out = []
    for i in chosen:
        row: dict[str, Any] = {"row": m.rows[i], "id": m.base[i].get(id_key)}
        row[o.baseline] = m.base[i].get(pred)
        row[o.candidate] = m.cand[i].get(pred)
        if proba_key and proba_key != pred:
            row[f"{o.baseline} {proba_key}"] = m.base[i].get(proba_key)
            row[f"{o.candidate} {proba_key}"] = m.cand[i].get(proba_key)
        if labels:
            row["label"] = labels[i]
        out.append(row)
    return out


def _gate(
    o: CompareOptions, agreement: dict[str, Any], metrics: list[st.Delta], unusable: dict[str, str]
) -> list[GateCheck]:
    checks = []
    if o.max_disagreement is not None:
        observed = float(agreement["disagreement"])
        ok = observed <= o.max_disagreement
        checks.append(
            GateCheck(
                "disagreement",
                o.max_disagreement,
                observed,
                ok,
                f"{fmt.count(agreement['disagree'])} of {fmt.count(agreement['rows'])} rows disagree "
                f"({fmt.share(observed, 3)}); at most {fmt.share(o.max_disagreement, 3)} allowed",
            )
        )
    by_name = {d.metric: d for d in metrics}
    for name, threshold in o.min_delta.items():
        d = by_name.get(name)
        if d is None:
            checks.append(
                GateCheck(
                    f"min_delta:{name}", threshold, None, False, f"{name} cannot be computed: {unusable.get(name, '?')}"
                )
            )
            continue
        imp = d.improvement
        ok = imp.low >= threshold
        checks.append(
            GateCheck(
                f"min_delta:{name}",
                threshold,
                imp.low,
                ok,
                f"{name} {fmt.fixed(d.baseline)} -> {fmt.fixed(d.candidate)}; improvement "
                f"{fmt.fixed(imp.estimate, sign=True)} {fmt.interval((imp.low, imp.high), 'difference')} at "
                f"{fmt.share(o.confidence, 0)}; its lower bound must be >= {fmt.fixed(threshold, sign=True)}",
            )
        )
    return checks
