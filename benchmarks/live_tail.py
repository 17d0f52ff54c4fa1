"""How much traffic a live A/A canary needs to show "p99 within 10%" on this machine.

Three model-server processes of the same model (v1 and two copies of its file) run on the
local target behind mlserve's gateway with an equal three-way split, and locust loads the
gateway: once as fast as 8 users can go, once paced at about half of that. From the
gateway's own histograms (buckets 3% apart) it prints, per process, requests, p50, p99 and
the share of requests slower than 1.1 x p99, the tail mass a 10% p99 margin has to resolve.

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
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._report import machine, write_section  # noqa: E402

BIN = Path(sys.executable).parent
LINE = re.compile(r"mlserve_request_duration_seconds_bucket\{([^}]*)\} ([0-9.e+]+)")
Hist = dict[float, float]


def ms(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "mlserve"), "--project-dir", str(project), *args], capture_output=True, text=True, check=False
    )


def snapshot(url: str) -> dict[str, Hist]:
    import httpx

    out: dict[str, Hist] = {}
    for m in LINE.finditer(httpx.get(f"{url}/metrics", timeout=5).text):
        labels = {k: v.strip('"') for k, v in (kv.split("=", 1) for kv in m.group(1).split(","))}
        if labels.get("endpoint") == "fraud":
            le = float("inf") if labels["le"] == "+Inf" else float(labels["le"])
            out.setdefault(labels["variant"], {})[le] = float(m.group(2))
    return out


def quantile(hist: Hist, p: float) -> float:
    les = sorted(hist)
    target = p * hist[les[-1]]
    prev_le, prev_c = 0.0, 0.0
    for le in les:
        if hist[le] >= target:
            return prev_le if le == float("inf") else prev_le + (le - prev_le) * (target - prev_c) / (hist[le] - prev_c)
        prev_le, prev_c = le, hist[le]
    return les[-1]


def share_above(hist: Hist, threshold: float) -> float:
    les = sorted(hist)
    below = next(hist[le] for le in les if le >= threshold)
    return (hist[les[-1]] - below) / hist[les[-1]]


def needed_per_arm(share: float, p: float = 0.01, z: float = 1.645 + 0.842) -> float:
    return 2 * p * (z / (p - share)) ** 2 if share < p else float("inf")


def load(project: Path, url: str, seconds: int, rps: float | None) -> dict[str, Hist]:
    args = ["loadtest", "fraud", "--duration", f"{seconds}s", "--users", "8", "--spawn-rate", "8"]
    worker = threading.Thread(target=ms, args=(project, *args, *(["--rps", str(rps)] if rps else [])))
    worker.start()
    time.sleep(6)  # past the ramp-up
    first = snapshot(url)
    worker.join()
    last = snapshot(url)
    return {v: {le: c - first.get(v, {}).get(le, 0.0) for le, c in h.items()} for v, h in last.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=100)
    ap.add_argument("--no-write", action="store_true")
    a = ap.parse_args()
    from mlserve.local.admin_client import LocalGatewayClient

    work = Path(tempfile.mkdtemp(prefix="mlserve-tail-"))
    project = work / "acme"
    subprocess.run([str(BIN / "mlserve"), "init", str(project)], check=True, capture_output=True)
    versions = ["v1", "v1r1", "v1r2"]
    extra = ""
    for v in versions[1:]:
        shutil.copytree(project / "models" / "fraud" / "v1", project / "models" / "fraud" / v)
        extra += f'\n[endpoints.fraud.versions.{v}]\nmodel_uri = "models/fraud/{v}"\n'
    (project / "mlserve.toml").write_text((project / "mlserve.toml").read_text() + extra)
    try:
        out = ms(project, "deploy", "--env", "local")
        if out.returncode:
            raise SystemExit(out.stdout + out.stderr)
        desired = json.loads((project / ".mlserve" / "local" / "desired.json").read_text())
        admin = LocalGatewayClient.from_token_file(str(desired["admin_url"]), project / ".mlserve" / "admin-token")
        admin.set_traffic("fraud", {"v1": 34, "v1r1": 33, "v1r2": 33})
        rows = []
        full_rps = 0.0
        for label, rps in (("as fast as 8 users go", None), ("paced at half that", "half")):
            cap = round(full_rps / 2) if rps == "half" else None
            hists = load(project, str(desired["gateway_url"]), a.seconds, cap)
            total = sum(hists[v][float("inf")] for v in versions) / (a.seconds - 6)
            full_rps = full_rps or total
            for v in versions:
                h = hists[v]
                p99 = quantile(h, 0.99)
                s = share_above(h, 1.1 * p99)
                n = needed_per_arm(s)
                rows.append(
                    f"| {label} | {v} | {h[float('inf')]:,.0f} | {total:.0f} | {quantile(h, 0.5) * 1000:.2f} | "
                    f"{p99 * 1000:.2f} | {s * 100:.2f}% | {n:,.0f} | {n / (0.1 * total):,.0f} | {n / (0.5 * total):,.0f} |"
                )
                print(rows[-1], flush=True)
    finally:
        ms(project, "down")
    head = (
        "| load | process | requests | requests/s (all three) | p50 ms | p99 ms | share > 1.1 x p99 | "
        "requests per arm (lower bound) | s at a 10% step | s at a 50% step |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    body = (
        f"Command: `python benchmarks/live_tail.py --seconds {a.seconds}` ({machine()}). Three model-server processes of "
        "one model behind the gateway, split 34/33/33; shares are bucket-rounded (buckets 3% apart). 'Requests per arm' is "
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
