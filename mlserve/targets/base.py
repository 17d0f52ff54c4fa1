"""What every target offers, as three narrow interfaces built by one factory per target.

- :class:`Target`: the environment's lifecycle (plan, deploy, status, teardown, logs).
- :class:`Router`: apply a traffic :class:`Plan` to one endpoint in one request (a full
  replacement, so applying it twice is harmless), and read the current plan back.
- :class:`MetricsSource`: take a look at the arms' metrics for a
  :class:`~mlserve.metrics.LookRequest`, say how long to wait after a weight change before
  counting (:meth:`MetricsSource.settle_seconds`), and what it supports
  (:class:`Capabilities`).

``mlserve.targets.open_environment`` returns the three for an environment; the CLI and the
rollout use nothing else, so neither ever asks which target it runs on.

A :class:`Plan` maps arm names to (version, weight, role): the primary (the baseline version),
the candidate, and on a canary step by default a *control* (a fresh instance of the baseline
version taking the candidate's share, named by the rollout). A router starts and stops such an
extra arm (:meth:`Router.start_arm`, :meth:`Router.stop_arm`) before a plan routes to it and
after the last plan that did.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from mlserve.metrics import Collected, LookRequest


class Role(StrEnum):
    PRIMARY = "primary"  # the baseline version, serving most traffic
    CANDIDATE = "candidate"  # the version being rolled out
    CONTROL = "control"  # a fresh instance of the baseline version, compared with the candidate


class Mode(StrEnum):
    STABLE = "stable"  # all traffic on one version
    CANARY = "canary"  # a weighted split, request by request
    AB = "ab"  # a weighted split, sticky per user
    SHADOW = "shadow"  # the primary answers; requests are mirrored to the candidate


@dataclass(frozen=True)
class Arm:
    version: str
    weight: int  # percent of live traffic
    role: Role
    mirror: int = 0  # percent of requests mirrored to this arm (answers discarded)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"version": self.version, "weight": self.weight, "role": self.role}
        if self.mirror:
            out["mirror"] = self.mirror
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Arm:
        return cls(str(data["version"]), int(data["weight"]), Role(data["role"]), int(data.get("mirror", 0)))


@dataclass(frozen=True)
class Plan:
    """Where one endpoint's requests go: every arm, by name (a full replacement, never a delta)."""

    mode: Mode
    arms: Mapping[str, Arm]

    # -- building ----------------------------------------------------------------------

    @classmethod
    def stable(cls, version: str) -> Plan:
        return cls(Mode.STABLE, {version: Arm(version, 100, Role.PRIMARY)})

    @classmethod
    def split(cls, mode: Mode, baseline: str, candidate: str, candidate_weight: int) -> Plan:
        """Two arms named after their versions: ``candidate_weight`` percent to the candidate."""
        return cls(
            mode,
            {
                baseline: Arm(baseline, 100 - candidate_weight, Role.PRIMARY),
                candidate: Arm(candidate, candidate_weight, Role.CANDIDATE),
            },
        )

    @classmethod
    def controlled(cls, mode: Mode, baseline: str, candidate: str, control: str, candidate_weight: int) -> Plan:
        """Three arms: the candidate and a control (arm ``control``, the baseline version) at
        ``candidate_weight`` percent each, the primary with the rest."""
        w = candidate_weight
        if 2 * w > 100:
            raise ValueError(f"a control with the candidate's {w}% share leaves {100 - 2 * w}% for the primary")
        return cls(
            mode,
            {
                baseline: Arm(baseline, 100 - 2 * w, Role.PRIMARY),
                control: Arm(baseline, w, Role.CONTROL),
                candidate: Arm(candidate, w, Role.CANDIDATE),
            },
        )

    @classmethod
    def shadow(cls, baseline: str, candidate: str, percent: int) -> Plan:
        return cls(
            Mode.SHADOW,
            {
                baseline: Arm(baseline, 100, Role.PRIMARY),
                candidate: Arm(candidate, 0, Role.CANDIDATE, mirror=percent),
            },
        )

    # -- reading -----------------------------------------------------------------------

    @property
    def weights(self) -> dict[str, int]:
        """Percent of live traffic per arm."""
        return {name: arm.weight for name, arm in self.arms.items()}

    def arm(self, role: Role) -> tuple[str, Arm] | None:
        return next(((n, a) for n, a in self.arms.items() if a.role is role), None)

    @property
    def baseline(self) -> str:
        found = self.arm(Role.PRIMARY)
        assert found is not None, "a plan always has a primary arm"
        return found[1].version

    @property
    def candidate(self) -> str | None:
        found = self.arm(Role.CANDIDATE)
        return found[1].version if found else None

    @property
    def control(self) -> str | None:
        """The control arm's name, when the plan has one."""
        found = self.arm(Role.CONTROL)
        return found[0] if found else None

    def without_control(self) -> Plan:
        """The same split with the control's share given to the primary (the control stops)."""
        name = self.control
        if name is None:
            return self
        primary = self.arm(Role.PRIMARY)
        arms = {n: a for n, a in self.arms.items() if n != name}
        if primary is not None:
            pname, parm = primary
            arms[pname] = Arm(parm.version, parm.weight + self.arms[name].weight, parm.role, parm.mirror)
        return Plan(self.mode, arms)

    @property
    def mirror_percent(self) -> int:
        return max((a.mirror for a in self.arms.values()), default=0)

    @property
    def versions(self) -> dict[str, int]:
        """Percent of live traffic per version (arms of one version added up)."""
        out: dict[str, int] = {}
        for arm in self.arms.values():
            out[arm.version] = out.get(arm.version, 0) + arm.weight
        return out

    # -- persistence -------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "arms": {n: a.to_dict() for n, a in self.arms.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Plan:
        if "arms" not in data:
            return cls.from_v1(data)
        return cls(Mode(data["mode"]), {str(n): Arm.from_dict(a) for n, a in dict(data["arms"]).items()})

    @classmethod
    def from_v1(cls, data: Mapping[str, Any]) -> Plan:
        """The two-arm ``{baseline, candidate, mode, weights, shadow_percent}`` of mlserve.rollout/v1."""
        baseline, candidate = str(data["baseline"]), data.get("candidate")
        weights = {str(k): int(v) for k, v in dict(data["weights"]).items()}
        mode = Mode(data["mode"])
        if candidate is None or mode is Mode.STABLE:
            version = next(iter(weights)) if weights else baseline
            return cls.stable(version)
        arms = {
            baseline: Arm(baseline, weights.get(baseline, 0), Role.PRIMARY),
            str(candidate): Arm(
                str(candidate),
                weights.get(str(candidate), 0),
                Role.CANDIDATE,
                mirror=int(data.get("shadow_percent", 0)) if mode is Mode.SHADOW else 0,
            ),
        }
        return cls(mode, arms)


@dataclass(frozen=True)
class Capabilities:
    """What a metrics source can do; the rollout asks this instead of which target it is."""

    shadow_agreement: bool  # counts whether mirrored answers agree with the primary's
    background_load: bool  # ``rollout run --load`` can drive traffic at the target's entry point
    query_set: str  # which series hold requests, errors and latency (mlserve.metrics.QUERY_SETS)
    # which series hold LLM endpoints' token-stream statistics (mlserve.metrics.queries.LLM_QUERY_SETS),
    # read when a look asks for them (LookRequest.token_streams); None: the source has none
    llm_query_set: str | None = None


class Pin(StrEnum):
    """How a request reaches one chosen version of an endpoint, past its traffic split."""

    PATH = "path"  # POST /v2/models/E/versions/V/infer: mlserve's gateway routes it to V
    HEADER = "header"  # POST /v2/models/E/infer with x-mlserve-variant: V (the rendered routes match it)


@dataclass(frozen=True)
class ClientAccess:
    """How a client of our own (``mlserve batch``, ``mlserve compare``) reaches one version of
    an endpoint on this target; asked instead of which target it is."""

    pin: Pin
    loopback_only: bool  # the entry point, and any ``--url`` given for it, must be on loopback


@dataclass(frozen=True)
class LogFile:
    label: str
    path: Path

    def tail(self, lines: int) -> str:
        from mlserve.fsutil import tail

        return tail(self.path, lines)


class Target(Protocol):
    kind: str
    layered: bool  # has layers (cluster, platform, kubernetes) that plan, deploy and destroy take one by one
    access: ClientAccess  # how batch jobs reach one version here

    @property
    def env_name(self) -> str | None: ...

    def plan(self, layer: str | None = None) -> Any: ...

    def deploy(self, request: DeployRequest) -> Any: ...

    def status(self) -> Any: ...

    def teardown(self, layer: str | None = None) -> Any: ...

    def logs(self, name: str, version: str | None = None) -> list[LogFile]: ...

    def entry_url(self) -> str | None:
        """Where clients send requests (what ``--load`` drives), when this target knows it."""
        ...


class LayeredTarget(Target, Protocol):
    def select(self, layer: str | None) -> tuple[str, ...]:
        """The layers a ``--layer`` option names (all, in order, for None); a usage error otherwise."""
        ...


class Router(Protocol):
    def apply(self, endpoint: str, plan: Plan) -> None: ...

    def current(self, endpoint: str) -> Plan | None: ...

    def describe(self) -> str: ...

    def start_arm(self, endpoint: str, name: str, version: str, *, candidate: str | None = None) -> None:
        """Run one more instance of ``version`` as arm ``name`` (the resources and replicas of the
        endpoint's versions), routed at weight 0; return once it is ready. ``candidate``: the
        rollout's candidate, for a router whose arms exist only in a split (a cluster's). Idempotent:
        an arm of that name already running ``version`` is adopted."""
        ...

    def stop_arm(self, endpoint: str, name: str) -> None:
        """Take arm ``name`` out of the routes, drain it and stop it. Idempotent: no such arm is done."""
        ...

    def arms(self, endpoint: str) -> tuple[str, ...]:
        """The extra arms of ``endpoint`` that run now."""
        ...


class MetricsSource(Protocol):
    capabilities: Capabilities

    def look(self, request: LookRequest, previous: Mapping[str, Any] | None) -> Collected: ...

    def settle_seconds(self) -> float: ...


Say = Callable[[str], None]
LineSink = Callable[[str, str], None]  # (layer, line) of a tool's streamed output
Confirm = Callable[[str, dict[str, Any]], bool]  # (layer, planned changes) -> go ahead?


@dataclass(frozen=True)
class DeployRequest:
    """What ``mlserve deploy`` asks of a target; each target uses what applies to it."""

    timeout: float | None = None  # seconds to wait until the endpoints are ready
    layer: str | None = None  # layered targets: only this layer
    confirm: Confirm | None = None  # layered targets: asked before applying a layer's changes


@dataclass(frozen=True)
class LiveRollout:
    """A rollout of one endpoint that has not ended, as ``deploy`` and ``render`` must keep it:
    that endpoint's traffic is the rollout's, not the manifest's stable split. The layer above
    the targets reads it from the run record (``mlserve.rollout.service.live_rollouts``) and
    hands it in through :class:`Options`, so no target reads a rollout's files itself."""

    endpoint: str
    run_id: str
    env: str
    status: str  # running | paused
    baseline: str
    candidate: str
    step: int  # steps entered so far (0: started, no traffic moved yet)
    steps: int
    plan: Plan  # the traffic it last applied


@dataclass(frozen=True)
class Options:
    """Where a target reports progress and finds its tools, and what it must keep (set by the CLI)."""

    say: Say | None = None
    on_line: LineSink | None = None
    plugin_dir: str | Path | None = None
    rollouts: Mapping[str, LiveRollout] = field(default_factory=dict)  # endpoint -> its rollout in progress


@dataclass(frozen=True)
class Environment:
    """One environment's three interfaces, from its target's factory."""

    name: str
    target: Target
    router: Router
    metrics: MetricsSource


def follow(files: list[LogFile], *, poll: float = 0.25) -> Iterator[tuple[str, str]]:
    """New lines of log files as they are written, (label, line), until interrupted."""
    import os
    import time

    handles = []
    for f in files:
        fh = open(f.path, encoding="utf-8", errors="replace")  # noqa: SIM115 - closed below
        fh.seek(0, os.SEEK_END)
        handles.append((f.label, fh))
    try:
        while True:
            got = False
            for label, fh in handles:
                line = fh.readline()
                while line:
                    got = True
                    yield label, line.rstrip("\n")
                    line = fh.readline()
            if not got:
                time.sleep(poll)
    finally:
        for _, fh in handles:
            fh.close()
