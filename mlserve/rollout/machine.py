"""The rollout state machine: look, decide, act; persisted so that a crash loses nothing.

One :meth:`Machine.reconcile` is a flat list of small steps with early returns: ended?
paused? no step yet? look (or hold) -> decide -> act. Each step computes a new
:class:`~mlserve.rollout.record.Run` (``dataclasses.replace``) and the machine writes it
once; what differs by target sits behind the :class:`~mlserve.targets.base.Router` and
:class:`~mlserve.targets.base.MetricsSource` it is given, so it never asks which target
it runs on.

Every change of traffic is a *transition* with a sequence number, made in three moves:
(1) the intent is written to state.json (``pending``, in the same write as the look and
decision that caused it), (2) the traffic is applied through the router (a full
replacement, so applying twice is harmless), (3) the result is written (``pending``
cleared, step advanced) and the event logged. A process killed between any two moves
leaves either no intent (nothing happened) or an intent that the next ``rollout
step|run|resume`` re-applies and completes: no step is skipped and none is entered twice.

Each step is its own sequential experiment: its looks are anchored at the step's start
(the source's settle time after the traffic change, so no request served at the previous
weights is counted), the weights are constant within it, and the engine decides on it
alone. See docs/rollouts.md for why.

**The control arm.** A step whose plan has a control arm (a fresh instance of the baseline
version) needs that arm running before its traffic is applied. The intent to enter such a
step records the control as ``starting`` (same write); completing it starts the arm through
the router (:meth:`~mlserve.targets.base.Router.start_arm`, idempotent: a crash after the
start and before the record adopts the running arm), applies the traffic and records the
arm ``running``. Every end (promote, rollback, halt, abort, inconclusive, the deadline, a
manual rollback) first applies traffic without the control, then stops it
(:meth:`~mlserve.targets.base.Router.stop_arm`, idempotent) and records it ``stopped`` in the
write that completes the end, so a crash anywhere in between is finished by the next resume.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from mlserve.errors import StateError, UsageError
from mlserve.manifest.analysis import analysis_spec
from mlserve.metrics import Collected, LookRequest, MetricsUnavailable, StaleAnchor
from mlserve.rollout.record import (
    ENDS,
    Action,
    Agreement,
    ControlArm,
    ControlState,
    Hold,
    MetricBrief,
    Outcome,
    Pending,
    Run,
    Step,
    StepLook,
    Transition,
)
from mlserve.rollout.store import RunDir
from mlserve.stats.engine import Decision, analyze
from mlserve.stats.kinds import token_stream_kinds
from mlserve.stats.shadow import analyze_shadow
from mlserve.stats.snapshot import parse_look
from mlserve.status import Status, Verdict
from mlserve.targets.base import MetricsSource, Plan, Role, Router
from mlserve.timefmt import utc

Progress = Callable[[Run], None]


def _quiet(_run: Run) -> None:
    return None


@dataclass(frozen=True)
class Ports:
    """What the machine needs from the world: the target's router and metrics, time, and
    the promotion's edit of mlserve.toml (endpoint, version) -> changed."""

    router: Router
    metrics: MetricsSource
    set_baseline: Callable[[str, str], bool]
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep


class Machine:
    """One run, driven by whoever holds its lock."""

    def __init__(self, run_dir: RunDir, record: Run, ports: Ports) -> None:
        self.dir = run_dir
        self.record = record
        self.ports = ports
        self.spec = analysis_spec(record.policy)

    # -- persistence -----------------------------------------------------------------

    def save(self, record: Run) -> None:
        """The one write of a controller step: state.json, then the snapshots derived from it."""
        self.record = self.dir.write_state(record)
        self.dir.write_snapshots(record)

    def event(self, kind: str, **fields: Any) -> None:
        self.dir.event(kind, run_id=self.record.run_id, **fields)

    # -- transitions -----------------------------------------------------------------

    def intent(self, record: Run, action: Action, **details: Any) -> Run:
        """The record with a transition's intent (the next sequence number) pending."""
        seq = record.seq + 1
        return replace(record, seq=seq, pending=Pending(seq, action, self.ports.clock(), **details))

    def entering(self, record: Run, index: int) -> Run:
        """The intent to enter step ``index``; a control arm its plan routes to, and that does
        not run yet, is recorded as starting in the same write."""
        traffic = record.plans[index].traffic
        found = traffic.arm(Role.CONTROL)
        if found is not None and (record.control is None or record.control.state is ControlState.STOPPED):
            name, arm = found
            record = replace(record, control=ControlArm(name, arm.version, ControlState.STARTING))
        return self.intent(record, Action.ENTER_STEP, step=index, traffic=traffic)

    def ending(self, record: Run, action: Action, reason: str, *, forced: bool = False) -> Run:
        """The intent to end the run: traffic to the candidate (promote), back to the baseline
        (rollback, halt, abort), or kept as it is (inconclusive: on_inconclusive = 'hold'; a
        control's share then goes to the primary, since the control stops at every end)."""
        traffic: Plan | None = None
        if action is Action.PROMOTE:
            traffic = Plan.stable(record.candidate)
        elif action in (Action.ROLLBACK, Action.HALT, Action.ABORT):
            traffic = Plan.stable(record.baseline)
        elif record.traffic.control is not None:
            traffic = record.traffic.without_control()
        return self.intent(record, action, status=ENDS[action], reason=reason, forced=forced, traffic=traffic)

    def complete(self) -> None:
        """Apply a pending transition's traffic (starting a control arm it routes to first, or
        stopping one it no longer does after), then record it as done."""
        record = self.record
        pending = record.pending
        if pending is None:
            return
        control_did = None
        if pending.action is Action.ENTER_STEP and pending.traffic is not None and pending.traffic.control:
            record, control_did = self._start_control(record)
        if pending.traffic is not None:
            self.ports.router.apply(record.endpoint, pending.traffic)
        if pending.action is not Action.ENTER_STEP:
            record, control_did = self._stop_control(record)
        now = self.ports.clock()
        if pending.action is Action.ENTER_STEP:
            record, done = self._entered(record, pending, now)
        else:
            record, done = self._ended(record, pending, now)
        done = replace(done, control=control_did)
        self.save(replace(record, pending=None, transitions=(*record.transitions, done)))
        self.event("transition", **done.to_dict())
        if control_did is not None and record.control is not None:
            self.event(f"control_{control_did}", arm=record.control.name, version=record.control.version)
        if record.status.terminal:
            self.write_reports()

    def _start_control(self, record: Run) -> tuple[Run, str | None]:
        """Start the control arm the pending step routes to (adopting one that already runs)."""
        pending = record.pending
        assert pending is not None and pending.traffic is not None
        name = pending.traffic.control
        assert name is not None
        arm = pending.traffic.arms[name]
        control = record.control
        if control is not None and control.name == name and control.state is ControlState.RUNNING:
            return record, None
        self.ports.router.start_arm(record.endpoint, name, arm.version, candidate=record.candidate)
        started = ControlArm(name, arm.version, ControlState.RUNNING, started_at=utc(self.ports.clock()))
        return replace(record, control=started), "started"

    def _stop_control(self, record: Run) -> tuple[Run, str | None]:
        """Stop the control arm at an end (the traffic no longer routes to it)."""
        control = record.control
        if control is None or control.state is ControlState.STOPPED:
            return record, None
        self.ports.router.stop_arm(record.endpoint, control.name)
        stopped = replace(control, state=ControlState.STOPPED, stopped_at=utc(self.ports.clock()))
        return replace(record, control=stopped), "stopped"

    def _entered(self, record: Run, pending: Pending, now: float) -> tuple[Run, Transition]:
        assert pending.step is not None and pending.traffic is not None
        index, plan = pending.step, record.plans[pending.step]
        step = Step(index, plan.phase, pending.traffic, now, now + self.ports.metrics.settle_seconds())
        done = Transition(
            pending.seq, pending.action, utc(now), step=index, weights=pending.traffic.weights, phase=plan.phase
        )
        return replace(record, steps=(*record.steps, step), step=index, traffic=pending.traffic), done

    def _ended(self, record: Run, pending: Pending, now: float) -> tuple[Run, Transition]:
        assert pending.status is not None
        updated = None
        if pending.action is Action.PROMOTE:
            updated = self.ports.set_baseline(record.endpoint, record.candidate)
        done = Transition(
            pending.seq, pending.action, utc(now), status=pending.status, reason=pending.reason,
            weights=pending.traffic.weights if pending.traffic else None, manifest_updated=updated,
        )  # fmt: skip
        record = replace(
            record,
            traffic=pending.traffic or record.traffic,
            status=pending.status,
            outcome=Outcome(pending.status, pending.reason, utc(now), pending.forced),
            finished_at=now,
            reports={k: str(v) for k, v in self.dir.report_paths().items()},
        )
        return record, done

    def recover(self, *, finish_pending: bool = True) -> None:
        """After a crash: log transitions whose event was lost, then finish a pending one
        (unless the caller is about to replace it with an end: ``finish_pending=False``)."""
        events = self.dir.read_events()
        logged = {e.get("seq") for e in events if e.get("event") == "transition"}
        controls = {(e.get("event"), e.get("arm")) for e in events if str(e.get("event", "")).startswith("control_")}
        for t in self.record.transitions:
            if t.seq not in logged:
                self.event("transition", recovered=True, **t.to_dict())
                arm = self.record.control.name if self.record.control else None
                if t.control and (f"control_{t.control}", arm) not in controls:
                    self.event(f"control_{t.control}", arm=arm, recovered=True)
        pending = self.record.pending
        if pending is not None and (finish_pending or pending.action is not Action.ENTER_STEP):
            self.event("recovering", seq=pending.seq, action=pending.action)
            self.complete()
        elif self.record.status.terminal:
            self.stop_leftover_control()

    def stop_leftover_control(self) -> None:
        """A run that ended with its control still recorded as running (an end written by an
        earlier mlserve, or by hand): stop it now."""
        record = self.record
        if record.control is None or record.control.state is ControlState.STOPPED:
            return
        record, did = self._stop_control(record)
        self.save(record)
        if did and record.control is not None:
            self.event("control_stopped", arm=record.control.name, version=record.control.version)

    # -- the reconcile ---------------------------------------------------------------

    def reconcile(self) -> None:
        """One look: query, decide, act."""
        record = self.record
        if record.status.terminal:
            return
        if record.status is Status.PAUSED:
            raise StateError(
                f"rollout {record.run_id} is paused", hint=f"`mlserve rollout resume {record.endpoint}` continues it"
            )
        step = record.current
        if step is None:
            # the first look would see nothing yet: the step's anchor is one settle time away
            self.save(self.entering(record, 0))
            self.complete()
            return
        now = self.ports.clock()
        try:
            seen = self.observe(step, now)
        except StaleAnchor as exc:
            if exc.fresh_at is not None and not step.looks:  # count from the first scrape after the change
                step = replace(step, anchor=exc.fresh_at)
                self.record = self.record.with_step(step)
                self.event("re_anchored", step=step.index, anchor=utc(exc.fresh_at))
            self.hold(step, now, exc.message)
            return
        except MetricsUnavailable as exc:
            self.hold(step, now, exc.message)
            return
        record = self.looked(record, step, seen, now)
        decision = record.decision
        assert decision is not None
        record, passed = self.act(record, decision, now)
        self.save(record)
        self.event(
            "look", step=step.index, look=len(step.looks) + 1, verdict=decision.verdict,
            requests=dict(decision.requests), reason=decision.reason, queries=list(seen.queries),
        )  # fmt: skip
        if passed:
            self.event("step_passed", step=step.index, reason=decision.reason)
        self.complete()

    def observe(self, step: Step, now: float) -> Collected:
        """One look at the step's arms; MetricsUnavailable when anything is missing (a hold)."""
        if now <= step.anchor:
            raise MetricsUnavailable("the step has just started: waiting for the first scrape after the traffic change")
        record = self.record
        shadow = step.phase == "shadow"
        control = [step.traffic.control] if step.traffic.control else []
        request = LookRequest(
            endpoint=record.endpoint,
            variants=[record.baseline, *control, record.candidate],
            weights=step.traffic.weights,
            started_at=step.anchor,
            at=now,
            custom={} if shadow else _custom_queries(record),
            shadow=shadow,
            agreement=shadow and record.policy.shadow_agreement > 0,
            token_streams=any(m.kind in token_stream_kinds() for m in record.policy.metrics),
            predictions=() if shadow else _prediction_metrics(record),
            changed_at=step.started_at,
        )
        previous = step.looks[-1].look.to_dict() if step.looks else None
        return self.ports.metrics.look(request, previous)

    def hold(self, step: Step, now: float, reason: str) -> None:
        """A look that could not be taken: no data is never a pass; the deadline still applies."""
        record = self.record
        held = (record.decision or Decision(Verdict.HELD, "")).held(f"look held: {reason}")
        record = replace(
            record.with_step(replace(step, held=step.held + 1, last_look_at=now)),
            last_hold=Hold(utc(now), reason),
            decision=held,
        )
        expired = now >= record.deadline
        if expired:
            record = self.deadline(record, held=True)
        self.save(record)
        self.event("held", step=step.index, reason=reason)
        if expired:
            self.complete()

    def looked(self, record: Run, step: Step, seen: Collected, now: float) -> Run:
        """The record with the look added to its step and the decision taken on it."""
        previous = step.looks[-1].look if step.looks else None
        look = parse_look(
            seen.look, record.baseline, record.candidate, previous, f"step {step.index + 1} look", step.traffic.control
        )
        agreement = Agreement(**seen.agreement) if seen.agreement is not None else None
        step = replace(
            step,
            looks=(*step.looks, StepLook(look, Verdict.CONTINUE, (), agreement)),
            gpu=seen.gpu or step.gpu,
            samples=seen.samples or step.samples,
            last_look_at=now,
        )
        decision = self.decide(record, step, now, final=False)
        briefs = tuple(MetricBrief.of(m) for m in decision.metrics)
        step = replace(
            step, looks=(*step.looks[:-1], replace(step.looks[-1], verdict=decision.verdict, metrics=briefs))
        )
        step = replace(step, decision=decision)
        return replace(record.with_step(step), last_hold=None, decision=decision, look_count=record.look_count + 1)

    def decide(self, record: Run, step: Step, now: float, *, final: bool) -> Decision:
        policy = record.policy
        elapsed = now - step.started_at
        wait = False
        if step.phase == "ab":
            wait = now < self.ab_horizon(record)
        elif step.phase == "canary":
            wait = elapsed < policy.step_min_duration
        snapshot = record.step_snapshot(step, str(self.dir.step_snapshot(step.index)))
        allow = not wait or final
        if step.phase == "shadow":
            agreed = step.agreement or Agreement(0, 0)
            gate = self.ports.metrics.capabilities.shadow_agreement
            d = analyze_shadow(snapshot, self.spec, agree=agreed.agree, compared=agreed.compared, gate=gate,
                               final=final, allow_promote=allow).decision  # fmt: skip
        else:
            d = analyze(snapshot, self.spec, final=final, allow_promote=allow, harm_first=True).decision
        compared = (record.candidate, step.traffic.control or record.baseline)
        no_harm = (
            d.verdict is Verdict.CONTINUE
            and not final
            and step.phase == "canary"
            and policy.step_advance == "no_harm"
            and not wait
            and all(d.requests.get(arm, 0) >= policy.min_requests for arm in compared)
        )
        if no_harm:
            reason = (
                f"step held {elapsed:.0f}s (step_min_duration) with at least {policy.min_requests} requests "
                "per variant and no harm shown (step_advance = 'no_harm')"
            )
            return replace(d, verdict=Verdict.PROMOTE, reason=reason, decided_at_look=len(step.looks))
        return d

    def ab_horizon(self, record: Run) -> float:
        first = next((st for st in record.steps if st.phase == "ab"), None)
        start = first.started_at if first else self.ports.clock()
        return start + float(record.policy.ab_duration or record.policy.max_duration)

    def act(self, record: Run, decision: Decision, now: float) -> tuple[Run, bool]:
        """The intent a decision calls for (if any), and whether the step passed."""
        if decision.verdict is Verdict.ROLLBACK:
            return self.ending(record, Action.ROLLBACK, decision.reason), False
        if decision.verdict is Verdict.HALT:
            return self.ending(record, Action.HALT, decision.reason), False
        if decision.verdict is Verdict.PROMOTE:
            nxt = record.step + 1
            if nxt < len(record.plans):
                return self.entering(record, nxt), True
            return self.ending(record, Action.PROMOTE, decision.reason), False
        if now >= record.deadline:
            return self.deadline(record, held=False), False
        return record, False

    def deadline(self, record: Run, *, held: bool) -> Run:
        """The deadline turns a hold or an undecided step into the policy's on_inconclusive."""
        step = record.current
        assert step is not None
        rollback = record.policy.on_inconclusive == "rollback"
        if held or not step.looks:
            why = record.last_hold.reason if record.last_hold else "no look completed"
            if rollback:
                return self.ending(
                    record, Action.ROLLBACK, f"deadline reached while held ({why}); on_inconclusive is 'rollback'"
                )
            return self.ending(
                record,
                Action.INCONCLUSIVE,
                f"deadline reached while held ({why}); mlserve never promotes without data, so the current split is kept",
            )
        d = self.decide(record, step, self.ports.clock(), final=True)
        record = replace(record, decision=d)
        action = {Verdict.PROMOTE: Action.PROMOTE, Verdict.ROLLBACK: Action.ROLLBACK, Verdict.HALT: Action.HALT}
        if d.verdict in action:
            return self.ending(record, action[d.verdict], d.reason)
        return self.ending(record, Action.INCONCLUSIVE, d.reason or "deadline reached without a decision")

    # -- operator actions --------------------------------------------------------------

    def finish(self, action: Action, reason: str, *, forced: bool = False) -> None:
        self.save(self.ending(self.record, action, reason, forced=forced))
        self.complete()

    def promote(self, *, force: bool = False) -> None:
        record = self.record
        verdict = record.decision.verdict if record.decision else None
        if record.status is Status.PROMOTED:  # idempotent: re-apply the promotion
            reason = record.outcome.reason if record.outcome else ""
            self.save(self.ending(record, Action.PROMOTE, reason))
            self.complete()
            return
        if record.status.terminal and not force:
            raise UsageError(
                f"rollout {record.run_id} has ended ({record.status}); promoting {record.candidate} needs --force"
            )
        if verdict is not Verdict.PROMOTE and not force:
            raise UsageError(
                f"the analysis has not said promote for {record.candidate} (latest verdict: {verdict or 'none'})",
                hint="wait for the rollout, or use `mlserve promote --force` (recorded in the events and the report)",
            )
        reason = record.decision.reason if record.decision else ""
        if force:
            self.record = replace(record, forced=True)
            self.event("forced_promote", verdict=verdict, pid=os.getpid())
            reason = f"promoted by hand with --force (latest verdict: {verdict or 'none'})"
        self.finish(Action.PROMOTE, reason, forced=force)

    def rollback(self, reason: str = "rolled back by hand (`mlserve rollback`)") -> None:
        if self.record.status.baseline_restored:
            self.ports.router.apply(self.record.endpoint, Plan.stable(self.record.baseline))
            self.stop_leftover_control()
            return
        self.finish(Action.ROLLBACK, reason)

    def abort(self) -> None:
        if self.record.status.terminal:
            return
        self.finish(Action.ABORT, "aborted by hand (`mlserve rollout abort`): traffic back to the baseline")

    def pause(self) -> None:
        if self.record.status.terminal or self.record.status is Status.PAUSED:
            return
        self.save(replace(self.record, status=Status.PAUSED, paused_at=self.ports.clock()))
        self.event("paused")

    def unpause(self) -> None:
        record = self.record
        if record.status is not Status.PAUSED:
            return
        now = self.ports.clock()
        paused = record.paused_at if record.paused_at is not None else now
        # time spent paused does not count against the deadline
        deadline = record.deadline + max(0.0, now - paused)
        self.save(replace(record, deadline=deadline, status=Status.RUNNING, paused_at=None))
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

    # -- the blocking loop -------------------------------------------------------------

    def run_loop(self, *, until: float | None = None, on_progress: Progress = _quiet) -> None:
        """Look every interval until a terminal state, a pause, or the deadline."""
        if until is not None and until < self.record.deadline:
            self.save(replace(self.record, deadline=until))
        on_progress(self.record)
        clock, sleep = self.ports.clock, self.ports.sleep
        while not self.record.status.terminal and self.record.status is not Status.PAUSED:
            req = self.dir.take_request()
            if req is not None and self.handle_request(req):
                break
            step = self.record.current
            if step is not None:
                base = step.last_look_at if step.last_look_at is not None else step.anchor
                due = min(base + self.record.interval, max(self.record.deadline, step.anchor + 0.1))
                now = clock()
                if now < due:
                    sleep(min(0.25, due - now))
                    continue
            self.reconcile()
            on_progress(self.record)
        on_progress(self.record)

    # -- reports -----------------------------------------------------------------------

    def write_reports(self) -> None:
        from mlserve.report import write_reports

        write_reports(self.dir.root, self.record, self.dir.read_events())


def _prediction_metrics(record: Run) -> tuple[str, ...]:
    """The policy's prediction gates, whose looks count positive predictions per arm."""
    return tuple(m.name for m in record.policy.metrics if m.kind == "prediction")


def _custom_queries(record: Run) -> dict[str, tuple[str, str]]:
    """The PromQL of the policy's custom ratio metrics, by metric name."""
    return {
        m.name: (m.numerator, m.denominator)
        for m in record.policy.metrics
        if m.kind == "ratio" and m.numerator is not None and m.denominator is not None
    }
