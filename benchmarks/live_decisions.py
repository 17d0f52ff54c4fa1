"""Decision quality on the real local target: A/A, slower and erroring candidates, with the
concurrent control (``control = "replica"``) and without it (``"primary"``), in one run.

Everything is real: ``mlserve init`` writes a project, ``mlserve deploy --env local`` starts
MLServer model servers, mlserve's gateway and Prometheus on 127.0.0.1, and every canary is
``mlserve rollout start`` + ``mlserve rollout run --load --users N`` (locust against the
gateway), exactly as a user runs them. Scenarios (candidates):

- ``aa``: ``v1c``, a copy of v1's model file under another version name (a harmless candidate);
- ``slow``: ``vslow``, a 12-tree random forest in place of the logistic regression: more CPU
  per request (its p50/p99 alone, direct to its model server, are measured and printed);
- ``errors``: ``v1e``, v1's model with 2% injected errors (the gateway's fault injection).

Choices (written down, not tuned until something passes): the manifest's default metrics
(critical error rate within 0.5 points, p99 within 10%), ``alpha`` 0.05, ``steps`` given by
``--steps`` (default ``10,100``: one 10% step, the hardest for a regressed candidate),
``interval`` and ``max_duration`` given by flags (defaults 5 s and 150 s),
``on_inconclusive = "rollback"`` (the default: an inconclusive canary counts as rolled back),
``min_requests`` 500. Between canaries mlserve.toml is restored and traffic reset to v1
(``mlserve rollback``), so every canary starts from the same deployment.

    .venv/bin/python benchmarks/live_decisions.py --aa 20 --slow 10 --errors 10   # the full run (~60 min)
    .venv/bin/python benchmarks/live_decisions.py --aa 2 --slow 1 --errors 1 --no-write  # a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._report import machine, write_section  # noqa: E402

BIN = Path(sys.executable).parent
CANDIDATES = {"aa": "v1c", "slow": "vslow", "errors": "v1e"}

VERSIONS = """
[endpoints.fraud.versions.v1c]
model_uri = "models/fraud/v1c"
description = "benchmark: v1's own model file under another name (A/A)"

[endpoints.fraud.versions.vslow]
model_uri = "models/fraud/vslow"
description = "benchmark: a 12-tree random forest (more CPU per request)"

[endpoints.fraud.versions.v1e]
model_uri = "models/fraud/v1c"
description = "benchmark: v1's model with 2% injected errors"

[environments.local.faults.fraud.v1e]
error_rate = 0.02
"""


def ms(project: Path, *args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    cmd = [str(BIN / "mlserve"), "--project-dir", str(project), *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if check and out.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({out.returncode}):\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return out


def make_models(project: Path) -> None:
    """v1c: v1's model file copied; vslow: a 12-tree forest fitted on init's training data."""
    import joblib
    import numpy as np
    from sklearn.ensemble import RandomForestClassifier

    models = project / "models" / "fraud"
    shutil.copytree(models / "v1", models / "v1c")
    v1 = joblib.load(models / "v1" / "model.joblib")
    rng = np.random.default_rng(0)
    n_features = int(getattr(v1, "n_features_in_", 8))
    x = rng.normal(size=(4000, n_features))
    y = (v1.predict(x) if hasattr(v1, "predict") else (x[:, 0] > 0)).astype(int)
    forest = RandomForestClassifier(n_estimators=12, random_state=0).fit(x, y)
    (models / "vslow").mkdir()
    shutil.copy(models / "v1" / "model-settings.json", models / "vslow") if (
        models / "v1" / "model-settings.json"
    ).exists() else None
    joblib.dump(forest, models / "vslow" / "model.joblib")


def set_policy(project: Path, control: str, steps: list[int], interval: str, max_duration: str) -> None:
    import tomlkit

    path = project / "mlserve.toml"
    doc = tomlkit.parse(path.read_text())
    table = doc["endpoints"]["fraud"]["rollout"]  # type: ignore[index]
    table["steps"] = steps  # type: ignore[index]
    table["interval"] = interval  # type: ignore[index]
    table["max_duration"] = max_duration  # type: ignore[index]
    table["control"] = control  # type: ignore[index]
    table["on_inconclusive"] = "rollback"  # type: ignore[index]
    path.write_text(tomlkit.dumps(doc))


def alone(project: Path, version: str, seconds: float = 8.0) -> dict[str, float]:
    """p50/p99 (ms) of ``version`` alone: sequential requests direct to its model server."""
    import httpx

    gateway = json.loads((project / ".mlserve" / "local" / "gateway.json").read_text())
    base = gateway["endpoints"]["fraud"]["versions"][version]
    payload = json.loads((project / "payloads" / "fraud.jsonl").read_text().splitlines()[0])
    with httpx.Client(timeout=5.0) as c:  # the model's name on its server, from MLServer's repository index
        name = next(m["name"] for m in c.post(f"{base}/v2/repository/index", json={}).json() if m.get("name"))
    url = f"{base}/v2/models/{name}/infer"
    took: list[float] = []
    with httpx.Client(timeout=5.0) as c:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            t0 = time.perf_counter()
            r = c.post(url, json=payload)
            took.append((time.perf_counter() - t0) * 1000)
            if r.status_code != 200:
                return {"error": float(r.status_code)}
    took.sort()
    return {"p50": took[len(took) // 2], "p99": took[int(len(took) * 0.99)], "n": float(len(took))}


def one_canary(project: Path, candidate: str, users: int, saved: str) -> dict[str, Any]:
    t0 = time.monotonic()
    ms(project, "rollout", "start", "fraud", "--candidate", candidate)
    out = ms(project, "rollout", "run", "fraud", "--load", "--users", str(users), "--json", check=False)
    seconds = time.monotonic() - t0
    try:
        doc = json.loads(out.stdout)
    except ValueError:
        doc = {}
    data = doc.get("result", doc)  # the CLI's versioned JSON envelope
    status = str(data.get("status", f"exit {out.returncode}"))
    decision = data.get("decision") or {}
    p99 = next((m for m in decision.get("metrics", []) if m.get("name") == "latency_p99"), {})
    run_dir = Path(str(data.get("run_dir") or "/nonexistent"))
    looks = 0
    if (run_dir / "state.json").is_file():
        state = json.loads((run_dir / "state.json").read_text())
        looks = sum(len(st.get("looks", [])) for st in state.get("steps", []))
    (project / "mlserve.toml").write_text(saved)  # a promotion edited the baseline: put v1 back
    ms(project, "rollback", "fraud", check=False)
    return {
        "candidate": candidate, "status": status, "seconds": round(seconds, 1), "looks": looks,
        "compared": str(p99.get("note", "")).split(" (")[0], "p99_change": p99.get("estimate"),
        "reason": str((data.get("outcome") or {}).get("reason") or decision.get("reason", ""))[:200],
    }  # fmt: skip


def _outcome(r: dict[str, Any]) -> str:
    if r["status"] == "rolled_back":
        return "deadline" if str(r["reason"]).startswith("no decision") else "harm"
    return str(r["status"])


def table(rows: list[dict[str, Any]]) -> str:
    """Per scenario and control mode; a rollback is split into 'on harm' (a metric shown worse
    beyond its margin) and 'at the deadline' (inconclusive, on_inconclusive = rollback)."""
    out = (
        "| scenario | control | canaries | promoted | rolled back on harm | rolled back at the deadline | halted | "
        "other | median looks | median s | p99 change (median) | quantile compared |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["scenario"], r["control"]), []).append(r)
    for (scenario, control), rs in groups.items():
        kinds = [_outcome(r) for r in rs]
        count = {k: kinds.count(k) for k in ("promoted", "harm", "deadline", "halted")}
        other = len(rs) - sum(count.values())
        compared = sorted({r["compared"] for r in rs if r["compared"]})
        change = [float(r["p99_change"]) for r in rs if r.get("p99_change") is not None]
        med = f"{statistics.median(change):+.1%}" if change else "-"
        out += (
            f"| {scenario} | {control} | {len(rs)} | {count['promoted']} | {count['harm']} | {count['deadline']} | "
            f"{count['halted']} | {other} | {statistics.median(r['looks'] for r in rs):g} | "
            f"{statistics.median(r['seconds'] for r in rs):g} | {med} | {', '.join(compared) or '-'} |\n"
        )
    return out


def _from_log(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]], str]:
    """The solo figures, the rows and the elapsed line of a run's printed output."""
    solo: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    elapsed = ""
    for line in path.read_text().splitlines():
        if line.startswith("alone, direct to the model server: "):
            solo = json.loads(line.split(": ", 1)[1])
        elif line.startswith("{"):
            rows.append(json.loads(line))
        elif " canaries in " in line:
            elapsed = line.split(" canaries in ")[1]
    return solo, rows, elapsed


def _write(args: argparse.Namespace, solo: dict[str, Any], body: str, size: str, cmd: str) -> None:
    text = (
        f"Command: `{cmd}` ({machine()}; {size}).\n\n"
        f"Settings: steps {args.steps}, interval {args.interval}, max_duration {args.max_duration}, "
        f"on_inconclusive rollback, locust {args.users} users, the manifest's default metrics "
        "(error rate within 0.5 points, critical; p99 within 10%), alpha 0.05; test_unit unset (interval with "
        "the replica control, request with the primary). Seconds include the rollout's start and the load's "
        "ramp-up.\n\n"
        "Alone, direct to the model server (sequential requests, ms): "
        + ", ".join(f"{v} p50 {x.get('p50', 0):.2f} / p99 {x.get('p99', 0):.2f}" for v, x in solo.items())
        + "\n\n"
        + body
    )
    write_section("live_decisions", "Live decision quality (control vs primary)", text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--aa", type=int, default=20)
    ap.add_argument("--slow", type=int, default=10)
    ap.add_argument("--errors", type=int, default=10)
    ap.add_argument("--modes", default="replica,primary")
    ap.add_argument("--steps", default="10,100")
    ap.add_argument("--interval", default="5s")
    ap.add_argument("--max-duration", default="150s")
    ap.add_argument("--users", type=int, default=8)
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    ap.add_argument("--rows", type=Path, help="re-tabulate the printed output of an earlier run (runs nothing)")
    ap.add_argument("--command", default="", help="with --rows: the command that produced that output")
    args = ap.parse_args(argv)
    if args.rows is not None:
        solo, rows, elapsed = _from_log(args.rows)
        body = table(rows)
        print(body)
        if not args.no_write:
            _write(args, solo, body, f"{len(rows)} canaries in {elapsed}", args.command)
        return 0
    steps = [int(s) for s in args.steps.split(",")]
    work = Path(tempfile.mkdtemp(prefix="mlserve-live-"))
    project = work / "acme-ml"
    started = time.monotonic()
    rows: list[dict[str, Any]] = []
    try:
        ms(project.parent, "init", str(project))
        make_models(project)
        with (project / "mlserve.toml").open("a") as f:
            f.write(VERSIONS)
        ms(project, "deploy", "--env", "local", timeout=600)
        solo = {v: alone(project, v) for v in ("v1", "vslow")}
        print(f"alone, direct to the model server: {json.dumps(solo)}", flush=True)
        plan = [("aa", args.aa), ("slow", args.slow), ("errors", args.errors)]
        for mode in args.modes.split(","):
            set_policy(project, mode, steps, args.interval, args.max_duration)
            saved = (project / "mlserve.toml").read_text()
            for scenario, count in plan:
                for _ in range(count):
                    r = one_canary(project, CANDIDATES[scenario], args.users, saved)
                    r.update(scenario=scenario, control=mode)
                    rows.append(r)
                    print(json.dumps(r), flush=True)
    finally:
        ms(project, "down", check=False)
    elapsed = time.monotonic() - started
    body = table(rows)
    print(body)
    print(f"{len(rows)} canaries in {elapsed / 60:.1f} min")
    if not args.no_write:
        cmd = " ".join(["python benchmarks/live_decisions.py", *(argv if argv is not None else sys.argv[1:])])
        _write(args, solo, body, f"{len(rows)} canaries in {elapsed / 60:.1f} min", cmd)
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
