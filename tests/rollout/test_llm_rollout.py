"""LLM endpoints in the rollout, on a simulated target: looks ask the metrics source for token
streams only when the policy gates on them, a shadow's example generation pairs reach the
step, the run record and the reports, and an LLM canary policy used for a shadow is judged on
the error rate beside the agreement gate. (The same paths on the real local target are in
tests/local/test_e2e_llm*.py.)"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from mlserve.metrics import Collected, LookRequest
from mlserve.project import load_project
from mlserve.rollout import service
from mlserve.rollout.store import RunDir
from mlserve.status import Status
from tests.support.policy import set_policy
from tests.support.sim import Clock, FakeRouter, Sim, opener

PAIRS = (
    {"at": 0.0, "prompt": "refund please", "routed_text": "we will refund", "shadow_text": "we will refund",
     "agree": True, "similarity": None},
    {"at": 0.0, "prompt": "card charged | twice", "routed_text": "sorry about that", "shadow_text": "order shipped",
     "agree": False, "similarity": 0.41},
)  # fmt: skip


@dataclass
class LlmSim(Sim):
    """:class:`Sim` (which records every look request); a shadow look carries example pairs
    made after the step's anchor (as the local gateway's file would give them)."""

    def look(self, request: LookRequest, previous: Mapping[str, Any] | None) -> Collected:
        got = super().look(request, previous)
        if not request.shadow:
            return got
        return replace(got, samples=tuple({**p, "at": request.started_at + 0.5} for p in PAIRS))


@pytest.fixture
def chat(project: Path) -> Path:
    """The scaffolded project with chat back in its local environment (tests/conftest.py leaves it out)."""
    manifest = project / "mlserve.toml"
    manifest.write_text(manifest.read_text().replace('endpoints = ["fraud"]', 'endpoints = ["fraud", "chat"]', 1))
    return project


FAST = {"interval": "2s", "max_duration": "60s", "min_requests": 50, "on_inconclusive": "rollback"}


def _run(root: Path, endpoint: str, sim: Sim, clock: Clock) -> service.RolloutResult:
    service.start(load_project(root), endpoint, "v2", clock=clock)
    return service.run_to_end(
        load_project(root), endpoint, opener=opener(sim, FakeRouter()), clock=clock, sleep=clock.sleep
    )


def test_looks_ask_for_token_streams_only_when_the_policy_gates_on_them(chat: Path) -> None:
    set_policy(chat, "chat", **FAST)  # the scaffold's chat policy: stream_errors, ttft, tokens_per_second
    set_policy(chat, "fraud", **FAST)  # error_rate and latency
    for endpoint, wanted in (("chat", True), ("fraud", False)):
        sim, clock = LlmSim(), Clock()
        service.start(load_project(chat), endpoint, "v2", clock=clock)
        for _ in range(3):  # enter the first step, then two looks
            service.step(load_project(chat), endpoint, opener=opener(sim, FakeRouter()), clock=clock)
            clock.sleep(5.0)
        assert len(sim.requests) == 2 and {r.token_streams for r in sim.requests} == {wanted}, endpoint


SHADOW = {
    **FAST,
    "strategy": "shadow",
    "shadow_percent": 100,
    "shadow_agreement": 0.9,
    "metrics": [{"name": "error_rate", "kind": "error_rate", "margin": 0.05, "critical": True}],
}


def test_shadow_example_generations_reach_the_run_record_and_every_report(chat: Path) -> None:
    set_policy(chat, "chat", **SHADOW)
    res = _run(chat, "chat", LlmSim(agree=0.5), Clock())
    assert res.record is not None and res.record.status is Status.ROLLED_BACK
    assert "agree with the baseline's on only" in res.record.outcome.reason  # type: ignore[union-attr]
    run = Path(res.run_dir)
    step = RunDir(run).read_state().steps[0]  # read back from state.json
    assert [s["prompt"] for s in step.samples] == ["refund please", "card charged | twice"]
    report = (run / "report.md").read_text()
    assert "## Example generations (shadow)" in report
    assert "| prompt | v1 | v2 | agree | similarity |" in report
    assert "| card charged \\| twice | sorry about that | order shipped | no | 0.410 |" in report
    assert "| refund please | we will refund | we will refund | yes | - |" in report
    html = (run / "report.html").read_text()
    assert "<h2>Example generations (shadow)</h2>" in html and "<td>order shipped</td>" in html
    data = json.loads((run / "report.json").read_text())
    assert [s["shadow_text"] for s in data["shadow_samples"]] == ["we will refund", "order shipped"]


def test_a_canary_without_shadow_samples_writes_no_examples(chat: Path) -> None:
    set_policy(chat, "fraud", **FAST)
    res = _run(chat, "fraud", LlmSim(), Clock())
    run = Path(res.run_dir)
    assert "Example generations" not in (run / "report.md").read_text()
    assert "shadow_samples" not in json.loads((run / "report.json").read_text())
    assert all("samples" not in st for st in json.loads((run / "state.json").read_text())["steps"])


def test_an_llm_canary_policy_on_a_shadow_is_judged_on_errors_beside_the_agreement_gate(chat: Path) -> None:
    """The token-stream kinds are not measured on mirrored streams: a shadow with the scaffold's
    LLM policy compares the error rate (critical, 1-point margin) and gates on agreement."""
    set_policy(chat, "chat", **{k: v for k, v in SHADOW.items() if k != "metrics"})
    sim = LlmSim(errors={"v1": 0.0, "v2": 0.3})
    res = _run(chat, "chat", sim, Clock())
    assert res.record is not None and res.record.status is Status.ROLLED_BACK
    decision = res.record.decision
    assert decision is not None
    assert [m.name for m in decision.metrics] == ["error_rate", "agreement"]
    assert decision.metrics[0].verdict == "fail"
    assert "error_rate (critical)" in decision.reason
    # the same shadow with healthy answers that agree is promoted on the same family
    res = _run(chat, "chat", LlmSim(rate=800.0), Clock())
    assert res.record is not None and res.record.status is Status.PROMOTED, res.record.decision
