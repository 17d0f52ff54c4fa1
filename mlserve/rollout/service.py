"""What the CLI calls: start, step, run, status, pause / abort / promote / rollback.

Each entry point opens the environment's target interfaces through the one factory
(:func:`mlserve.targets.open_environment`), takes the run's lock, lets the machine work,
and returns one :class:`RolloutResult`. Control requests from another process (``pause``
while ``rollout run`` drives the run) are left in the run directory for the lock holder.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from mlserve.capacity import GpuPlan
from mlserve.errors import StateError, UsageError
from mlserve.project import Project
from mlserve.rollout.machine import Machine, Ports, Progress, _quiet
from mlserve.rollout.plans import STRATEGIES, control_arm_name, gpus_per_step, step_plans
from mlserve.rollout.record import Run, StepPlan
from mlserve.rollout.store import RunDir, current_run, holding, new_run_id, rollout_in_progress, set_current
from mlserve.status import ExitStatus, Status
from mlserve.targets.base import Environment, LiveRollout, Plan
from mlserve.timefmt import utc

Opener = Callable[[Project, str], Environment]


@dataclass(frozen=True)
class TrafficReset:
    """``mlserve rollback`` with no rollout in progress: the endpoint's traffic set back to its baseline."""

    endpoint: str
    env: str
    weights: Mapping[str, int]

    def to_dict(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "env": self.env, "status": "stable", "weights": dict(self.weights)}


@dataclass(frozen=True)
class RolloutResult:
    """What a command reports: the run record, where it lives, the exit code and a message
    (or, for a rollback without a run in progress, the traffic reset)."""

    record: Run | None
    run_dir: str
    exit_code: int
    message: str = ""
    reset: TrafficReset | None = None
    gpus: GpuPlan | None = None  # rollout start: GPUs per step, where the endpoint has GPUs

    def to_dict(self) -> dict[str, Any]:
        if self.reset is not None:
            return self.reset.to_dict()
        r = self.record
        assert r is not None
        out = self._record_dict(r)
        if self.gpus is not None:
            out["gpus"] = self.gpus.to_dict()
        return out

    def _record_dict(self, r: Run) -> dict[str, Any]:
        return {
            "run_id": r.run_id,
            "run_dir": self.run_dir,
            "endpoint": r.endpoint,
            "env": r.env,
            "baseline": r.baseline,
            "candidate": r.candidate,
            "strategy": r.strategy,
            "status": r.status,
            "step": r.step,
            "steps": len(r.plans),
            "weights": r.traffic.weights,
            "looks": r.total_looks,
            "held": r.total_held,
            "last_hold": r.last_hold.to_dict() if r.last_hold else None,
            "decision": r.decision.to_dict() if r.decision else None,
            "outcome": r.outcome.to_dict() if r.outcome else None,
            "forced": r.forced,
            "control": r.control.to_dict() if r.control else None,
            "message": self.message,
            "reports": dict(r.reports),
        }


def _open_env(project: Project, env_name: str) -> Environment:
    from mlserve.targets import open_environment

    return open_environment(project, env_name)


def _machine(
    project: Project, run: RunDir, opener: Opener, clock: Callable[[], float], sleep: Callable[[float], None]
) -> tuple[Machine, Environment]:
    from mlserve.rollout.manifest_edit import set_baseline

    record = run.read_state()
    env = opener(project, record.env)
    ports = Ports(
        router=env.router,
        metrics=env.metrics,
        set_baseline=lambda endpoint, version: set_baseline(project.manifest_path, endpoint, version),
        clock=clock,
        sleep=sleep,
    )
    return Machine(run, record, ports), env


def _result(m: Machine, message: str = "") -> RolloutResult:
    return RolloutResult(m.record, str(m.dir.root), m.record.status.exit_code, message)


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
    clock: Callable[[], float] = time.time,
) -> RolloutResult:
    """Create the run directory and its record; the first step's traffic is set on the first look."""
    env_name, chosen = _check_start(project, endpoint, candidate, env, strategy)
    ep = project.manifest.endpoints[endpoint]
    policy = ep.rollout
    _refuse_a_second_run(project, endpoint)
    now = clock()
    ivl = float(interval if interval is not None else policy.interval)
    total = float(max_duration if max_duration is not None else policy.max_duration)
    if ivl <= 0 or total <= 0:
        raise UsageError("--interval and --max-duration must be positive")
    plans = step_plans(chosen, policy, ep.baseline, candidate, control_arm_name(ep.versions))
    gpus = _gpu_plan(project, env_name, endpoint, plans)
    run = _new_run_dir(project, endpoint, new_run_id(candidate, now))
    record = Run(
        run_id=run.run_id,
        endpoint=endpoint,
        env=env_name,
        target=project.manifest.environments[env_name].target,
        baseline=ep.baseline,
        candidate=candidate,
        strategy=chosen,
        policy=policy,
        interval=ivl,
        max_duration=total,
        started_at=now,
        started=utc(now),
        deadline=now + total,
        plans=plans,
        traffic=Plan.stable(ep.baseline),
        created_by={"pid": os.getpid()},
    )
    with holding(run):
        record = run.write_state(record)
        run.event("start", run_id=run.run_id, endpoint=endpoint, baseline=ep.baseline, candidate=candidate,
                  strategy=chosen, env=env_name, plans=[p.traffic.weights for p in plans])  # fmt: skip
        set_current(project.experiments_dir, endpoint, run)
    return RolloutResult(record, str(run.root), ExitStatus.INCONCLUSIVE, f"rollout {run.run_id} started", gpus=gpus)


def _gpu_plan(project: Project, env_name: str, endpoint: str, plans: tuple[StepPlan, ...]) -> GpuPlan | None:
    """GPUs per step of a GPU endpoint; a plan over the cap or the node group is refused here,
    before the run exists and before any traffic moves."""
    from mlserve.capacity import refuse_if_over

    plan = gpus_per_step(project.manifest, env_name, endpoint, plans)
    if plan is not None:
        refuse_if_over(plan)
    return plan


def _check_start(
    project: Project, endpoint: str, candidate: str, env: str | None, strategy: str | None
) -> tuple[str, str]:
    """The environment and strategy of a new run, once the request makes sense."""
    env_name = project.environment(env)
    project.endpoint(endpoint, env_name)
    ep = project.manifest.endpoints[endpoint]
    if candidate not in ep.versions:
        raise UsageError(
            f"--candidate {candidate!r} is not a version of endpoint {endpoint!r} (versions: {', '.join(sorted(ep.versions))})"
        )
    if candidate == ep.baseline:
        raise UsageError(f"--candidate {candidate!r} is already the baseline of endpoint {endpoint!r}")
    chosen = strategy or ep.rollout.strategy
    if chosen not in STRATEGIES:
        raise UsageError(f"--strategy must be one of {', '.join(STRATEGIES)} (got {chosen!r})")
    return env_name, chosen


def _refuse_a_second_run(project: Project, endpoint: str) -> None:
    existing = current_run(project.experiments_dir, endpoint)
    if existing is None:
        return
    old = existing.read_state()
    if not old.status.terminal:
        raise StateError(
            f"rollout {old.run_id} of {endpoint} is still {old.status} ({old.baseline} -> {old.candidate})",
            hint=f"finish it (`mlserve rollout run {endpoint}`) or stop it (`mlserve rollout abort {endpoint}`)",
        )


def _new_run_dir(project: Project, endpoint: str, run_id: str) -> RunDir:
    root = project.experiments_dir / endpoint / run_id
    n = 1
    while root.exists():
        n += 1
        root = project.experiments_dir / endpoint / f"{run_id}-{n}"
    root.mkdir(parents=True)
    return RunDir(root)


def step(
    project: Project, endpoint: str, *, opener: Opener = _open_env, clock: Callable[[], float] = time.time
) -> RolloutResult:
    run = load_run(project, endpoint)
    with holding(run):
        m, _env = _machine(project, run, opener, clock, time.sleep)
        m.recover()
        m.reconcile()
        return _result(m)


def run_to_end(
    project: Project,
    endpoint: str,
    *,
    max_duration: float | None = None,
    interval: float | None = None,
    resume: bool = False,
    opener: Opener = _open_env,
    on_progress: Progress = _quiet,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
    load_users: int | None = None,
) -> RolloutResult:
    """``rollout run`` / ``rollout resume``: block until promoted, rolled back, halted or the deadline."""
    from mlserve.rollout.load import finish_load, start_load

    run = load_run(project, endpoint)
    with holding(run) as lock:
        m, env = _machine(project, run, opener, clock, sleep)
        if lock.took_over is not None and not m.record.status.terminal:
            m.event("resumed_after_crash", previous_pid=lock.took_over.pid, step=m.record.step)
        m.recover()
        if resume:
            m.unpause()
        elif m.record.status is Status.PAUSED:
            raise StateError(
                f"rollout {m.record.run_id} is paused", hint=f"`mlserve rollout resume {endpoint}` continues it"
            )
        if interval is not None:
            if interval <= 0:
                raise UsageError("--interval must be positive")
            m.save(replace(m.record, interval=float(interval)))
        until = clock() + max_duration if max_duration is not None else None
        if not m.record.status.terminal:
            background = start_load(m, project, env, load_users) if load_users else None
            try:
                m.run_loop(until=until, on_progress=on_progress)
            finally:
                if background is not None:
                    finish_load(m, background)
        return _result(m)


def status(project: Project, endpoint: str) -> RolloutResult:
    run = load_run(project, endpoint)
    record = run.read_state()
    holder = run.holder()
    msg = f"driven by pid {holder.pid} since {utc(holder.since)}" if holder else ""
    return RolloutResult(record, str(run.root), record.status.exit_code, msg)


def live_rollouts(project: Project, env_name: str | None) -> dict[str, LiveRollout]:
    """The rollouts in progress on environment ``env_name``'s endpoints (read-only; a run
    directory that cannot be read counts as none): what ``deploy`` and ``render`` keep."""
    if env_name is None or env_name not in project.manifest.environments:
        return {}
    found = {}
    for name in project.manifest.endpoints_in(env_name):
        live = rollout_in_progress(project.experiments_dir, name)
        if live is not None and live.env == env_name:
            found[name] = live
    return found


def _control(project: Project, endpoint: str, action: str, *, force: bool = False, wait: float = 30.0,
             opener: Opener = _open_env) -> RolloutResult:  # fmt: skip
    """Act at once when nobody drives the run; else leave a request for the driver and wait."""
    run = load_run(project, endpoint)
    holder = run.holder()
    if holder is None:
        with holding(run):
            m, _env = _machine(project, run, opener, time.time, time.sleep)
            # an end replaces a step that was about to be entered (and its control start)
            m.recover(finish_pending=action not in ("abort", "rollback"))
            {"pause": m.pause, "abort": m.abort, "rollback": m.rollback, "promote": lambda: m.promote(force=force)}[
                action
            ]()
            return _result(m)
    run.request(action, force=force)
    done = (Status.PAUSED,) if action == "pause" else None
    end = time.monotonic() + wait
    while time.monotonic() < end:
        record = run.read_state()
        reached = record.status in done if done else record.status.terminal
        if reached and record.pending is None:
            return RolloutResult(record, str(run.root), record.status.exit_code, f"{action} done by pid {holder.pid}")
        time.sleep(0.2)
    return RolloutResult(
        run.read_state(), str(run.root), ExitStatus.INCONCLUSIVE,
        f"asked pid {holder.pid} (which drives the run) to {action}; it has not acted yet",
    )  # fmt: skip


def _reached(result: RolloutResult, goal: Status) -> RolloutResult:
    """A command's own exit code: 0 when the run is where the command wanted it, else 4."""
    ok = result.record is not None and result.record.status is goal
    return replace(result, exit_code=ExitStatus.OK if ok else ExitStatus.INCONCLUSIVE)


def pause(project: Project, endpoint: str, *, opener: Opener = _open_env) -> RolloutResult:
    return _control(project, endpoint, "pause", opener=opener)


def abort(project: Project, endpoint: str, *, opener: Opener = _open_env) -> RolloutResult:
    return _control(project, endpoint, "abort", opener=opener)


def promote(project: Project, endpoint: str, *, force: bool = False, opener: Opener = _open_env) -> RolloutResult:
    return _reached(_control(project, endpoint, "promote", force=force, opener=opener), Status.PROMOTED)


def rollback(project: Project, endpoint: str, *, env: str | None = None, opener: Opener = _open_env) -> RolloutResult:
    """Return all traffic to the baseline. With a rollout in progress it is rolled back (and
    recorded); otherwise the endpoint's traffic is reset to the baseline named in mlserve.toml."""
    run = current_run(project.experiments_dir, project.endpoint(endpoint))
    record = run.read_state() if run is not None else None
    if run is None or record is None or record.status.terminal:
        env_name = project.environment(env if record is None or env else record.env)
        baseline = project.manifest.endpoints[endpoint].baseline
        environment = opener(project, env_name)
        environment.router.apply(endpoint, Plan.stable(baseline))
        if run is not None and record is not None and run.holder() is None and env_name == record.env:
            with holding(run):  # the last run's control, if an earlier end left it running
                m, _env = _machine(project, run, lambda _p, _e: environment, time.time, time.sleep)
                m.stop_leftover_control()
        if run is not None:
            run.event("manual_rollback", weights={baseline: 100})
        reset = TrafficReset(endpoint, env_name, {baseline: 100})
        return RolloutResult(None, str(run.root) if run else "", ExitStatus.OK, reset=reset)
    return _reached(_control(project, endpoint, "rollback", opener=opener), Status.ROLLED_BACK)
