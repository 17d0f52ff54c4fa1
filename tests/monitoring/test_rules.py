"""SLO burn-rate and drift alert rules: every rule passes `promtool check rules`, and each
endpoint's rules pass generated `promtool test rules` unit tests (for the local gateway's
metrics, the same rules compressed 60x, Istio's and the Seldon executor's)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mlserve.errors import ToolError
from mlserve.monitoring.rules import (
    TIERS,
    EndpointRules,
    dump_yaml,
    latency_bound,
    prom_duration,
    rule_groups,
    rules_document,
)
from mlserve.tools.promtool import check_rules, run_rule_tests
from tests.monitoring.rule_tests import promtool_tests

pytestmark = pytest.mark.prometheus

FRAUD = EndpointRules("fraud", error_budget=0.01, latency_objective=0.25, drift=True, psi_threshold=0.2)


def _write(tmp: Path, r: EndpointRules, source: str, speedup: int = 1) -> tuple[Path, Path]:
    rules = tmp / f"rules-{source}-{speedup}.yml"
    rules.write_text(rules_document(rule_groups(r, source, speedup)))
    tests = tmp / f"tests-{source}-{speedup}.yml"
    tests.write_text(dump_yaml(promtool_tests(r, source, rules.name, speedup)))
    return rules, tests


@pytest.mark.parametrize(
    ("source", "namespace", "speedup"),
    [("local", "", 1), ("local", "", 60), ("istio", "ml-staging", 1), ("seldon", "ml-prod", 1)],
)
def test_rules_check_and_pass_their_unit_tests(tmp_path: Path, source: str, namespace: str, speedup: int) -> None:
    r = EndpointRules(
        **{**FRAUD.__dict__, "namespace": namespace, "labels": {"namespace": namespace} if namespace else {}}
    )
    rules, tests = _write(tmp_path, r, source, speedup)
    out = check_rules([rules])
    assert "SUCCESS: 24 rules found" in out.stdout  # 14 recorded ratios, 8 burn-rate alerts, 2 drift alerts
    result = run_rule_tests([tests])
    assert "SUCCESS" in result.stdout
    doc = yaml.safe_load(tests.read_text())
    assert len(doc["tests"]) == 12


def test_unit_tests_catch_a_wrong_threshold(tmp_path: Path) -> None:
    """The tests have teeth: with the fast page's threshold at 25% instead of 14.4% errors,
    20x the budget (20% errors) no longer fires it and the generated test fails."""
    rules, tests = _write(tmp_path, FRAUD, "local")
    text = rules.read_text()
    assert "> 0.144\n" in text
    rules.write_text(text.replace("> 0.144\n", "> 0.25\n"))
    with pytest.raises(ToolError) as err:
        run_rule_tests([tests])
    assert "MlserveErrorBudgetBurn" in err.value.stdout + err.value.stderr


def test_burn_rate_thresholds_follow_the_workbook_for_thirty_days() -> None:
    groups = rule_groups(FRAUD, "local")
    alerts = [r for g in groups for r in g["rules"] if r.get("alert") == "MlserveErrorBudgetBurn"]
    got = [
        (a["labels"]["severity"], a["labels"]["long_window"], a["labels"]["short_window"], a["labels"]["burn_rate"])
        for a in alerts
    ]
    assert got == [
        ("page", "1h", "5m", "14.4"),
        ("page", "6h", "30m", "6"),
        ("ticket", "1d", "2h", "3"),
        ("ticket", "3d", "6h", "1"),
    ]
    assert "> 0.144\nand\nmlserve:slo_errors:ratio_rate5m" in alerts[0]["expr"]
    # a 7-day budget period burns the same share of its budget 7/30 as fast
    weekly = rule_groups(EndpointRules("fraud", 0.01, None, period=7 * 86400.0), "local")
    first = next(r for g in weekly for r in g["rules"] if r.get("alert"))
    assert first["labels"]["burn_rate"] == "3.36"


def test_compressed_rules_divide_windows_and_for() -> None:
    groups = {g["name"]: g for g in rule_groups(FRAUD, "local", speedup=60)}
    records = {r["record"]: r["expr"] for r in groups["mlserve-slo-fraud"]["rules"] if "record" in r}
    assert "[5s]" in records["mlserve:slo_errors:ratio_rate5m"]  # the name keeps the nominal window
    assert "[72m]" in records["mlserve:slo_errors:ratio_rate3d"]
    drift = groups["mlserve-drift-fraud"]["rules"][0]
    assert drift["for"] == "2m"  # drift keeps its own window and `for` (monitoring.window, alert_for)
    burn = next(r for r in groups["mlserve-slo-fraud"]["rules"] if r.get("alert"))
    assert "compressed 60x" in burn["annotations"]["description"]
    assert len(TIERS) == 4 and prom_duration(86400) == "1d" and prom_duration(0.5) == "500ms"


def test_latency_objective_is_measured_at_a_bucket_bound_not_above_it() -> None:
    assert latency_bound(0.25, (0.1, 0.25, 0.5)) == (0.25, "")
    bound, note = latency_bound(0.3, (0.1, 0.25, 0.5))
    assert bound == 0.25 and "largest not above" in note
    bound, note = latency_bound(0.01, (0.1, 0.25))
    assert bound == 0.1 and "below every bucket" in note


def test_no_slo_and_no_monitoring_means_no_rules() -> None:
    assert rule_groups(EndpointRules("fraud", None, None), "local") == []


def test_the_local_rules_file_reloads_prometheus_in_place_when_it_changes(project: Path) -> None:
    """Deploy plans the rules file beside prometheus.yml; a change of the rules alone (here the
    alert speed-up) reloads Prometheus in place: its config fingerprint changes, its restart
    fingerprint does not. The arms API's refresh keeps the rule files."""
    from mlserve.local.desired import refresh, without_model
    from mlserve.local.plan import build_plan
    from mlserve.local.state import LocalPaths
    from mlserve.project import load_project

    paths = LocalPaths(project / ".mlserve")
    first = build_plan(load_project(project), "local", paths, previous=None, running_ports=set())
    rules = paths.local_dir / "rules.yml"
    prom_yml = first.files[str(paths.prometheus_config)]
    assert f'rule_files:\n  - "{rules}"' in prom_yml and "MlserveInputDrift" in first.files[str(rules)]
    doc = first.desired_document(1, project)
    text = (project / "mlserve.toml").read_text()
    (project / "mlserve.toml").write_text(
        text.replace("[environments.local]", "[environments.local]\nalert_speedup = 60", 1)
    )
    again = build_plan(load_project(project), "local", paths, previous=doc, running_ports=set())
    before, after = first.by_name()["prometheus"], again.by_name()["prometheus"]
    assert after.fingerprint == before.fingerprint and after.config_fingerprint != before.config_fingerprint
    for name, spec in first.by_name().items():  # nothing else restarts or reloads
        if name != "prometheus":
            assert (again.by_name()[name].fingerprint, again.by_name()[name].config_fingerprint) == (
                spec.fingerprint,
                spec.config_fingerprint,
            ), name
    assert again.files[str(rules)] != first.files[str(rules)]
    assert again.files[str(paths.prometheus_config)] == prom_yml  # the same file names the rules
    less = without_model(doc, "fraud/v2")
    assert "rule_files:" in next(iter(refresh(less).values()))
