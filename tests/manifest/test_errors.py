"""Broken manifests: each names the file, the line where it can, the key path and the problem."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import run_cli

BASE = """\
[project]
name = "shop"

[environments.local]
target = "local"

[environments.staging]
target = "kubernetes"
serving = "kserve"
namespace = "ml"
cluster = "aws-eks"
region = "eu-west-1"

[endpoints.fraud]
runtime = "sklearn"
baseline = "v1"

[endpoints.fraud.versions.v1]
model_uri = "models/fraud/v1"

[endpoints.fraud.versions.v2]
model_uri = "models/fraud/v2"

[endpoints.fraud.resources]
gpu = 0

[endpoints.fraud.rollout]
steps = [10, 50, 100]
interval = "30s"

[[endpoints.fraud.rollout.metrics]]
name = "errors"
kind = "error_rate"
margin = 0.01

[[endpoints.fraud.rollout.metrics]]
name = "p99"
kind = "latency"
quantile = 0.99
margin = "10%"
"""


def edit(old: str, new: str) -> str:
    assert old in BASE, old
    return BASE.replace(old, new, 1)


CASES = [
    pytest.param(
        edit("steps = [10, 50, 100]", "steps = [10, 50, 120]"),
        "endpoints.fraud.rollout.steps[2]",
        "less than or equal to 100",
        "steps =",
        id="step-over-100",
    ),
    pytest.param(
        edit("steps = [10, 50, 100]", "steps = [10, 5, 100]"),
        "endpoints.fraud.rollout.steps[1]",
        "strictly increasing",
        "steps =",
        id="steps-not-increasing",
    ),
    pytest.param(
        edit("steps = [10, 50, 100]", "steps = [0, 50]"),
        "endpoints.fraud.rollout.steps[0]",
        "greater than or equal to 1",
        "steps =",
        id="step-zero",
    ),
    pytest.param(
        edit("steps = [10, 50, 100]", "steps = []"),
        "endpoints.fraud.rollout.steps",
        "at least 1",
        "steps =",
        id="steps-empty",
    ),
    pytest.param(
        edit("steps = [10, 50, 100]", "stpes = [10, 50, 100]"),
        "endpoints.fraud.rollout.stpes",
        "did you mean 'steps'",
        "stpes =",
        id="unknown-key-typo",
    ),
    pytest.param(
        edit('interval = "30s"', 'interval = "30 parsecs"'),
        "endpoints.fraud.rollout.interval",
        "duration like",
        "interval =",
        id="bad-duration",
    ),
    pytest.param(
        edit('interval = "30s"', 'interval = "0s"'),
        "endpoints.fraud.rollout.interval",
        "longer than 0 s",
        "interval =",
        id="zero-interval",
    ),
    pytest.param(
        edit('interval = "30s"', 'interval = "30s"\nmax_duration = "10s"'),
        "endpoints.fraud.rollout.max_duration",
        "shorter than one interval",
        "max_duration =",
        id="max-below-interval",
    ),
    pytest.param(
        edit('baseline = "v1"', 'baseline = "v9"'),
        "endpoints.fraud.baseline",
        "names no version",
        "baseline =",
        id="baseline-missing",
    ),
    pytest.param(
        edit('runtime = "sklearn"', 'runtime = "tensorflow"'),
        "endpoints.fraud.runtime",
        "must be one of",
        "runtime =",
        id="unknown-runtime",
    ),
    pytest.param(
        edit("gpu = 0", "gpu = -1"),
        "endpoints.fraud.resources.gpu",
        "greater than or equal to 0",
        "gpu =",
        id="negative-gpu",
    ),
    pytest.param(
        edit("gpu = 0", 'gpu = 0\ngpu_type = "a10g"'),
        "endpoints.fraud.resources.gpu_type",
        "gpu is 0",
        "gpu_type =",
        id="gpu-type-without-count",
    ),
    pytest.param(
        edit("gpu = 0", 'gpu = 1\ngpu_type = "rtx9090"'),
        "endpoints.fraud.resources.gpu_type",
        "must be one of",
        "gpu_type =",
        id="unknown-gpu-type",
    ),
    pytest.param(
        edit("[endpoints.fraud]", "[endpoints.Fraud_Scoring]").replace("endpoints.fraud.", "endpoints.Fraud_Scoring."),
        "endpoints.Fraud_Scoring",
        "DNS-1123",
        None,
        id="endpoint-not-dns-label",
    ),
    pytest.param(
        edit('name = "shop"', 'name = "shop\\"; rm -rf /"'),
        "project.name",
        "DNS-1123",
        'name = "shop',
        id="hostile-project-name",
    ),
    pytest.param(
        edit("[endpoints.fraud.versions.v2]", "[endpoints.fraud.versions.V2]"),
        "endpoints.fraud.versions.V2",
        "DNS-1123",
        None,
        id="version-not-dns-label",
    ),
    pytest.param(
        edit('model_uri = "models/fraud/v2"', 'model_uri = "../../etc/passwd"'),
        "endpoints.fraud.versions.v2.model_uri",
        "must not contain '..'",
        "../../etc",
        id="model-uri-escape",
    ),
    pytest.param(
        edit('model_uri = "models/fraud/v2"', 'model_uri = "ftp://host/model"'),
        "endpoints.fraud.versions.v2.model_uri",
        "unsupported URI scheme",
        "ftp://",
        id="model-uri-scheme",
    ),
    pytest.param(
        edit('model_uri = "models/fraud/v2"', 'model_uri = "models/$(whoami)"'),
        "endpoints.fraud.versions.v2.model_uri",
        "shell characters",
        "$(whoami)",
        id="model-uri-shell",
    ),
    pytest.param(
        edit('serving = "kserve"', 'serving = "bentoml"'),
        "environments.staging.serving",
        "must be one of",
        "serving =",
        id="unknown-serving",
    ),
    pytest.param(
        edit('region = "eu-west-1"', ""),
        "environments.staging.region",
        "required when cluster = 'aws-eks'",
        "[environments.staging]",
        id="eks-without-region",
    ),
    pytest.param(
        edit('region = "eu-west-1"', 'region = "Europe West"'),
        "environments.staging.region",
        "cloud region",
        "region =",
        id="bad-region",
    ),
    pytest.param(
        edit('namespace = "ml"\n', ""),
        "environments.staging.namespace",
        "required when target = 'kubernetes'",
        "[environments.staging]",
        id="kube-without-namespace",
    ),
    pytest.param(
        edit('target = "local"', 'target = "local"\nserving = "kserve"'),
        "environments.local.serving",
        "only applies to target = 'kubernetes'",
        'serving = "kserve"',
        id="local-with-serving",
    ),
    pytest.param(
        edit('target = "local"', 'target = "mainframe"'),
        "environments.local.target",
        "must be one of",
        "mainframe",
        id="unknown-target",
    ),
    pytest.param(
        edit('kind = "error_rate"', 'kind = "error-rate"'),
        "endpoints.fraud.rollout.metrics[0].kind",
        "must be one of",
        "error-rate",
        id="unknown-metric-kind",
    ),
    pytest.param(
        edit("quantile = 0.99\n", ""),
        "endpoints.fraud.rollout.metrics[1].quantile",
        "required when kind = 'latency'",
        None,
        id="latency-without-quantile",
    ),
    pytest.param(
        edit("quantile = 0.99", "quantile = 1.5"),
        "endpoints.fraud.rollout.metrics[1].quantile",
        "less than 1",
        "quantile =",
        id="quantile-over-1",
    ),
    pytest.param(
        edit('margin = "10%"', 'margin = "ten percent"'),
        "endpoints.fraud.rollout.metrics[1].margin",
        "margin like",
        "ten percent",
        id="bad-margin",
    ),
    pytest.param(
        edit('name = "p99"', 'name = "errors"'),
        "endpoints.fraud.rollout.metrics[1].name",
        "unique",
        None,
        id="duplicate-metric",
    ),
    pytest.param(
        edit("[endpoints.fraud.rollout]", "[endpoints.fraud.rollout]\nalpha = 0.7"),
        "endpoints.fraud.rollout.alpha",
        "less than 0.5",
        "alpha =",
        id="alpha-too-big",
    ),
    pytest.param(
        edit("[endpoints.fraud.rollout]", '[endpoints.fraud.rollout]\non_inconclusive = "pray"'),
        "endpoints.fraud.rollout.on_inconclusive",
        "must be one of",
        "on_inconclusive =",
        id="bad-on-inconclusive",
    ),
    pytest.param(
        edit("[endpoints.fraud.rollout]", '[endpoints.fraud.rollout]\nstrategy = "blue-green"'),
        "endpoints.fraud.rollout.strategy",
        "must be one of",
        "strategy =",
        id="unknown-strategy",
    ),
    pytest.param(
        edit('[project]\nname = "shop"', '[project]\nname = "shop"\ncolour = "blue"'),
        "project.colour",
        "unknown key 'colour'",
        "colour =",
        id="unknown-project-key",
    ),
    pytest.param(
        edit('[project]\nname = "shop"\n', "[project]\n"),
        "project.name",
        "required key is missing",
        "[project]",
        id="missing-project-name",
    ),
    pytest.param(
        edit("[endpoints.fraud.resources]", "[endpoints.fraud.resourses]"),
        "endpoints.fraud.resourses",
        "did you mean 'resources'",
        "resourses",
        id="unknown-table-typo",
    ),
    pytest.param(
        BASE + "\n[endpoints.fraud.autoscaling]\nmin_replicas = 5\nmax_replicas = 2\n",
        "endpoints.fraud.autoscaling.max_replicas",
        "at least min_replicas",
        "max_replicas =",
        id="replicas-inverted",
    ),
    pytest.param(
        BASE + "\n[environments.local.faults.fraud.v3]\nerror_rate = 0.1\n",
        "environments.local.faults.fraud.v3",
        "names no version",
        "faults.fraud.v3",
        id="fault-unknown-version",
    ),
    pytest.param(
        BASE + "\n[environments.local.faults.fraud.v2]\nerror_rate = 1.5\n",
        "environments.local.faults.fraud.v2.error_rate",
        "less than or equal to 1",
        "error_rate = 1.5",
        id="fault-rate-over-1",
    ),
    pytest.param(
        edit('[environments.local]\ntarget = "local"', '[environments.local]\ntarget = "local"\nendpoints = ["ghost"]'),
        "environments.local.endpoints[0]",
        "names no endpoint",
        "endpoints = [",
        id="env-unknown-endpoint",
    ),
    pytest.param(
        edit("gpu = 0", 'gpu = "two"'), "endpoints.fraud.resources.gpu", "valid integer", "gpu =", id="gpu-not-int"
    ),
    pytest.param(
        edit("[endpoints.fraud.resources]", '[endpoints.fraud.resources]\nmemory = "lots"'),
        "endpoints.fraud.resources.memory",
        "Kubernetes quantity",
        "memory =",
        id="bad-memory",
    ),
    pytest.param(
        BASE + '\n[endpoints.fraud.versions.v1.env]\n"BAD-KEY" = "x"\n',
        "endpoints.fraud.versions.v1.env.BAD-KEY",
        "identifier",
        "BAD-KEY",
        id="bad-env-key",
    ),
    pytest.param(
        edit(
            '[endpoints.fraud]\nruntime = "sklearn"',
            '[endpoints.fraud]\nruntime = "sklearn"\ndescription = "bell\\u0007"',
        ),
        "endpoints.fraud.description",
        "control characters",
        "description =",
        id="control-chars",
    ),
]


@pytest.mark.parametrize(("text", "path", "fragment", "line"), CASES)
def test_broken_manifest(tmp_path: Path, text: str, path: str, fragment: str, line: str | None) -> None:
    (tmp_path / "mlserve.toml").write_text(text)
    res = run_cli("--project-dir", str(tmp_path), "validate")
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    lines = [ln for ln in res.stderr.splitlines() if path in ln]
    assert lines, f"no message names {path!r}:\n{res.stderr}"
    assert any(fragment in ln for ln in lines), res.stderr
    assert "mlserve.toml" in lines[0]
    if line is not None:
        # the reported line is the one holding the offending key (or its table)
        expected = next(i for i, ln in enumerate(text.splitlines(), 1) if line.split("\n")[0] in ln)
        assert re.search(rf"mlserve\.toml:{expected}: ", lines[0]), lines[0]


def test_case_count() -> None:
    assert len(CASES) >= 25


def test_base_is_valid(tmp_path: Path) -> None:
    (tmp_path / "mlserve.toml").write_text(BASE)
    res = run_cli("--project-dir", str(tmp_path), "validate")
    assert res.exit_code == 0, res.output


def test_invalid_toml_names_line(tmp_path: Path) -> None:
    (tmp_path / "mlserve.toml").write_text(BASE.replace('name = "shop"', 'name = "shop'))
    res = run_cli("--project-dir", str(tmp_path), "validate")
    assert res.exit_code == 2
    assert "mlserve.toml:2: invalid TOML" in res.stderr


def test_json_error_envelope(tmp_path: Path) -> None:
    (tmp_path / "mlserve.toml").write_text(edit("steps = [10, 50, 100]", "steps = [10, 50, 120]"))
    res = run_cli("--project-dir", str(tmp_path), "--json", "validate")
    assert res.exit_code == 2
    doc = res.json
    assert doc["mlserve"] == 1 and doc["ok"] is False and doc["command"] == "validate"
    assert doc["error"]["type"] == "manifest"
    assert any("endpoints.fraud.rollout.steps[2]" in p for p in doc["error"]["problems"])


def test_missing_manifest(tmp_path: Path) -> None:
    res = run_cli("--project-dir", str(tmp_path), "validate")
    assert res.exit_code == 2
    assert "mlserve.toml: file not found" in res.stderr
    assert "mlserve init" in res.stderr


def test_all_problems_reported_at_once(tmp_path: Path) -> None:
    text = edit("gpu = 0", "gpu = -1").replace('interval = "30s"', 'interval = "soon"')
    (tmp_path / "mlserve.toml").write_text(text)
    res = run_cli("--project-dir", str(tmp_path), "validate")
    assert "resources.gpu" in res.stderr and "rollout.interval" in res.stderr


def test_traceback_flag_shows_traceback(tmp_path: Path) -> None:
    (tmp_path / "mlserve.toml").write_text("[project")
    with pytest.raises(Exception, match="invalid TOML"):
        run_cli("--project-dir", str(tmp_path), "--traceback", "validate")


def test_validate_warns_of_a_latency_margin_the_environments_buckets_cannot_resolve() -> None:
    """A 10% margin at p99 is resolved locally and on KServe (mlserve sets the buckets) but
    not on Seldon (the executor's default buckets): a warning naming the metric's key and
    the environment; a margin as wide as the buckets' spacing, or an absolute one, is silent."""
    from mlserve.manifest.models import MetricSpec
    from mlserve.manifest.units import Margin
    from mlserve.metrics.queries import unresolved_margins

    p99 = MetricSpec(name="latency_p99", kind="latency", quantile=0.99, margin=Margin(0.10, True))
    wide = MetricSpec(name="latency_p99", kind="latency", quantile=0.99, margin=Margin(1.6, True))
    absolute = MetricSpec(name="latency_p99", kind="latency", quantile=0.99, margin=Margin(0.005, False))
    errors = MetricSpec(name="error_rate", kind="error_rate", margin=Margin(0.10, True))
    assert unresolved_margins("local", None, [p99]) == []
    assert unresolved_margins("kubernetes", "kserve", [p99]) == []
    found = unresolved_margins("kubernetes", "seldon", [errors, p99, wide, absolute])
    assert [i for i, _ in found] == [1]
    assert "a 10% margin at p99" in found[0][1] and "Seldon's executor histogram" in found[0][1]
