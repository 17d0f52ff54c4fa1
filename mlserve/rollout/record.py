"""The typed record of one rollout run: what ``state.json`` holds, as frozen dataclasses.

A :class:`Run` is never changed in place: the state machine returns a new one
(``dataclasses.replace``) and the service writes it once per controller step. On disk it
is versioned JSON, ``mlserve.rollout/v2``; :func:`load` also reads the
``mlserve.rollout/v1`` state that earlier versions wrote (untyped dicts, two-arm traffic)
and migrates it, so a run directory left by an older mlserve resumes.

The decision of a look is the statistics' own :class:`~mlserve.stats.engine.Decision`,
stored as is; a look is the snapshot's :class:`~mlserve.stats.snapshot.Look`, checked once
when it is collected (or migrated), never re-parsed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from itertools import zip_longest
from typing import Any

from mlserve.errors import StateError, UsageError
from mlserve.manifest.models import RolloutPolicy
from mlserve.stats.engine import Decision
from mlserve.stats.snapshot import Look, Snapshot, cumulative, parse_look
from mlserve.status import Status, Verdict
from mlserve.targets.base import Plan

FORMAT = "mlserve.rollout/v2"
FORMAT_V1 = "mlserve.rollout/v1"


class Action(StrEnum):
    """A transition: entering a step, or one of the ways a run ends."""

    ENTER_STEP = "enter_step"
    PROMOTE = "promote"
    ROLLBACK = "rollback"
    HALT = "halt"
    ABORT = "abort"
    INCONCLUSIVE = "inconclusive"


ENDS = {
    Action.PROMOTE: Status.PROMOTED,
    Action.ROLLBACK: Status.ROLLED_BACK,
    Action.HALT: Status.HALTED,
    Action.ABORT: Status.ABORTED,
    Action.INCONCLUSIVE: Status.INCONCLUSIVE,
}


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True)
class StepPlan:
    """One step a strategy walks: its phase and the traffic it sets."""

    phase: str  # shadow | canary | ab
    traffic: Plan

    def to_dict(self) -> dict[str, Any]:
        return {"phase": self.phase, "traffic": self.traffic.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StepPlan:
        return cls(str(data["phase"]), Plan.from_dict(data["traffic"]))


@dataclass(frozen=True)
class MetricBrief:
    """One metric at one look, as the report plots it."""

    name: str
    verdict: str
    estimate: float | None
    ci: tuple[float | None, float | None]
    p_value: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "verdict": self.verdict, "estimate": self.estimate, "ci": list(self.ci),
            "p_value": self.p_value,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MetricBrief:
        ci = data.get("ci") or [None, None]
        return cls(str(data.get("name")), str(data.get("verdict")), data.get("estimate"), (ci[0], ci[1]),
                   data.get("p_value"))  # fmt: skip

    @classmethod
    def of(cls, m: Any) -> MetricBrief:
        """From a decision's metric (a comparison or the agreement gate)."""
        d = m.to_dict()
        return cls.from_dict(d)


@dataclass(frozen=True)
class Agreement:
    """Mirrored requests whose predictions were compared with the primary's, and how many agreed."""

    agree: int
    compared: int

    def to_dict(self) -> dict[str, int]:
        return {"agree": self.agree, "compared": self.compared}


@dataclass(frozen=True)
class StepLook:
    """One completed look of a step: the counts, the agreement seen, and the verdict on them."""

    look: Look
    verdict: Verdict
    metrics: tuple[MetricBrief, ...] = ()
    agreement: Agreement | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "snapshot": self.look.to_dict(),
            "verdict": self.verdict,
            "metrics": [m.to_dict() for m in self.metrics],
            "agreement": self.agreement.to_dict() if self.agreement else None,
        }


@dataclass(frozen=True)
class Step:
    index: int
    phase: str
    traffic: Plan
    started_at: float  # when its traffic was applied
    anchor: float  # where its looks start counting: one settle time after started_at
    looks: tuple[StepLook, ...] = ()
    held: int = 0
    decision: Decision | None = None
    last_look_at: float | None = None
    gpu: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    # an LLM shadow: the latest example (routed, mirrored) generation pairs, for the report
    samples: tuple[Mapping[str, Any], ...] = ()

    @property
    def strategy(self) -> str:
        """The snapshot strategy of this step's evidence."""
        return self.phase if self.phase in ("shadow", "ab") else "canary"

    @property
    def snapshot_looks(self) -> tuple[Look, ...]:
        return tuple(s.look for s in self.looks)

    @property
    def agreement(self) -> Agreement | None:
        return self.looks[-1].agreement if self.looks else None

    def to_dict(self) -> dict[str, Any]:
        out = {
            "index": self.index,
            "phase": self.phase,
            "traffic": self.traffic.to_dict(),
            "started_at": self.started_at,
            "anchor": self.anchor,
            "looks": [s.to_dict() for s in self.looks],
            "held": self.held,
            "decision": self.decision.to_dict() if self.decision else None,
            "last_look_at": self.last_look_at,
            "gpu": {k: dict(v) for k, v in self.gpu.items()},
        }
        if self.samples:  # only LLM shadows have them
            out["samples"] = [dict(x) for x in self.samples]
        return out


@dataclass(frozen=True)
class Pending:
    """A transition whose intent is persisted but whose traffic may not be applied yet."""

    seq: int
    action: Action
    at: float
    step: int | None = None  # enter_step: the step entered
    traffic: Plan | None = None  # None: the traffic stays as it is (inconclusive on 'hold')
    status: Status | None = None  # an ending: the status it ends in
    reason: str = ""
    forced: bool = False

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"seq": self.seq, "action": self.action, "at": self.at}
        if self.step is not None:
            out["step"] = self.step
        out["traffic"] = self.traffic.to_dict() if self.traffic is not None else None
        if self.status is not None:
            out.update(status=self.status, reason=self.reason, forced=self.forced)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Pending:
        traffic = data.get("traffic")
        return cls(
            seq=int(data["seq"]),
            action=Action(data["action"]),
            at=float(data["at"]),
            step=None if data.get("step") is None else int(data["step"]),
            traffic=Plan.from_dict(traffic) if traffic else None,
            status=Status(data["status"]) if data.get("status") else None,
            reason=str(data.get("reason", "")),
            forced=bool(data.get("forced", False)),
        )


@dataclass(frozen=True)
class Transition:
    """A completed transition, as logged in events.jsonl."""

    seq: int
    action: Action
    at: str
    step: int | None = None
    phase: str | None = None
    weights: Mapping[str, int] | None = None
    status: Status | None = None
    reason: str | None = None
    manifest_updated: bool | None = None
    control: str | None = None  # "started" or "stopped": what the transition did to the control arm

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"seq": self.seq, "action": self.action, "at": self.at}
        for key in ("step", "phase", "weights", "status", "reason", "manifest_updated", "control"):
            value = getattr(self, key)
            if value is not None:
                out[key] = dict(value) if key == "weights" else value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Transition:
        weights = data.get("weights")
        return cls(
            seq=int(data["seq"]),
            action=Action(data["action"]),
            at=str(data["at"]),
            step=None if data.get("step") is None else int(data["step"]),
            phase=data.get("phase"),
            weights={str(k): int(v) for k, v in weights.items()} if weights is not None else None,
            status=Status(data["status"]) if data.get("status") else None,
            reason=data.get("reason"),
            manifest_updated=data.get("manifest_updated"),
            control=data.get("control"),
        )


class ControlState(StrEnum):
    """Where a rollout's control arm is. ``starting`` is written with the intent to enter the
    first step that routes to it; ``stopped`` with the end that no longer does."""

    STARTING = "starting"
    RUNNING = "running"
    STOPPED = "stopped"


@dataclass(frozen=True)
class ControlArm:
    """The rollout's control: a fresh instance of the baseline version, arm ``name``."""

    name: str
    version: str
    state: ControlState
    started_at: str | None = None
    stopped_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "state": self.state, "started_at": self.started_at,
                "stopped_at": self.stopped_at}  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ControlArm:
        return cls(str(data["name"]), str(data["version"]), ControlState(data["state"]), data.get("started_at"),
                   data.get("stopped_at"))  # fmt: skip


@dataclass(frozen=True)
class Outcome:
    status: Status
    reason: str
    at: str
    forced: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "reason": self.reason, "at": self.at, "forced": self.forced}


@dataclass(frozen=True)
class Hold:
    """Why the latest look was held (Prometheus down, no series yet)."""

    at: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"at": self.at, "reason": self.reason}


@dataclass(frozen=True)
class LoadRecord:
    """The bounded background load of ``rollout run --load``, summarised for the report."""

    markdown: str
    requests: int | None
    failures: int | None
    variants: Mapping[str, Any]
    out_dir: str | None
    html: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "markdown": self.markdown, "requests": self.requests, "failures": self.failures,
            "variants": dict(self.variants), "out_dir": self.out_dir, "html": self.html,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LoadRecord:
        return cls(
            str(data.get("markdown", "")), data.get("requests"), data.get("failures"),
            dict(data.get("variants") or {}), data.get("out_dir"), str(data.get("html", "")),
        )  # fmt: skip


@dataclass(frozen=True)
class Run:
    run_id: str
    endpoint: str
    env: str
    target: str
    baseline: str
    candidate: str
    strategy: str
    policy: RolloutPolicy
    interval: float
    max_duration: float
    started_at: float
    started: str
    deadline: float
    plans: tuple[StepPlan, ...]
    traffic: Plan  # what the router was last told
    status: Status = Status.RUNNING
    step: int = 0
    steps: tuple[Step, ...] = ()
    seq: int = 0
    pending: Pending | None = None
    transitions: tuple[Transition, ...] = ()
    decision: Decision | None = None
    outcome: Outcome | None = None
    forced: bool = False
    look_count: int = 0
    last_hold: Hold | None = None
    finished_at: float | None = None
    paused_at: float | None = None
    reports: Mapping[str, str] = field(default_factory=dict)
    load: LoadRecord | None = None
    created_by: Mapping[str, Any] = field(default_factory=dict)
    updated_at: str = ""
    control: ControlArm | None = None  # the control arm, once a step that routes to it is intended

    # -- reading ---------------------------------------------------------------------

    @property
    def current(self) -> Step | None:
        return self.steps[-1] if self.steps else None

    @property
    def total_looks(self) -> int:
        return sum(len(st.looks) for st in self.steps)

    @property
    def total_held(self) -> int:
        return sum(st.held for st in self.steps)

    def step_snapshot(self, step: Step, source: str = "<live>") -> Snapshot:
        """What one step's decision sees: its own looks, anchored at its start (with the step's
        control arm, when it routes to one)."""
        return Snapshot(
            self.endpoint, self.baseline, self.candidate, step.strategy, step.snapshot_looks, source,
            control=step.traffic.control,
        )  # fmt: skip

    def cumulative_snapshot(self) -> Snapshot:
        """The whole run as one snapshot (see :func:`mlserve.stats.snapshot.cumulative`)."""
        controls = {st.traffic.control for st in self.steps if st.looks and st.phase != "shadow"} - {None}
        return cumulative(
            self.endpoint,
            self.baseline,
            self.candidate,
            [(st.phase, st.snapshot_looks) for st in self.steps],
            control=next(iter(controls)) if len(controls) == 1 else None,
        )

    # -- updating ----------------------------------------------------------------------

    def with_step(self, step: Step) -> Run:
        """The record with its current step replaced."""
        return replace(self, steps=(*self.steps[:-1], step))

    # -- persistence -------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "run_id": self.run_id,
            "endpoint": self.endpoint,
            "env": self.env,
            "target": self.target,
            "baseline": self.baseline,
            "candidate": self.candidate,
            "strategy": self.strategy,
            "policy": self.policy.model_dump(mode="json"),
            "interval": self.interval,
            "max_duration": self.max_duration,
            "started_at": self.started_at,
            "started": self.started,
            "deadline": self.deadline,
            "plans": [p.to_dict() for p in self.plans],
            "traffic": self.traffic.to_dict(),
            "status": self.status,
            "step": self.step,
            "steps": [st.to_dict() for st in self.steps],
            "seq": self.seq,
            "pending": self.pending.to_dict() if self.pending else None,
            "transitions": [t.to_dict() for t in self.transitions],
            "decision": self.decision.to_dict() if self.decision else None,
            "outcome": self.outcome.to_dict() if self.outcome else None,
            "forced": self.forced,
            "look_count": self.look_count,
            "last_hold": self.last_hold.to_dict() if self.last_hold else None,
            "finished_at": self.finished_at,
            "paused_at": self.paused_at,
            "reports": dict(self.reports),
            "load": self.load.to_dict() if self.load else None,
            "created_by": dict(self.created_by),
            "updated_at": self.updated_at,
            "control": self.control.to_dict() if self.control else None,
        }


# ---------------------------------------------------------------------------
# Reading v2, and migrating v1
# ---------------------------------------------------------------------------


def load(data: Mapping[str, Any], source: str = "state.json") -> Run:
    """A run record from its JSON document (v2, or v1 from an earlier mlserve)."""
    fmt = data.get("format")
    try:
        if fmt == FORMAT:
            return _run(data, _step_v2)
        if fmt == FORMAT_V1:
            return _run(data, _step_v1)
    except UsageError as exc:  # a look that breaks the snapshot rules
        raise StateError(f"{source}: {exc.message}") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise StateError(f"{source}: not a valid rollout record ({type(exc).__name__}: {exc})") from None
    raise StateError(f"{source}: format must be {FORMAT!r} or {FORMAT_V1!r} (got {fmt!r})")


def _run(data: Mapping[str, Any], step_of: Any) -> Run:
    base, cand = str(data["baseline"]), str(data["candidate"])
    steps = tuple(step_of(st, base, cand, f"steps[{i}]") for i, st in enumerate(data.get("steps") or []))
    pending = data.get("pending")
    return Run(
        run_id=str(data["run_id"]),
        endpoint=str(data["endpoint"]),
        env=str(data["env"]),
        target=str(data.get("target") or ""),
        baseline=base,
        candidate=cand,
        strategy=str(data["strategy"]),
        # a record written before the control key compared the candidate with the primary
        policy=RolloutPolicy.model_validate({"control": "primary", **dict(data["policy"])}),
        interval=float(data["interval"]),
        max_duration=float(data["max_duration"]),
        started_at=float(data["started_at"]),
        started=str(data.get("started", "")),
        deadline=float(data["deadline"]),
        plans=tuple(StepPlan.from_dict(p) for p in data["plans"]),
        traffic=Plan.from_dict(data["traffic"]),
        status=Status(data["status"]),
        step=int(data.get("step", 0)),
        steps=steps,
        seq=int(data.get("seq", 0)),
        pending=Pending.from_dict(pending) if pending else None,
        transitions=tuple(Transition.from_dict(t) for t in data.get("transitions") or []),
        decision=Decision.from_dict(data["decision"]) if data.get("decision") else None,
        outcome=_outcome(data.get("outcome")),
        forced=bool(data.get("forced", False)),
        look_count=int(data.get("look_count", 0)),
        last_hold=Hold(str(data["last_hold"]["at"]), str(data["last_hold"]["reason"]))
        if data.get("last_hold")
        else None,
        finished_at=_opt_float(data.get("finished_at")),
        paused_at=_opt_float(data.get("paused_at")),
        reports={str(k): str(v) for k, v in dict(data.get("reports") or {}).items()},
        load=LoadRecord.from_dict(data["load"]) if data.get("load") else None,
        created_by=dict(data.get("created_by") or {}),
        updated_at=str(data.get("updated_at", "")),
        control=ControlArm.from_dict(data["control"]) if data.get("control") else None,
    )


def _outcome(data: Mapping[str, Any] | None) -> Outcome | None:
    if not data:
        return None
    return Outcome(Status(data["status"]), str(data.get("reason", "")), str(data.get("at", "")),
                   bool(data.get("forced", False)))  # fmt: skip


def _looks(raw: Sequence[Any], base: str, cand: str, where: str, control: str | None = None) -> list[Look]:
    out: list[Look] = []
    for i, item in enumerate(raw):
        out.append(parse_look(item, base, cand, out[-1] if out else None, f"{where}.looks[{i + 1}]", control))
    return out


def _step_common(data: Mapping[str, Any], looks: tuple[StepLook, ...]) -> Step:
    decision = data.get("decision")
    return Step(
        index=int(data["index"]),
        phase=str(data["phase"]),
        traffic=Plan.from_dict(data["traffic"]),
        started_at=float(data["started_at"]),
        anchor=float(data["anchor"]),
        looks=looks,
        held=int(data.get("held", 0)),
        decision=Decision.from_dict(decision) if decision else None,
        last_look_at=_opt_float(data.get("last_look_at")),
        gpu={str(k): dict(v) for k, v in dict(data.get("gpu") or {}).items()},
        samples=tuple(dict(x) for x in data.get("samples") or () if isinstance(x, Mapping)),
    )


def _agreement(data: Mapping[str, Any] | None) -> Agreement | None:
    return Agreement(int(data["agree"]), int(data["compared"])) if data else None


def _step_v2(data: Mapping[str, Any], base: str, cand: str, where: str) -> Step:
    items = list(data.get("looks") or [])
    control = Plan.from_dict(data["traffic"]).control
    looks = _looks([item["snapshot"] for item in items], base, cand, where, control)
    out = []
    for look, item in zip(looks, items, strict=True):
        briefs = tuple(MetricBrief.from_dict(m) for m in item.get("metrics", []))
        out.append(StepLook(look, Verdict(item["verdict"]), briefs, _agreement(item.get("agreement"))))
    return _step_common(data, tuple(out))


def _step_v1(data: Mapping[str, Any], base: str, cand: str, where: str) -> Step:
    """v1 kept three parallel lists per step: looks, agreement and history."""
    looks = _looks(list(data.get("looks") or []), base, cand, where)
    agreement = list(data.get("agreement") or [])
    history = list(data.get("history") or [])
    out = []
    for look, agreed, h in zip_longest(looks, agreement[: len(looks)], history[: len(looks)]):
        h = h or {"verdict": "continue", "metrics": []}
        briefs = tuple(MetricBrief.from_dict(m) for m in h.get("metrics", []))
        out.append(StepLook(look, Verdict(h["verdict"]), briefs, _agreement(agreed)))
    return _step_common(data, tuple(out))
