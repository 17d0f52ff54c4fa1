"""Ten deploys under a steady locust load on the local target, with the example project's
real processes (MLServer per version, the gateway, a real Prometheus), measured and written
to docs/reliability.md.

MLServer starts for every added or replaced version (about two minutes in all), so this is
marked slow; tests/local/test_nodrop.py is its short default-run variant, and the crash
measurements (gateway and supervisor killed with -9) are in test_local_faults.py.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlserve.project import load_project
from mlserve.targets.local import LocalTarget
from tests.conftest import run_cli
from tests.reliability.conftest import Recorder
from tests.support.deploy import deployed_project
from tests.support.nodrop import desired, locust, pid, scrape_gaps, scraped

pytestmark = [pytest.mark.e2e, pytest.mark.prometheus]

SCRAPE = 1.0  # the example's scrape_interval


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory, scaffolded: Path) -> Iterator[Path]:
    with deployed_project(tmp_path_factory, scaffolded, "nodrop") as root:
        LocalTarget(load_project(root), "local").set_traffic("fraud", {"v1": 50, "v2": 50})
        yield root


# ---------------------------------------------------------------------------
# Ten deploys under a steady locust load
# ---------------------------------------------------------------------------

V3 = '[endpoints.fraud.versions.v3]\nmodel_uri = "models/fraud/v2"\ndescription = "v2 again"\n\n'
FAULT = "\n[environments.local.faults.fraud.v2]\nlatency_ms = {ms}\n"
LIMITS = '\n[environments.local.limits]\nmax_body_bytes = {body}\nupstream_timeout = "{timeout}"\n'


def _manifest(original: str, *, v3: bool = False, fault: int = 0, limits: tuple[int, str] | None = None) -> str:
    text = original
    if v3:
        text = text.replace("[endpoints.fraud.versions.v2]", V3 + "[endpoints.fraud.versions.v2]", 1)
    if fault:
        text += FAULT.format(ms=fault)
    if limits:
        text += LIMITS.format(body=limits[0], timeout=limits[1])
    return text


@pytest.mark.slow  # MLServer starts for each added or replaced version: about two minutes in all
def test_ten_deploys_under_a_steady_locust_load(example: Path, reliability: Recorder) -> None:
    root = example
    original = (root / "mlserve.toml").read_text()
    model = root / "models/fraud/v2/model.joblib"

    def touch_v2() -> None:  # a retrained model: the same file, newer
        st = model.stat()
        os.utime(model, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000_000))

    steps: list[tuple[str, str, Any]] = [
        ("add version v3", _manifest(original, v3=True), None),
        ("20 ms latency fault on v2", _manifest(original, v3=True, fault=20), None),
        ("gateway limits: 2 MiB bodies, 20 s upstream timeout", _manifest(original, v3=True, fault=20, limits=(2 << 20, "20s")), None),
        ("fault on v2 changed to 5 ms", _manifest(original, v3=True, fault=5, limits=(2 << 20, "20s")), None),
        ("remove version v3", _manifest(original, fault=5, limits=(2 << 20, "20s")), None),
        ("replace v2's model file (retrained)", _manifest(original, fault=5, limits=(2 << 20, "20s")), touch_v2),
        ("fault on v2 removed", _manifest(original, limits=(2 << 20, "20s")), None),
        ("upstream timeout back to 30 s", _manifest(original, limits=(2 << 20, "30s")), None),
        ("add version v3 again", _manifest(original, v3=True, limits=(2 << 20, "30s")), None),
        ("remove v3 and the limits", original, None),
    ]  # fmt: skip
    keep = {n: pid(root, n) for n in ("gateway", "prometheus")}
    load = locust(root, "fraud", users=4)
    since = scraped(desired(root)["prometheus_url"], "mlserve-gateway")
    done: list[str] = []
    try:
        for what, text, before in steps:
            if before is not None:
                before()
            (root / "mlserve.toml").write_text(text)
            t0 = time.monotonic()
            res = run_cli("--json", "deploy", "--env", "local", cwd=root)
            assert res.exit_code == 0, (what, res.output)
            r = res.json["result"]
            moved = [f"{k} {', '.join(r[k])}" for k in ("started", "restarted", "stopped", "reloaded") if r[k]]
            done.append(f"{what}: {'; '.join(moved) or 'no change'} ({time.monotonic() - t0:.1f}s)")
            assert {n: pid(root, n) for n in keep} == keep, what
        time.sleep(2 * SCRAPE + 0.5)
    finally:
        (root / "mlserve.toml").write_text(original)
        result = load.stop()
    s = result.summary
    samples, gap, values = scrape_gaps(desired(root)["prometheus_url"], "mlserve-gateway", since)
    reliability.case(
        "changes",
        "10 consecutive `mlserve deploy` runs under a steady locust load (4 users, v1/v2 50/50): " + "; ".join(done),
        expected="0 failed requests; gateway and Prometheus pids unchanged; no scrape gap of the gateway job "
        f"longer than two scrape intervals ({2 * SCRAPE:g} s)",
        measured=f"locust: {s['requests']} requests, {s['failures']} failures over {s['duration_seconds']:.0f} s; "
        f"pids unchanged (gateway {keep['gateway']}, prometheus {keep['prometheus']}); "
        f"gateway job: {samples} samples, largest gap {gap:.3f} s, values {values}",
        sent=s["requests"],
        failed=s["failures"],
        lost=0,
        decisions=f"{len(done)} deploys",
    )
    assert s["requests"] > 500 and s["failures"] == 0, s["errors"]
    assert {n: pid(root, n) for n in keep} == keep
    assert values == ["1"] and gap <= 2 * SCRAPE, gap
