"""The rollout state machine: start, look, decide, act; persisted so that a crash loses nothing.

Every change of traffic is a *transition* with a sequence number. It is made in three
moves: (1) the intent is written to state.json (``pending``), (2) the traffic is applied
on the target (a full replacement, so applying twice is harmless), (3) the result is
written (``pending`` cleared, step advanced) and the event logged. A process killed
between any two moves leaves either no intent (nothing happened) or an intent that the
next ``rollout step|run|resume`` re-applies and completes: no step is skipped and none is
entered twice. Looks are recorded in state.json in the same atomic write as the decision
taken on them.

Each step is its own sequential experiment: its looks are anchored at the step's start
(one scrape interval after the traffic change, so no request served at the previous
weights is counted), the weights are constant within it, and the engine decides on it
alone. See docs/rollouts.md for why.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from mlserve.errors import EXIT_INCONCLUSIVE, EXIT_OK, EXIT_REJECTED, StateError, UsageError
from mlserve.manifest.models import RolloutPolicy
from mlserve.metrics import MetricsUnavailable
from mlserve.project import Project
from mlserve.rollout.decide import Decision, decide, snapshot_document
from mlserve.rollout.looks import take_look
from mlserve.rollout.store import (
    STATE_FORMAT,
    TERMINAL,
    RunDir,
    atomic_write_json,
    current_run,
    holding,
    new_run_id,
    set_current,
    utc,
)
from mlserve.rollout.traffic import Driver, Plan, driver_for, stable_plan

EXIT_FOR_STATUS = {
    "promoted": EXIT_OK,
    "rolled_back": EXIT_REJECTED,
    "halted": EXIT_INCONCLUSIVE,
    "inconclusive": EXIT_INCONCLUSIVE,
    "aborted": EXIT_INCONCLUSIVE,
    "paused": EXIT_INCONCLUSIVE,
    "running": EXIT_INCONCLUSIVE,
}
STRATEGIES = ("canary", "shadow", "ab", "shadow+canary")
AB_PERCENT = 50

Progress = Callable[[dict[str, Any]], None]


def _quiet(_state: dict[str, Any]) -> None:
    return None


# ---------------------------------------------------------------------------
# Plans of steps
# ---------------------------------------------------------------------------


def step_plans(strategy: str, policy: RolloutPolicy, baseline: str, candidate: str) -> list[dict[str, Any]]:
    """The steps a strategy walks. A canary step of 100% is the promotion itself (at 100%
    there is no baseline traffic left to compare with), so it is not an analysis step."""
    plans: list[dict[str, Any]] = []
    if strategy in ("shadow", "shadow+canary"):
        plan = Plan(baseline, candidate, "shadow", {baseline: 100, candidate: 0}, policy.shadow_percent)
        plans.append({"phase": "shadow", "traffic": plan.to_dict()})
    if strategy in ("canary", "shadow+canary"):
        for w in policy.steps:
            if w >= 100:
                break
            plan = Plan(baseline, candidate, "canary", {baseline: 100 - w, candidate: w})
            plans.append({"phase": "canary", "traffic": plan.to_dict()})
        if not any(p["phase"] == "canary" for p in plans):
            raise UsageError("rollout.steps has no step below 100%: a canary needs at least one analysis step")
    if strategy == "ab":
        plan = Plan(baseline, candidate, "ab", {baseline: 100 - AB_PERCENT, candidate: AB_PERCENT})
        plans.append({"phase": "ab", "traffic": plan.to_dict()})
    return plans


# ---------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RolloutResult:
    """What a command reports: the state (plain data), where it lives and the exit code."""

    state: dict[str, Any]
    run_dir: str
    exit_code: int
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        s = self.state
        return {
            "run_id": s["run_id"],
            "run_dir": self.run_dir,
            "endpoint": s["endpoint"],
            "env": s["env"],
            "baseline": s["baseline"],
            "candidate": s["candidate"],
            "strategy": s["strategy"],
            "status": s["status"],
            "step": s["step"],
            "steps": len(s["plans"]),
            "weights": current_weights(s),
            "looks": sum(len(st["looks"]) for st in s["steps"]),
            "held": sum(int(st.get("held", 0)) for st in s["steps"]),
            "last_hold": s.get("last_hold"),
            "decision": s.get("decision"),
            "outcome": s.get("outcome"),
            "forced": bool(s.get("forced")),
            "message": self.message,
            "reports": s.get("reports", {}),
        }


def current_weights(state: Mapping[str, Any]) -> dict[str, int]:
    return dict(state.get("traffic", {}).get("weights", {}))


# ---------------------------------------------------------------------------
# The machine
# ---------------------------------------------------------------------------


class Rollout:
    """One run, driven by whoever holds its lock."""

    def __init__(
        self,
        project: Project,
        run: RunDir,
        state: dict[str, Any],
        *,
        driver: Driver | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.project = project
        self.run = run
        self.s = state
        self.clock = clock
        self.sleep = sleep
        self.driver = driver or driver_for(project, state["env"], others=lambda: active_plans(project, state))
        self.policy = RolloutPolicy.model_validate(state["policy"])
        self._query: Any = None

    # -- persistence ---------------------------------------------------------------

    def save(self) -> None:
        self.run.write_state(self.s)
        self._write_snapshots()

    def _write_snapshots(self) -> None:
        s = self.s
        for i, st in enumerate(s["steps"]):
            if st["looks"] and (i == len(s["steps"]) - 1 or not self.run.step_snapshot(i).exists()):
                atomic_write_json(self.run.step_snapshot(i), self.step_document(st))
        atomic_write_json(self.run.snapshot, cumulative_snapshot(s))

    def step_document(self, st: Mapping[str, Any]) -> dict[str, Any]:
        strategy = "shadow" if st["phase"] == "shadow" else ("ab" if st["phase"] == "ab" else "canary")
        return snapshot_document(self.s["endpoint"], self.s["baseline"], self.s["candidate"], strategy, st["looks"])

    def event(self, kind: str, **fields: Any) -> None:
        self.run.event(kind, run_id=self.s["run_id"], **fields)

    # -- transitions ---------------------------------------------------------------

    def _transition(self, action: str, **details: Any) -> None:
        """Persist the intent, apply it, persist the result (see the module docstring)."""
        s = self.s
        s["seq"] = int(s.get("seq", 0)) + 1
        s["pending"] = {"seq": s["seq"], "action": action, "at": self.clock(), **details}
        self.save()
        self._complete_pending()

    def _complete_pending(self) -> None:
        s = self.s
        pending = s.get("pending")
        if not pending:
            return
        action = pending["action"]
        plan = Plan.from_dict(pending["traffic"]) if pending.get("traffic") else None
        if plan is not None:
            self.driver.apply(s["endpoint"], plan)
        now = self.clock()
        done: dict[str, Any] = {"seq": pending["seq"], "action": action, "at": utc(now)}
        if action == "enter_step":
            index = int(pending["step"])
            settle = self.settle_seconds()
            s["steps"].append(
                {
                    "index": index,
                    "phase": s["plans"][index]["phase"],
                    "traffic": pending["traffic"],
                    "started_at": now,
                    "anchor": now + settle,
                    "looks": [],
                    "agreement": [],
                    "gpu": {},
                    "held": 0,
                    "decision": None,
                    "last_look_at": None,
                }
            )
            s["step"] = index
            s["traffic"] = pending["traffic"]
            done.update(step=index, weights=pending["traffic"]["weights"], phase=s["plans"][index]["phase"])
        elif action in ("promote", "rollback", "halt", "abort", "inconclusive"):
            if action == "promote":
                from mlserve.rollout.manifest_edit import set_baseline

                changed = set_baseline(self.project.manifest_path, s["endpoint"], s["candidate"])
                done["manifest_updated"] = changed
            if plan is not None:
                s["traffic"] = plan.to_dict()
                done["weights"] = dict(plan.weights)
            s["status"] = pending["status"]
            s["outcome"] = {
                "status": pending["status"],
                "reason": pending.get("reason", ""),
                "at": utc(now),
                "forced": bool(pending.get("forced")),
            }
            s["finished_at"] = now
            done.update(status=pending["status"], reason=pending.get("reason", ""))
        s["pending"] = None
        s.setdefault("transitions", []).append(done)
        self.save()
        self.event("transition", **done)

    def recover(self) -> None:
        """After a crash: log transitions whose event was lost, then finish a pending one."""
        logged = {e.get("seq") for e in self.run.read_events() if e.get("event") == "transition"}
        for t in self.s.get("transitions", []):
            if t["seq"] not in logged:
                self.event("transition", recovered=True, **t)
        if self.s.get("pending"):
            self.event("recovering", seq=self.s["pending"]["seq"], action=self.s["pending"]["action"])
            self._complete_pending()

    def settle_seconds(self) -> float:
        env = self.project.manifest.environments[self.s["env"]]
        scrape = float(env.scrape_interval) if env.target == "local" else 15.0
        return scrape + 0.5

    # -- the step ------------------------------------------------------------------

    @property
    def step_record(self) -> dict[str, Any]:
        return dict(self.s["steps"][-1]) if self.s["steps"] else {}

    @property
    def terminal(self) -> bool:
        return self.s["status"] in TERMINAL

    def deadline(self) -> float:
        return float(self.s["deadline"])

    def interval(self) -> float:
        return float(self.s["interval"])

    def query(self) -> Any:
        if self._query is None:
            self._query = self.driver.query()
        return self._query

    def look(self) -> dict[str, Any]:
        """One look: query, decide, act. Returns the state."""
        s = self.s
        if self.terminal:
            return s
        if s["status"] == "paused":
            raise StateError(
                f"rollout {s['run_id']} is paused", hint=f"`mlserve rollout resume {s['endpoint']}` continues it"
            )
        if not s["steps"]:
            # the first look would see nothing yet: the step's anchor is one scrape away
            self._transition("enter_step", step=0, traffic=s["plans"][0]["traffic"])
            return s
        st = s["steps"][-1]
        now = self.clock()
        previous = st["looks"][-1] if st["looks"] else None
        try:
            seen = take_look(
                self.driver,
                self.query(),
                endpoint=s["endpoint"],
                baseline=s["baseline"],
                candidate=s["candidate"],
                mode=st["traffic"]["mode"],
                weights=st["traffic"]["weights"],
                anchor=float(st["anchor"]),
                at=now,
                policy=self.policy,
                previous=previous,
            )
        except MetricsUnavailable as exc:
            st["held"] = int(st.get("held", 0)) + 1
            st["last_look_at"] = now
            s["last_hold"] = {"at": utc(now), "reason": exc.message}
            s["decision"] = {
                "verdict": "held",
                "reason": f"look held: {exc.message}",
                "metrics": (s.get("decision") or {}).get("metrics", []),
            }
            self.save()
            self.event("held", step=st["index"], reason=exc.message)
            if now >= self.deadline():
                self._deadline(held=True)
            return s
        st["looks"].append(seen.look)
        st["agreement"].append(seen.agreement)
        if seen.samples:
            st["samples"] = seen.samples
        if seen.gpu:
            st["gpu"] = seen.gpu
        st["last_look_at"] = now
        s["last_hold"] = None
        decision = self._decide(st, final=False)
        st["decision"] = decision.to_dict()
        s["decision"] = decision.to_dict()
        st.setdefault("history", []).append(
            {
                "look": len(st["looks"]),
                "at": seen.look["at"],
                "verdict": decision.verdict,
                "metrics": [
                    {k: m.get(k) for k in ("name", "verdict", "estimate", "ci", "p_value")} for m in decision.metrics
                ],
            }
        )
        s["look_count"] = int(s.get("look_count", 0)) + 1
        self.save()
        self.event(
            "look",
            step=st["index"],
            look=len(st["looks"]),
            verdict=decision.verdict,
            requests=decision.requests,
            reason=decision.reason,
        )
        self._act(decision, now)
        return s

    def _decide(self, st: Mapping[str, Any], *, final: bool) -> Decision:
        doc = self.step_document(st)
        phase = st["phase"]
        now = self.clock()
        elapsed = now - float(st["started_at"])
        wait = False
        if phase == "ab":
            wait = now < self.ab_horizon()
        elif phase == "canary":
            wait = elapsed < self.policy.step_min_duration
        agreement_min = self.policy.shadow_agreement if self.driver.source == "local" else 0.0
        agreement = st["agreement"][-1] if st.get("agreement") else None
        d = decide(
            doc,
            self.policy,
            final=final,
            allow_promote=not wait or final,
            agreement_min=agreement_min,
            agreement=agreement,
            source=str(self.run.step_snapshot(int(st["index"]))),
        )
        if (
            d.verdict == "continue"
            and not final
            and phase == "canary"
            and self.policy.step_advance == "no_harm"
            and not wait
            and all(int(n) >= self.policy.min_requests for n in d.requests.values())
            and len(d.requests) == 2
        ):
            return Decision(
                "promote",
                f"step held {elapsed:.0f}s (step_min_duration) with at least {self.policy.min_requests} requests "
                "per variant and no harm shown (step_advance = 'no_harm')",
                len(st["looks"]),
                d.metrics,
                d.srm,
                d.requests,
                d.agreement,
            )
        return d

    def ab_horizon(self) -> float:
        first = next((st for st in self.s["steps"] if st["phase"] == "ab"), None)
        start = float(first["started_at"]) if first else self.clock()
        return start + float(self.policy.ab_duration or self.policy.max_duration)

    def _act(self, decision: Decision, now: float) -> None:
        s = self.s
        if decision.verdict == "rollback":
            self._finish("rollback", "rolled_back", decision.reason)
        elif decision.verdict == "halt":
            self._finish("halt", "halted", decision.reason)
        elif decision.verdict == "promote":
            nxt = int(s["step"]) + 1
            if nxt < len(s["plans"]):
                self.event("step_passed", step=s["step"], reason=decision.reason)
                self._transition("enter_step", step=nxt, traffic=s["plans"][nxt]["traffic"])
            else:
                self._finish("promote", "promoted", decision.reason)
        elif now >= self.deadline():
            self._deadline(held=False)

    def _deadline(self, *, held: bool) -> None:
        """The deadline turns a hold or an undecided step into the policy's on_inconclusive."""
        s = self.s
        action = self.policy.on_inconclusive
        st = s["steps"][-1]
        if held or not st["looks"]:
            why = (s.get("last_hold") or {}).get("reason", "no look completed")
            if action == "rollback":
                self._finish(
                    "rollback", "rolled_back", f"deadline reached while held ({why}); on_inconclusive is 'rollback'"
                )
            else:
                self._finish(
                    "inconclusive",
                    "inconclusive",
                    f"deadline reached while held ({why}); mlserve never promotes without data, "
                    "so the current split is kept",
                )
            return
        d = self._decide(st, final=True)
        s["decision"] = d.to_dict()
        if d.verdict == "promote":
            self._finish("promote", "promoted", d.reason)
        elif d.verdict == "rollback":
            self._finish("rollback", "rolled_back", d.reason)
        elif d.verdict == "halt":
            self._finish("halt", "halted", d.reason)
        else:
            self._finish("inconclusive", "inconclusive", d.reason or "deadline reached without a decision")

    def _finish(self, action: str, status: str, reason: str, *, forced: bool = False) -> None:
        s = self.s
        if action == "promote":
            plan: Plan | None = stable_plan(s["candidate"])
        elif action in ("rollback", "halt", "abort"):
            plan = stable_plan(s["baseline"])
        else:
            plan = None  # inconclusive: the current split is kept (on_inconclusive = 'hold')
        self._transition(action, status=status, reason=reason, forced=forced, traffic=plan.to_dict() if plan else None)
        self.write_reports()

    # -- operator actions ------------------------------------------------------------

    def promote(self, *, force: bool = False) -> None:
        s = self.s
        verdict = (s.get("decision") or {}).get("verdict")
        if s["status"] == "promoted":
            self._transition(  # idempotent: re-apply the promotion
                "promote",
                status="promoted",
                reason=s["outcome"]["reason"],
                traffic=stable_plan(s["candidate"]).to_dict(),
            )
            return
        if self.terminal and not force:
            raise UsageError(
                f"rollout {s['run_id']} has ended ({s['status']}); promoting {s['candidate']} needs --force"
            )
        if verdict != "promote" and not force:
            raise UsageError(
                f"the analysis has not said promote for {s['candidate']} (latest verdict: {verdict or 'none'})",
                hint="wait for the rollout, or use `mlserve promote --force` (recorded in the events and the report)",
            )
        reason = (s.get("decision") or {}).get("reason", "")
        if force:
            s["forced"] = True
            self.event("forced_promote", verdict=verdict, pid=os.getpid())
            reason = f"promoted by hand with --force (latest verdict: {verdict or 'none'})"
        self._finish("promote", "promoted", reason, forced=force)

    def rollback(self, reason: str = "rolled back by hand (`mlserve rollback`)") -> None:
        if self.s["status"] in ("rolled_back", "halted", "aborted"):
            self.driver.apply(self.s["endpoint"], stable_plan(self.s["baseline"]))
            return
        self._finish("rollback", "rolled_back", reason)

    def abort(self) -> None:
        if self.terminal:
            return
        self._finish("abort", "aborted", "aborted by hand (`mlserve rollout abort`): traffic back to the baseline")

    def pause(self) -> None:
        if self.terminal or self.s["status"] == "paused":
            return
        self.s["status"] = "paused"
        self.s["paused_at"] = self.clock()
        self.save()
        self.event("paused")

    def unpause(self) -> None:
        if self.s["status"] != "paused":
            return
        paused = float(self.s.get("paused_at") or self.clock())
        # time spent paused does not count against the deadline
        self.s["deadline"] = float(self.s["deadline"]) + max(0.0, self.clock() - paused)
        self.s["status"] = "running"
        self.s["paused_at"] = None
        self.save()
        self.event("resumed")

    def handle_request(self, req: Mapping[str, Any]) -> bool:
        """A control request left by another process. True when the run must stop."""
        action = req.get("action")
        self.event("request", action=action, from_pid=req.get("pid"))
        if action == "pause":
            self.pause()
            return True
        if action == "abort":
            self.abort()
            return True
        if action == "rollback":
            self.rollback()
            return True
        if action == "promote":
            try:
                self.promote(force=bool(req.get("force")))
            except UsageError as exc:
                self.event("request_refused", action=action, reason=exc.message)
                return False
            return True
        return False

    # -- the blocking loop -----------------------------------------------------------

    def run_loop(self, *, until: float | None = None, on_progress: Progress = _quiet) -> None:
        """Look every interval until a terminal state, a pause, or the deadline."""
        s = self.s
        if until is not None and until < float(s["deadline"]):
            s["deadline"] = until
            self.save()
        on_progress(s)
        while not self.terminal and s["status"] != "paused":
            req = self.run.take_request()
            if req is not None and self.handle_request(req):
                break
            if not s["steps"]:
                self.look()
                on_progress(s)
                continue
            st = s["steps"][-1]
            last = st.get("last_look_at")
            base = float(last) if last is not None else float(st["anchor"])
            due = min(base + self.interval(), max(self.deadline(), float(st["anchor"]) + 0.1))
            now = self.clock()
            if now < due:
                self.sleep(min(0.25, due - now))
                continue
            self.look()
            on_progress(s)
        on_progress(s)

    # -- reports ---------------------------------------------------------------------

    def write_reports(self) -> None:
        try:
            from mlserve.report import write_reports
        except ImportError:  # pragma: no cover - reports land separately
            return
        paths = write_reports(self.run.root, self.s, self.run.read_events())
        self.s["reports"] = {k: str(v) for k, v in paths.items()}
        self.run.write_state(self.s)


# ---------------------------------------------------------------------------
# Cumulative snapshot of a run
# ---------------------------------------------------------------------------


def _add(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """Variant stats ``b`` stacked on top of cumulative ``a`` (same histogram bounds)."""
    out: dict[str, Any] = {
        "requests": int(a["requests"]) + int(b["requests"]),
        "errors": int(a["errors"]) + int(b["errors"]),
    }
    ha, hb = a.get("latency_seconds"), b.get("latency_seconds")
    if hb is not None and (ha is None or ha["le"] == hb["le"]):
        base = ha or {"counts": [0] * len(hb["counts"]), "sum": 0.0}
        out["latency_seconds"] = {
            "le": hb["le"],
            "counts": [int(x) + int(y) for x, y in zip(base["counts"], hb["counts"], strict=True)],
            "sum": round(float(base["sum"]) + float(hb["sum"]), 6),
        }
    ca, cb = a.get("custom", {}), b.get("custom", {})
    if cb:
        out["custom"] = {
            k: {
                "numerator": ca.get(k, {}).get("numerator", 0) + v["numerator"],
                "denominator": ca.get(k, {}).get("denominator", 0) + v["denominator"],
            }
            for k, v in cb.items()
        }
    if b.get("llm") is not None:
        from mlserve.stats.llm import stack_llm

        out["llm"] = stack_llm(a.get("llm") or {}, b["llm"])
    return out


def cumulative_snapshot(state: Mapping[str, Any]) -> dict[str, Any]:
    """The whole run as one snapshot: each step's looks stacked on the totals of the steps
    before it, with the weights of each interval. Requests served during a step's settle
    time (between a traffic change and its first scrape) belong to no step and are left out."""
    base, cand = state["baseline"], state["candidate"]
    offset: dict[str, Any] = {v: {"requests": 0, "errors": 0} for v in (base, cand)}
    looks: list[dict[str, Any]] = []
    strategies = {st["phase"] for st in state["steps"]}
    steps = state["steps"]
    if strategies - {"shadow"}:
        # mirrored requests are not a split: a shadow phase before a canary stays in its own
        # step snapshot, or the sample-ratio check of a replay would read it as misrouting
        steps = [st for st in steps if st["phase"] != "shadow"]
        strategies -= {"shadow"}
    for st in steps:
        last: dict[str, Any] | None = None
        for look in st["looks"]:
            looks.append(
                {
                    "at": look["at"],
                    "weights": look["weights"],
                    "variants": {v: _add(offset[v], look["variants"][v]) for v in (base, cand)},
                }
            )
            last = look
        if last is not None:
            offset = {v: _add(offset[v], last["variants"][v]) for v in (base, cand)}
    if strategies == {"shadow"}:
        strategy = "shadow"
    elif "ab" in strategies:
        strategy = "ab"
    else:
        strategy = "canary"
    return snapshot_document(state["endpoint"], base, cand, strategy, looks)


# ---------------------------------------------------------------------------
# Entry points used by the CLI
# ---------------------------------------------------------------------------


def _runs_root(project: Project) -> Any:
    return project.experiments_dir


def active_plans(project: Project, me: Mapping[str, Any]) -> dict[str, Plan]:
    """Live traffic of the other endpoints' rollouts in the same environment (kubernetes
    re-renders every endpoint's traffic at once, so it must not reset theirs)."""
    out: dict[str, Plan] = {}
    for name in project.manifest.endpoints:
        if name == me.get("endpoint"):
            continue
        try:
            run = current_run(project.experiments_dir, name)
            if run is None:
                continue
            st = run.read_state()
        except StateError:
            continue
        if st.get("env") == me.get("env") and st.get("traffic") and st.get("status") not in ("rolled_back", "halted"):
            out[name] = Plan.from_dict(st["traffic"])
    return out


def load_run(project: Project, endpoint: str) -> RunDir:
    project.endpoint(endpoint)
    run = current_run(project.experiments_dir, endpoint)
    if run is None:
        raise UsageError(
            f"no rollout of endpoint {endpoint!r} was started in this project",
            hint=f"start one with `mlserve rollout start {endpoint} --candidate VERSION`",
        )
    return run


def start(
    project: Project,
    endpoint: str,
    candidate: str,
    *,
    env: str | None = None,
    strategy: str | None = None,
    interval: float | None = None,
    max_duration: float | None = None,
    driver: Driver | None = None,
    clock: Callable[[], float] = time.time,
) -> RolloutResult:
    """Create the run directory and its state; the first step's traffic is set on the first look."""
    env_name = project.environment(env)
    project.endpoint(endpoint, env_name)
    ep = project.manifest.endpoints[endpoint]
    if candidate not in ep.versions:
        raise UsageError(
            f"--candidate {candidate!r} is not a version of endpoint {endpoint!r} (versions: {', '.join(sorted(ep.versions))})"
        )
    if candidate == ep.baseline:
        raise UsageError(f"--candidate {candidate!r} is already the baseline of endpoint {endpoint!r}")
    policy = ep.rollout
    chosen = strategy or policy.strategy
    if chosen not in STRATEGIES:
        raise UsageError(f"--strategy must be one of {', '.join(STRATEGIES)} (got {chosen!r})")
    existing = current_run(project.experiments_dir, endpoint)
    if existing is not None:
        old = existing.read_state()
        if old["status"] not in TERMINAL:
            raise StateError(
                f"rollout {old['run_id']} of {endpoint} is still {old['status']} "
                f"({old['baseline']} -> {old['candidate']})",
                hint=f"finish it (`mlserve rollout run {endpoint}`) or stop it (`mlserve rollout abort {endpoint}`)",
            )
    now = clock()
    ivl = float(interval if interval is not None else policy.interval)
    total = float(max_duration if max_duration is not None else policy.max_duration)
    if ivl <= 0 or total <= 0:
        raise UsageError("--interval and --max-duration must be positive")
    plans = step_plans(chosen, policy, ep.baseline, candidate)
    run_id = new_run_id(candidate, now)
    root = project.experiments_dir / endpoint / run_id
    n = 1
    while root.exists():
        n += 1
        root = project.experiments_dir / endpoint / f"{run_id}-{n}"
    run = RunDir(root)
    root.mkdir(parents=True)
    state: dict[str, Any] = {
        "format": STATE_FORMAT,
        "run_id": run.run_id,
        "endpoint": endpoint,
        "env": env_name,
        "target": project.manifest.environments[env_name].target,
        "baseline": ep.baseline,
        "candidate": candidate,
        "strategy": chosen,
        "policy": policy.model_dump(mode="json"),
        "interval": ivl,
        "max_duration": total,
        "started_at": now,
        "started": utc(now),
        "deadline": now + total,
        "status": "running",
        "plans": plans,
        "step": 0,
        "steps": [],
        "seq": 0,
        "pending": None,
        "transitions": [],
        "traffic": stable_plan(ep.baseline).to_dict(),
        "decision": None,
        "outcome": None,
        "forced": False,
        "look_count": 0,
        "created_by": {"pid": os.getpid()},
    }
    with holding(run):
        run.write_state(state)
        run.event("start", run_id=run.run_id, endpoint=endpoint, baseline=ep.baseline, candidate=candidate,
                  strategy=chosen, env=env_name, plans=[p["traffic"]["weights"] for p in plans])  # fmt: skip
        set_current(project.experiments_dir, endpoint, run)
    return RolloutResult(state, str(root), EXIT_INCONCLUSIVE, f"rollout {run.run_id} started")


def _open(project: Project, run: RunDir, driver: Driver | None, clock: Callable[[], float],
          sleep: Callable[[float], None]) -> Rollout:  # fmt: skip
    state = run.read_state()
    return Rollout(project, run, state, driver=driver, clock=clock, sleep=sleep)


def result_of(ro: Rollout, message: str = "") -> RolloutResult:
    return RolloutResult(ro.s, str(ro.run.root), EXIT_FOR_STATUS.get(ro.s["status"], EXIT_INCONCLUSIVE), message)


def step(project: Project, endpoint: str, *, driver: Driver | None = None,
         clock: Callable[[], float] = time.time) -> RolloutResult:  # fmt: skip
    run = load_run(project, endpoint)
    with holding(run):
        ro = _open(project, run, driver, clock, time.sleep)
        ro.recover()
        ro.look()
        return result_of(ro)


def run_to_end(
    project: Project,
    endpoint: str,
    *,
    max_duration: float | None = None,
    interval: float | None = None,
    resume: bool = False,
    driver: Driver | None = None,
    on_progress: Progress = _quiet,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
    load_users: int | None = None,
) -> RolloutResult:
    """``rollout run`` / ``rollout resume``: block until promoted, rolled back, halted or the deadline."""
    run = load_run(project, endpoint)
    with holding(run) as lock:
        ro = _open(project, run, driver, clock, sleep)
        if lock.took_over is not None and not ro.terminal:
            ro.event("resumed_after_crash", previous_pid=lock.took_over.pid, step=ro.s["step"])
        ro.recover()
        if resume:
            ro.unpause()
        elif ro.s["status"] == "paused":
            raise StateError(
                f"rollout {ro.s['run_id']} is paused", hint=f"`mlserve rollout resume {endpoint}` continues it"
            )
        if interval is not None:
            if interval <= 0:
                raise UsageError("--interval must be positive")
            ro.s["interval"] = float(interval)
            ro.save()
        until = clock() + max_duration if max_duration is not None else None
        if not ro.terminal:
            background = _start_load(ro, load_users) if load_users else None
            try:
                ro.run_loop(until=until, on_progress=on_progress)
            finally:
                if background is not None:
                    _finish_load(ro, background)
        return result_of(ro)


def _start_load(ro: Rollout, users: int) -> Any:
    """``rollout run --load``: a bounded locust load on the local gateway for the whole run."""
    from mlserve.loadtest.core import start_background_load

    s = ro.s
    if ro.driver.kind != "local":
        raise UsageError("--load drives the local gateway only; on a cluster, traffic comes from real users")
    from mlserve.targets.local import LocalTarget

    url = LocalTarget(ro.project, s["env"]).gateway_url()
    ep = ro.project.manifest.endpoints[s["endpoint"]]
    payloads = ro.project.root / "payloads" / f"{s['endpoint']}.jsonl"
    remaining = max(60.0, float(s["deadline"]) - ro.clock() + 30.0)
    load = start_background_load(
        url,
        s["endpoint"],
        out_dir=ro.run.root / "load",
        users=users,
        payloads=payloads if payloads.is_file() else None,
        input_spec=None if payloads.is_file() or ep.api == "openai" else ep.input,
        max_duration=min(remaining, 6 * 3600.0),
        environment=s["env"],
        protocol=ep.api,
    )
    ro.event("load_started", users=users, out_dir=str(ro.run.root / "load"))
    return load


def _finish_load(ro: Rollout, load: Any) -> None:
    try:
        result = load.stop()
    except Exception as exc:  # the rollout's outcome matters more than the load's report
        ro.event("load_failed", reason=str(exc)[:300])
        return
    summary = result.to_dict()
    try:
        from mlserve.loadtest.summary import summary_markdown

        markdown = summary_markdown(result, link_from=ro.run.root)
    except Exception:  # the table is a nicety; the figures below are kept either way
        markdown = ""
    ro.s["load"] = {
        "markdown": markdown,
        "requests": summary.get("requests"),
        "failures": summary.get("failures"),
        "variants": summary.get("variants"),
        "out_dir": summary.get("out_dir"),
        "html": str(result.html_report),
    }
    ro.save()
    ro.event("load_stopped", requests=summary.get("requests"))
    ro.write_reports()


def status(project: Project, endpoint: str) -> RolloutResult:
    run = load_run(project, endpoint)
    state = run.read_state()
    holder = run.holder()
    msg = f"driven by pid {holder.pid} since {utc(holder.since)}" if holder else ""
    return RolloutResult(state, str(run.root), EXIT_FOR_STATUS.get(state["status"], EXIT_INCONCLUSIVE), msg)


def _control(project: Project, endpoint: str, action: str, *, force: bool = False, wait: float = 30.0,
             driver: Driver | None = None) -> RolloutResult:  # fmt: skip
    """Act at once when nobody drives the run; else leave a request for the driver and wait."""
    run = load_run(project, endpoint)
    holder = run.holder()
    if holder is None:
        with holding(run):
            ro = _open(project, run, driver, time.time, time.sleep)
            ro.recover()
            if action == "pause":
                ro.pause()
            elif action == "abort":
                ro.abort()
            elif action == "rollback":
                ro.rollback()
            elif action == "promote":
                ro.promote(force=force)
            return result_of(ro)
    run.request(action, force=force)
    target = {"pause": ("paused",), "abort": TERMINAL, "rollback": TERMINAL, "promote": TERMINAL}[action]
    end = time.monotonic() + wait
    while time.monotonic() < end:
        state = run.read_state()
        if state["status"] in target and not state.get("pending"):
            return RolloutResult(
                state, str(run.root), EXIT_FOR_STATUS.get(state["status"], 4), f"{action} done by pid {holder.pid}"
            )
        time.sleep(0.2)
    state = run.read_state()
    return RolloutResult(
        state, str(run.root), EXIT_INCONCLUSIVE,
        f"asked pid {holder.pid} (which drives the run) to {action}; it has not acted yet",
    )  # fmt: skip


def pause(project: Project, endpoint: str) -> RolloutResult:
    return _control(project, endpoint, "pause")


def abort(project: Project, endpoint: str) -> RolloutResult:
    return _control(project, endpoint, "abort")


def promote(project: Project, endpoint: str, *, force: bool = False, driver: Driver | None = None) -> RolloutResult:
    return _control(project, endpoint, "promote", force=force, driver=driver)


def rollback(
    project: Project, endpoint: str, *, env: str | None = None, driver: Driver | None = None
) -> RolloutResult | dict[str, Any]:
    """Return all traffic to the baseline. With a rollout in progress it is rolled back (and
    recorded); otherwise the endpoint's traffic is reset to the baseline named in mlserve.toml."""
    run = current_run(project.experiments_dir, project.endpoint(endpoint))
    if run is None or run.read_state()["status"] in TERMINAL:
        env_name = project.environment(env if run is None or env else run.read_state()["env"])
        drv = driver or driver_for(project, env_name)
        baseline = project.manifest.endpoints[endpoint].baseline
        drv.apply(endpoint, stable_plan(baseline))
        if run is not None:
            run.event("manual_rollback", weights={baseline: 100})
        return {"endpoint": endpoint, "env": env_name, "status": "stable", "weights": {baseline: 100}}
    return _control(project, endpoint, "rollback", driver=driver)


def is_finite(x: Any) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)
