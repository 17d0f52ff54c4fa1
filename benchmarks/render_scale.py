"""Render speed at scale: 200 endpoints x 3 kubernetes environments.

Target: the whole render (templates, quoting, writing every file) in under 3 s. Measures
a cold render (fresh process state: templates compiled on first use), warm renders into
the same folder (files unchanged, nothing rewritten) and renders into empty folders, and
`render --check` (renders to a temporary folder and compares).

Run: .venv/bin/python benchmarks/render_scale.py
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._report import write_section

N_ENDPOINTS = 200
RUNTIMES = ["sklearn", "xgboost", "triton", "vllm", "torchserve", "seldon"]
GPU_TYPES = ["t4", "a10g", "l4", "l40s", "a100", "h100"]
ENVS = """
[environments.staging]
target = "kubernetes"
serving = "kserve"
namespace = "ml-staging"
cluster = "aws-eks"
region = "eu-west-1"
model_store = "s3://bench-models"

[environments.staging.backend]
type = "s3"
config = { bucket = "bench-state", region = "eu-west-1" }

[environments.prod]
target = "kubernetes"
serving = "seldon"
namespace = "ml-prod"
cluster = "existing"
kube_context = "prod"
model_store = "s3://bench-models"

[environments.gpu]
target = "kubernetes"
serving = "kserve"
namespace = "ml-gpu"
cluster = "aws-eks"
region = "us-east-1"
model_store = "s3://bench-models"
gpu_operator = true
"""


def manifest_text() -> str:
    parts = ['[project]\nname = "bench"\ndescription = "render benchmark"\nowner = "bench@example.com"\n', ENVS]
    for i in range(N_ENDPOINTS):
        runtime = RUNTIMES[i % len(RUNTIMES)]
        name = f"ep{i:03d}"
        parts.append(f'[endpoints.{name}]\nruntime = "{runtime}"\nbaseline = "v1"\ndescription = "endpoint {i}"\n')
        for v in ("v1", "v2"):
            extra = '\nmodel_class = "pkg.Model"' if runtime == "seldon" else ""
            parts.append(
                f'[endpoints.{name}.versions.{v}]\nmodel_uri = "models/{name}/{v}"\nargs = ["--flag", "{v}"]{extra}\n'
            )
        if runtime in ("triton", "vllm"):
            parts.append(f'[endpoints.{name}.resources]\ngpu = 1\ngpu_type = "{GPU_TYPES[i % len(GPU_TYPES)]}"\n')
        parts.append(f'[endpoints.{name}.auth]\nallowed_namespaces = ["team-{i % 7}"]\n')
    return "\n".join(parts)


def main() -> None:
    from mlserve.project import load_project
    from mlserve.render import check_environments, render_environment

    with tempfile.TemporaryDirectory(prefix="mlserve-bench-") as tmp:
        root = Path(tmp) / "bench"
        root.mkdir()
        (root / "mlserve.toml").write_text(manifest_text(), encoding="utf-8")
        t0 = time.perf_counter()
        project = load_project(root)
        load_s = time.perf_counter() - t0
        envs = sorted(project.manifest.environments)
        traffic = {"ep000": {"baseline": "v1", "candidate": "v2", "mode": "canary", "weights": {"v1": 90, "v2": 10}}}

        def render_all(out: Path) -> int:
            files = 0
            for env in envs:
                files += len(render_environment(project, env, out, traffic=traffic).files)
            return files

        def timed(fn: Any) -> tuple[float, float, Any]:
            w0, c0 = time.perf_counter(), time.process_time()
            out = fn()
            return time.perf_counter() - w0, time.process_time() - c0, out

        cold, cold_cpu, files = timed(lambda: render_all(root / "stacks"))
        warm_same: list[tuple[float, float]] = []
        fresh: list[tuple[float, float]] = []
        for i in range(5):
            w, c, _ = timed(lambda: render_all(root / "stacks"))
            warm_same.append((w, c))
            w, c, _ = timed(lambda i=i: render_all(Path(tmp) / f"fresh{i}"))
            fresh.append((w, c))
        check_s, check_cpu, check = timed(lambda: check_environments(project, envs, root / "stacks", traffic=traffic))
        assert check.up_to_date, check.differences[:3]
        size = sum(p.stat().st_size for p in (root / "stacks").rglob("*") if p.is_file())

    target = 3.0
    worst = max(cold, *(w for w, _ in warm_same), *(w for w, _ in fresh))
    rows = [
        ("load + validate manifest", load_s, load_s),
        ("cold render (templates compiled, all files written)", cold, cold_cpu),
        (
            "warm render, same folder (median of 5; nothing rewritten)",
            statistics.median(w for w, _ in warm_same),
            statistics.median(c for _, c in warm_same),
        ),
        (
            "warm render, empty folder (median of 5)",
            statistics.median(w for w, _ in fresh),
            statistics.median(c for _, c in fresh),
        ),
        ("render --check (render to temp + compare)", check_s, check_cpu),
    ]
    load = os.getloadavg()[0]
    body = (
        f"{N_ENDPOINTS} endpoints (2 versions each, 6 runtimes, a third on GPUs) x {len(envs)} kubernetes "
        f"environments (KServe on EKS with a backend, Seldon on an existing cluster, KServe on EKS with the GPU "
        f"operator): {files} files, {size / 1e6:.1f} MB per render.\n\n"
        "| step | wall time | CPU time |\n| --- | ---: | ---: |\n"
        + "".join(f"| {name} | {secs:.2f} s | {cpu:.2f} s |\n" for name, secs, cpu in rows)
        + f"\nTarget: every render under {target:.0f} s. Slowest render measured: {worst:.2f} s wall "
        + ("(**met**)" if worst < target else "(**missed**)")
        + f". Load average during the run: {load:.1f} (the machine is shared; CPU time is the steadier figure)."
    )
    print(body)
    write_section("render_scale", "Render speed: 200 endpoints x 3 environments", body)


if __name__ == "__main__":
    main()
