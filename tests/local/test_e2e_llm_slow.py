"""The slower LLM rollouts end to end on the local target (marked slow: `make test-all`):
an identical version promoted under the LLM locust load, and a shadow whose generations
differ rolled back by the text-agreement gate while an identical one passes.

Its own deployment: chat v1, v2 (other weights, other generations) and v1b (v1 again).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.local.test_e2e_llm import CANARY, _decision, _rollout, _target, chat_only
from tests.support.deploy import deployed_project
from tests.support.load import ChatLoad
from tests.support.policy import set_policy

pytestmark = [pytest.mark.e2e, pytest.mark.prometheus, pytest.mark.slow]


@pytest.fixture(scope="module")
def llm3(tmp_path_factory: pytest.TempPathFactory, scaffolded: Path) -> Iterator[Path]:
    with deployed_project(tmp_path_factory, scaffolded, "llm3", edit=chat_only(("v1", "v2", "v1b"))) as root:
        yield root


@pytest.fixture
def clean(llm3: Path) -> Iterator[Path]:
    original = (llm3 / "mlserve.toml").read_text()
    try:
        yield llm3
    finally:
        (llm3 / "mlserve.toml").write_text(original)
        if run_cli("rollback", "chat", cwd=llm3).exit_code not in (0, 4):
            run_cli("rollout", "abort", "chat", cwd=llm3)
            run_cli("rollback", "chat", cwd=llm3)
        _target(llm3).set_traffic("chat", {"v1": 100})


@pytest.fixture
def loaded(clean: Path) -> Iterator[Path]:
    """The shadow tests' load, paced (see ChatLoad): unpaced, an identical mirror's latency grows
    with its queue and v1b's shadow was rolled back on latency_p90 (903 ms vs 250 ms at look 2)."""
    prompts = (clean / "payloads/chat.jsonl").read_text().splitlines()
    load = ChatLoad(_target(clean).gateway_url(), prompts, pause=0.3)
    try:
        yield clean
    finally:
        load.stop()


def test_identical_llm_version_is_promoted_under_the_llm_load_test(clean: Path) -> None:
    loaded = clean
    set_policy(loaded, "chat", **CANARY)
    code, result = _rollout(loaded, "v1b", "--load", "--users", "2")
    assert code == 0, _decision(result)
    metrics = {m["name"]: m for m in _decision(result)["metrics"]}
    assert metrics["ttft_p90"]["verdict"] == "pass" and metrics["stream_errors"]["verdict"] == "pass"
    snap = json.loads((Path(result["run_dir"]) / "snapshots/step-01.json").read_text())
    llm_field = snap["looks"][-1]["variants"]["v1b"]["llm"]
    assert llm_field["streams"] >= 30 and llm_field["ttft_seconds"]["counts"][-1] >= 30
    res = run_cli("analyze", "--replay", str(Path(result["run_dir"]) / "snapshots/step-01.json"), cwd=loaded)
    assert res.exit_code == 0, res.output
    # the background load was the LLM locustfile: streamed chat requests, figures per variant
    summary = json.loads((Path(result["run_dir"]) / "load/summary.json").read_text())
    assert summary["protocol"] == "openai" and summary["infer_path"] == "/v1/chat/completions"
    figures = summary["llm"]
    assert {"v1", "v1b", "all"} <= set(figures)
    assert figures["all"]["failed_streams"] == 0 and figures["all"]["generated_tokens"] > 0
    assert figures["v1b"]["ttft_ms"]["p50"] > 0 and figures["v1b"]["tokens_per_second"]["p50"] > 0


SHADOW = {
    "strategy": "shadow",
    "interval": "2s",
    "max_duration": "100s",
    "min_requests": 20,
    "shadow_percent": 100,
    "shadow_agreement": 0.9,
    "on_inconclusive": "rollback",
    "metrics": [
        {"name": "error_rate", "kind": "error_rate", "margin": 0.05, "critical": True},
        {"name": "latency_p90", "kind": "latency", "quantile": 0.9, "margin": "100%"},
    ],
}


def test_shadow_text_agreement_rolls_back_other_generations_and_passes_identical_ones(loaded: Path) -> None:
    set_policy(loaded, "chat", **SHADOW)
    code, result = _rollout(loaded, "v2")
    decision = _decision(result)
    assert code == 3, decision
    assert decision["agreement"]["verdict"] == "fail" and decision["agreement"]["estimate"] < 0.5
    assert "agree with the baseline's on only" in result["outcome"]["reason"]
    samples = json.loads((loaded / ".mlserve/local/llm-shadow-samples.json").read_text())["endpoints"]["chat"]
    assert samples and all(len(s["routed_text"]) <= 160 for s in samples)
    report = (Path(result["run_dir"]) / "report.md").read_text()
    assert "## Example generations (shadow)" in report and "| prompt | v1 | v2 | agree | similarity |" in report
    assert "| no |" in report
    run_cli("rollback", "chat", cwd=loaded)
    code, result = _rollout(loaded, "v1b")
    decision = _decision(result)
    assert code == 0, decision
    assert decision["agreement"]["verdict"] == "pass" and decision["agreement"]["estimate"] == 1.0


def test_semantic_shadow_comparison_scores_other_generations_with_the_embedding_model(loaded: Path) -> None:
    set_policy(loaded, "chat", **{**SHADOW, "shadow_text_match": "semantic", "shadow_similarity": 0.95})
    res = run_cli("deploy", "--env", "local", cwd=loaded)  # the gateway now compares semantically
    assert res.exit_code == 0, res.output
    code, result = _rollout(loaded, "v2")
    decision = _decision(result)
    assert code == 3 and decision["agreement"]["verdict"] == "fail", decision
    from tests.local.test_e2e_llm import _prom

    scored = _prom(loaded, 'mlserve_llm_shadow_similarity_count{endpoint="chat",variant="v2"}')
    below = _prom(loaded, 'mlserve_llm_shadow_similarity_bucket{endpoint="chat",variant="v2",le="0.94"}')
    assert scored >= decision["agreement"]["compared"] > 0
    assert below > 0  # some generations are less alike than the threshold
    samples = json.loads((loaded / ".mlserve/local/llm-shadow-samples.json").read_text())["endpoints"]["chat"]
    assert any(s["similarity"] is not None and s["similarity"] < 0.95 for s in samples)
