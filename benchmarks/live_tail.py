"""How much traffic a live A/A canary needs to show "p99 within 10%" on this machine.

Three model-server processes of the same model (v1 and two copies of its file) run on the
local target behind mlserve's gateway with an equal three-way split, and locust loads the
gateway: once as fast as 8 users can go, once paced at about half of that. From the
gateway's own histograms (buckets 3% apart) it prints, per process, requests, p50, p99 and
the share of requests slower than 1.1 x p99 (interpolated, as the rollout engine reads it), the tail mass a 10% p99 margin has to resolve.

From the tail it derives a lower bound on the requests per arm an A/A candidate needs before
any test can show its p99 within 10% of its control's: a fixed-horizon one-sided z-test of
the two tail shares at alpha 0.05 with 80% power, n = 2 p ((z_a + z_b) / (p - s))^2 with
p = 1% and s the share above 1.1 x p99 (an always-valid test needs more), and what that
costs in seconds at a 10% and a 50% step at the measured throughput.

    .venv/bin/python benchmarks/live_tail.py            # about 5 minutes
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._report import machine, write_section  # noqa: E402
from mlserve.stats.latency import Array, exceedances, quantile  # noqa: E402

RAMP_S = 6  # seconds of locust's start left out of the figures

BIN = Path(sys.executable).parent
VERSIONS = ["v1", "v1r1", "v1r2"]


def ms(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "mlserve"), "--project-dir", str(project), *args], capture_output=True, text=True, check=False
    )


def snapshot(url: str) -> dict[str, dict[float, float]]:
    """The gateway's cumulative latency buckets of fraud, per version: {version: {le: count}}."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, dict[float, float]] = {}
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=5).text):
        for s in family.samples:
            if s.name == "mlserve_request_duration_seconds_bucket" and s.labels.get("endpoint") == "fraud":
                out.setdefault(s.labels["variant"], {})[float(s.labels["le"])] = float(s.value)
    return out


def needed_per_arm(share: float, p: float = 0.01, z: float = 1.645 + 0.842) -> float:
    return 2 * p * (z / (p - share)) ** 2 if share < p else float("inf")


def load(project: Path, url: str, seconds: int, rps: int | None) -> dict[str, tuple[Array, Array]]:
    """Run locust for ``seconds``; each version's (le, cumulative counts) over the run after its ramp-up."""
    args = ["loadtest", "fraud", "--duration", f"{seconds}s", "--users", "8", "--spawn-rate", "8"]
    worker = threading.Thread(target=ms, args=(project, *args, *(["--rps", str(rps)] if rps else [])))
    worker.start()
    time.sleep(RAMP_S)
    first = snapshot(url)
    worker.join()
    last = snapshot(url)
    out = {}
    for v in VERSIONS:
        le = np.array(sorted(last[v]))
        out[v] = (le, np.array([last[v][b] - first.get(v, {}).get(b, 0.0) for b in le]))
    return out


def row(label: str, v: str, le: Array, cum: Array, rps: float) -> str:
    n = float(cum[-1])
    p99 = quantile(cum, le, 0.99)
    share = float(exceedances(cum[None, :], le, np.array([1.1 * p99]))[0, 0]) / n
    need = needed_per_arm(share)
    return (
        f"| {label} | {v} | {n:,.0f} | {rps:.0f} | {quantile(cum, le, 0.5) * 1000:.2f} | {p99 * 1000:.2f} | "
        f"{share * 100:.2f}% | {need:,.0f} | {need / (0.1 * rps):,.0f} | {need / (0.5 * rps):,.0f} |"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=100)
    ap.add_argument("--no-write", action="store_true")
    a = ap.parse_args()
    from mlserve.local.admin_client import LocalGatewayClient

    work = Path(tempfile.mkdtemp(prefix="mlserve-tail-"))
    project = work / "acme"
    subprocess.run([str(BIN / "mlserve"), "init", str(project)], check=True, capture_output=True)
    extra = ""
    for v in VERSIONS[1:]:
        shutil.copytree(project / "models" / "fraud" / "v1", project / "models" / "fraud" / v)
        extra += f'\n[endpoints.fraud.versions.{v}]\nmodel_uri = "models/fraud/{v}"\n'
    (project / "mlserve.toml").write_text((project / "mlserve.toml").read_text() + extra)
    try:
        out = ms(project, "deploy", "--env", "local")
        if out.returncode:
            raise SystemExit(out.stdout + out.stderr)
        desired = json.loads((project / ".mlserve" / "local" / "desired.json").read_text())
        with LocalGatewayClient.from_token_file(str(desired["admin_url"]), project / ".mlserve" / "admin-token") as c:
            c.set_traffic("fraud", {"v1": 34, "v1r1": 33, "v1r2": 33})
        rows = []
        cap: int | None = None  # the first run as fast as 8 users go, the second paced at half of that
        for label in ("as fast as 8 users go", "paced at half that"):
            hists = load(project, str(desired["gateway_url"]), a.seconds, cap)
            rps = sum(float(cum[-1]) for _le, cum in hists.values()) / (a.seconds - RAMP_S)
            cap = round(rps / 2)
            for v in VERSIONS:
                rows.append(row(label, v, *hists[v], rps))
                print(rows[-1], flush=True)
    finally:
        ms(project, "down")
        shutil.rmtree(work, ignore_errors=True)
    head = (
        "| load | process | requests | requests/s (all three) | p50 ms | p99 ms | share > 1.1 x p99 | "
        "requests per arm (lower bound) | s at a 10% step | s at a 50% step |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    body = (
        f"Command: `python benchmarks/live_tail.py --seconds {a.seconds}` ({machine()}). Three model-server processes of "
        "one model behind the gateway, split 34/33/33; shares are interpolated inside buckets 3% apart. 'Requests per arm' is "
        "a fixed-horizon one-sided z-test of the tail shares at alpha 0.05 with 80% power (an always-valid test needs more); "
        "the seconds assume the step's share of the measured throughput for each of candidate and control.\n\n"
        + head
        + "\n"
        + "\n".join(rows)
    )
    print(body)
    if not a.no_write:
        write_section("live_tail", "The live tail: what a p99-within-10% A/A needs here", body)


if __name__ == "__main__":
    main()
