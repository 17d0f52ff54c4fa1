"""The kubernetes target: render, then apply each layer in order, and remember what was applied;
its router (a re-render of the traffic applied with ``kubectl apply --server-side``) and its
metrics source (the cluster's Prometheus: Istio's or the Seldon executor's series).

Layers, in order: ``cluster`` (Terraform, only when ``cluster = "aws-eks"``),
``platform`` (Terraform: Istio, KServe or Seldon, Prometheus, the NVIDIA plugin) and
``kubernetes`` (``kubectl apply --server-side -k``). Terraform layers run
init -> plan -> apply, and apply only when the plan has changes, so a second deploy
with nothing changed applies nothing. Destroy goes in reverse order.

Terraform works in ``.mlserve/deploy/ENV/`` (a render of the manifest next to its
state, one workspace per environment), never in the committed ``stacks/``: state can
hold secrets and must survive a re-render. What each layer last applied (manifest
hash, rendered stack hash, time) is recorded in ``.mlserve/deployments/ENV.json`` so
``status`` can tell drift.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mlserve.errors import MlserveError, StateError, TargetError, ToolError, UsageError
from mlserve.metrics import Collected, LookRequest, QueryFn
from mlserve.project import Project
from mlserve.targets import control_arms
from mlserve.targets.base import (
    Capabilities,
    ClientAccess,
    Confirm,
    DeployRequest,
    LogFile,
    Options,
    Pin,
    Plan,
)
from mlserve.targets.live import live_traffic, to_render
from mlserve.tools import terraform as tfmod
from mlserve.tools.kubectl import Kubectl

RECORD_FORMAT = "mlserve.deployments/v1"
LAYER_ORDER = ("cluster", "platform", "kubernetes")
TERRAFORM_LAYERS = ("cluster", "platform")
DEFAULT_READY_TIMEOUT = 300.0

# serving backend -> (resource, kubectl wait condition)
READINESS: dict[str, tuple[str, str]] = {
    "kserve": ("inferenceservices.serving.kserve.io", "condition=Ready"),
    "seldon": ("seldondeployments.machinelearning.seldon.io", "jsonpath={.status.state}=Available"),
}


# ---------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerOutcome:
    layer: str
    tool: str  # terraform | kubectl
    action: str  # planned | applied | unchanged | destroyed | absent
    changes: dict[str, Any] | None = None  # PlanSummary.to_dict(), or {"has_changes": bool} for kubectl
    added: int = 0
    changed: int = 0
    destroyed: int = 0
    outputs: dict[str, Any] = field(default_factory=dict)
    stack_hash: str = ""
    seconds: float = 0.0
    ready: bool | None = None


@dataclass(frozen=True)
class KubeResult:
    env: str
    operation: str  # plan | deploy | destroy
    layers: list[LayerOutcome]
    changed: bool
    manifest_hash: str
    record: str | None
    seconds: float
    kind: str = "kubernetes"


@dataclass(frozen=True)
class LayerStatus:
    layer: str
    deployed: bool
    applied_at: str | None
    drift: list[str]  # why the layer differs from the manifest (empty: in sync)
    outputs: dict[str, Any]


@dataclass(frozen=True)
class KubeStatus:
    env: str
    deployed: bool
    layers: list[LayerStatus]
    endpoints: list[dict[str, Any]]
    cluster_reachable: bool | None
    problems: list[str]
    kind: str = "kubernetes"


# ---------------------------------------------------------------------------
# Hashes and records (pure helpers)
# ---------------------------------------------------------------------------


def sha256_text(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def stack_hash(files: Mapping[str, str]) -> str:
    """Hash of a layer's rendered files (relative path + content), order-independent."""
    h = hashlib.sha256()
    for rel in sorted(files):
        h.update(rel.encode() + b"\0" + files[rel].encode() + b"\0")
    return "sha256:" + h.hexdigest()


def record_path(project: Project, env_name: str) -> Path:
    return project.state_dir / "deployments" / f"{env_name}.json"


def read_record(project: Project, env_name: str) -> dict[str, Any]:
    path = record_path(project, env_name)
    if not path.is_file():
        return {"format": RECORD_FORMAT, "environment": env_name, "layers": {}}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise StateError(f"{path}: unreadable deployment record ({exc})", hint="delete it to start over") from None
    if not isinstance(data, dict) or data.get("format") != RECORD_FORMAT or not isinstance(data.get("layers"), dict):
        raise StateError(f"{path}: not a {RECORD_FORMAT} deployment record", hint="delete it to start over")
    return data


def write_record(project: Project, env_name: str, data: Mapping[str, Any]) -> Path:
    path = record_path(project, env_name)
    if not data.get("layers"):
        path.unlink(missing_ok=True)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------------------
# The target
# ---------------------------------------------------------------------------


class KubernetesTarget:
    kind = "kubernetes"

    layered = True  # cluster, platform and kubernetes layers: plan, deploy and destroy work per layer
    # the ingress (given with --url) routes on the x-mlserve-variant header its VirtualService matches
    access = ClientAccess(Pin.HEADER, loopback_only=False)

    def __init__(
        self,
        project: Project,
        env_name: str,
        *,
        options: Options | None = None,
        ready_timeout: float = DEFAULT_READY_TIMEOUT,
        traffic: Mapping[str, Any] | None = None,
        work_root: Path | None = None,
    ) -> None:
        env = project.manifest.environments.get(env_name)
        if env is None:
            raise UsageError(
                f"unknown environment {env_name!r}; mlserve.toml defines: {', '.join(project.manifest.environments)}"
            )
        if env.target != "kubernetes":
            raise UsageError(f"environment {env_name!r} has target = {env.target!r}, not 'kubernetes'")
        options = options or Options()
        self.project = project
        self.env_name = env_name
        self.env = env
        self.plugin_dir = options.plugin_dir
        self.on_line = options.on_line
        self._say = options.say
        self.ready_timeout = ready_timeout
        self.traffic = traffic  # None: the manifest's stable split, or a rollout's live traffic
        self.rollouts = options.rollouts  # rollouts in progress (their traffic is rendered, not the stable split)
        self._told: set[str] = set()
        self.work_root = work_root or project.state_dir / "deploy"

    # -- the Target interface ----------------------------------------------------

    def deploy(self, request: DeployRequest) -> KubeResult:
        if request.timeout is not None:
            self.ready_timeout = request.timeout
        return self.deploy_layers(request.layer, confirm=request.confirm)

    def teardown(self, layer: str | None = None) -> KubeResult:
        return self.destroy(layer)

    def logs(self, name: str, version: str | None = None) -> list[LogFile]:
        raise UsageError(
            f"environment {self.env_name!r} runs on a cluster: `mlserve logs` shows local processes",
            hint=f"kubectl --context {self.kube_context} logs shows the pods' logs",
        )

    def entry_url(self) -> str | None:
        return None  # clients reach the cluster through its own ingress

    def apply_traffic(self) -> Path:
        """Render the kubernetes layer with this target's traffic and ``kubectl apply`` it
        (server-side): what a rollout's router does at every transition. Returns the folder."""
        dirs, _hashes = self._render()
        folder = dirs.get("kubernetes")
        if folder is None:
            raise TargetError(f"environment {self.env_name!r} rendered no kubernetes layer")
        self._kubectl().apply(folder)
        return folder

    # -- small pieces ----------------------------------------------------------

    @property
    def layers(self) -> tuple[str, ...]:
        return LAYER_ORDER if self.env.cluster == "aws-eks" else ("platform", "kubernetes")

    def select(self, layer: str | None) -> tuple[str, ...]:
        if layer is None:
            return self.layers
        if layer not in LAYER_ORDER:
            raise UsageError(f"unknown layer {layer!r}; layers are {', '.join(LAYER_ORDER)}")
        if layer not in self.layers:
            raise UsageError(
                f"environment {self.env_name!r} has no {layer} layer (cluster = {self.env.cluster!r}); "
                f"its layers are {', '.join(self.layers)}"
            )
        return (layer,)

    @property
    def kube_context(self) -> str:
        """``kube_context`` from the manifest; for aws-eks, the cluster name.

        (``aws eks update-kubeconfig --name NAME --alias NAME`` creates that context.)
        """
        return control_arms.kube_context(self.project, self.env_name)

    def say(self, message: str) -> None:
        if self._say is not None:
            self._say(message)

    def render_traffic(self) -> Mapping[str, Any] | None:
        """The traffic to render: as given, else the live traffic of rollouts in progress (a
        deploy during a canary keeps its weights and its candidate), else the stable split."""
        if self.traffic is not None:
            return self.traffic
        live = live_traffic(self.project, self.env_name, self.rollouts)
        for name, item in live.items():
            if name not in self._told:
                self._told.add(name)
                self.say(item.describe())
        return {name: item.traffic for name, item in live.items()} or None

    def manifest_hash(self) -> str:
        return sha256_text(self.project.manifest_path.read_bytes())

    def _render(self) -> tuple[dict[str, Path], dict[str, str]]:
        """Render into the working folder; layer -> folder and layer -> stack hash."""
        from mlserve.render import render_environment

        result = render_environment(self.project, self.env_name, self.work_root, traffic=self.render_traffic())
        hashes = {}
        for layer, files in result.layers.items():
            hashes[layer] = stack_hash({rel: (result.env_dir / rel).read_text(encoding="utf-8") for rel in files})
        return dict(result.layer_dirs), hashes

    def fresh_hashes(self) -> dict[str, str]:
        """Stack hashes of a render now, without writing anything."""
        from mlserve.render import render_files

        return {
            layer: stack_hash(files)
            for layer, files in render_files(self.project, self.env_name, self.render_traffic()).items()
        }

    def _terraform(self, layer: str, folder: Path) -> tfmod.Terraform:
        def sink(line: str) -> None:
            if self.on_line is not None:
                self.on_line(layer, line)

        return tfmod.Terraform(folder, workspace=self.env_name, plugin_dir=self.plugin_dir, on_line=sink)

    def _kubectl(self) -> Kubectl:
        return Kubectl(self.kube_context)

    def _preflight(self, layer: str) -> None:
        if layer == "cluster":
            tfmod.check_aws_endpoint()

    # -- plan ------------------------------------------------------------------

    def plan(self, layer: str | None = None) -> KubeResult:
        start = time.monotonic()
        chosen = self.select(layer)
        dirs, hashes = self._render()
        outcomes = []
        for name in chosen:
            t0 = time.monotonic()
            self._preflight(name)
            if name in TERRAFORM_LAYERS:
                self.say(f"{name}: terraform init and plan")
                with _clean_if_new(dirs[name], self.env_name):
                    tf = self._terraform(name, dirs[name])
                    tf.init()
                    summary = tf.plan()
                outcomes.append(
                    LayerOutcome(
                        name,
                        "terraform",
                        "planned",
                        summary.to_dict(),
                        stack_hash=hashes[name],
                        seconds=time.monotonic() - t0,
                    )
                )
            else:
                self.say(f"kubernetes: kubectl diff (context {self.kube_context})")
                changes = self._kubectl().diff(dirs[name])
                outcomes.append(
                    LayerOutcome(
                        name,
                        "kubectl",
                        "planned",
                        {"has_changes": changes},
                        stack_hash=hashes[name],
                        seconds=time.monotonic() - t0,
                    )
                )
        changed = any(o.changes and o.changes.get("has_changes") for o in outcomes)
        return KubeResult(
            self.env_name, "plan", outcomes, changed, self.manifest_hash(), None, time.monotonic() - start
        )

    # -- deploy ----------------------------------------------------------------

    def deploy_layers(self, layer: str | None = None, *, confirm: Confirm | None = None) -> KubeResult:
        """Apply the chosen layers in order; ``confirm`` (None: approve) sees each plan with changes."""
        start = time.monotonic()
        chosen = self.select(layer)
        for name in chosen:
            self._preflight(name)
        dirs, hashes = self._render()
        manifest_hash = self.manifest_hash()
        record = read_record(self.project, self.env_name)
        outcomes: list[LayerOutcome] = []
        path: Path | None = None
        for name in chosen:
            t0 = time.monotonic()
            if name in TERRAFORM_LAYERS:
                outcome = self._deploy_terraform(name, dirs[name], hashes[name], confirm)
            else:
                outcome = self._deploy_kubectl(dirs[name], hashes[name], confirm)
            outcome = _with_seconds(outcome, time.monotonic() - t0)
            outcomes.append(outcome)
            previous = record["layers"].get(name, {})
            entry = {
                "tool": outcome.tool,
                "manifest_hash": manifest_hash,
                "stack_hash": hashes[name],
                "checked_at": _now(),
                "applied_at": _now() if outcome.action == "applied" else previous.get("applied_at"),
                "workspace": self.env_name if outcome.tool == "terraform" else None,
                "context": self.kube_context if outcome.tool == "kubectl" else None,
                "outputs": outcome.outputs or previous.get("outputs", {}),
            }
            stale = any(previous.get(k) != entry[k] for k in ("manifest_hash", "stack_hash", "outputs"))
            if outcome.action == "applied" or stale:
                record["layers"][name] = entry
                path = write_record(self.project, self.env_name, record)
        changed = any(o.action == "applied" for o in outcomes)
        return KubeResult(
            self.env_name,
            "deploy",
            outcomes,
            changed,
            manifest_hash,
            str(path) if path else None,
            time.monotonic() - start,
        )

    def _deploy_terraform(self, layer: str, folder: Path, digest: str, confirm: Confirm | None) -> LayerOutcome:
        self.say(f"{layer}: terraform init")
        with _clean_if_new(folder, self.env_name):
            tf = self._terraform(layer, folder)
            tf.init()
            self.say(f"{layer}: terraform plan")
            summary = tf.plan()
        if not summary.has_changes:
            outputs = _small_outputs(summary.prior_outputs)
            return LayerOutcome(layer, "terraform", "unchanged", summary.to_dict(), outputs=outputs, stack_hash=digest)
        if confirm is not None and not confirm(layer, summary.to_dict()):
            raise MlserveError(f"deploy cancelled: nothing applied to the {layer} layer")
        self.say(f"{layer}: terraform apply ({summary.describe()})")
        applied = tf.apply(summary.plan_file or tfmod.PLAN_FILE)
        return LayerOutcome(
            layer,
            "terraform",
            "applied",
            summary.to_dict(),
            added=applied.added,
            changed=applied.changed,
            destroyed=applied.destroyed,
            outputs=_small_outputs(applied.outputs),
            stack_hash=digest,
        )

    def _deploy_kubectl(self, folder: Path, digest: str, confirm: Confirm | None) -> LayerOutcome:
        kubectl = self._kubectl()
        self.say(f"kubernetes: kubectl diff (context {self.kube_context})")
        if not kubectl.diff(folder):
            return LayerOutcome("kubernetes", "kubectl", "unchanged", {"has_changes": False}, stack_hash=digest)
        if confirm is not None and not confirm("kubernetes", {"has_changes": True}):
            raise MlserveError("deploy cancelled: nothing applied to the kubernetes layer")
        self.say("kubernetes: kubectl apply --server-side")
        kubectl.apply(folder)
        namespace = self.env.namespace or "default"
        resource, condition = READINESS[self.env.serving or "kserve"]
        self.say(f"kubernetes: waiting up to {self.ready_timeout:g}s for {resource} in {namespace}")
        try:
            kubectl.wait(resource, condition, namespace=namespace, timeout=self.ready_timeout)
        except ToolError as exc:
            raise ToolError(
                f"applied, but the endpoints were not ready within {self.ready_timeout:g}s: {exc.message}",
                hint=f"kubectl --context {self.kube_context} -n {namespace} get {resource} shows why",
                stdout=exc.stdout,
                stderr=exc.stderr,
                returncode=exc.returncode,
            ) from None
        return LayerOutcome("kubernetes", "kubectl", "applied", {"has_changes": True}, stack_hash=digest, ready=True)

    # -- destroy ---------------------------------------------------------------

    def destroy(self, layer: str | None = None) -> KubeResult:
        start = time.monotonic()
        chosen = tuple(reversed(self.select(layer)))
        for name in chosen:
            self._preflight(name)
        dirs, hashes = self._render()
        record = read_record(self.project, self.env_name)
        outcomes: list[LayerOutcome] = []
        path: Path | None = None
        for name in chosen:
            t0 = time.monotonic()
            if name in TERRAFORM_LAYERS:
                outcome = self._destroy_terraform(name, dirs[name], hashes[name])
            else:
                self.say(f"kubernetes: kubectl delete -k (context {self.kube_context})")
                self._kubectl().delete(dirs[name])
                outcome = LayerOutcome(name, "kubectl", "destroyed", stack_hash=hashes[name])
            outcomes.append(_with_seconds(outcome, time.monotonic() - t0))
            if name in record["layers"]:
                del record["layers"][name]
                path = write_record(self.project, self.env_name, record)
        changed = any(o.action == "destroyed" for o in outcomes)
        return KubeResult(
            self.env_name,
            "destroy",
            outcomes,
            changed,
            self.manifest_hash(),
            str(path) if path else None,
            time.monotonic() - start,
        )

    def _destroy_terraform(self, layer: str, folder: Path, digest: str) -> LayerOutcome:
        if not _has_state(folder, self.env_name):
            self.say(f"{layer}: nothing deployed")
            return LayerOutcome(layer, "terraform", "absent", stack_hash=digest)
        self.say(f"{layer}: terraform init")
        tf = self._terraform(layer, folder)
        tf.init()
        resources = tf.state_resources()
        if not resources:
            self.say(f"{layer}: nothing deployed")
            return LayerOutcome(layer, "terraform", "absent", stack_hash=digest)
        self.say(f"{layer}: terraform destroy ({len(resources)} resources in state)")
        done = tf.destroy()
        return LayerOutcome(layer, "terraform", "destroyed", destroyed=done.destroyed, stack_hash=digest)

    # -- status ----------------------------------------------------------------

    def status(self, *, probe_cluster: bool = True) -> KubeStatus:
        """What each layer last applied, its drift from the manifest, and (when the cluster
        answers) every endpoint's readiness and weights."""
        record = read_record(self.project, self.env_name)
        manifest_hash = self.manifest_hash()
        problems: list[str] = []
        try:
            fresh = self.fresh_hashes()
        except Exception as exc:  # a broken template must not hide what is deployed
            fresh = {}
            problems.append(f"cannot render the manifest to compare: {exc}")
        layers = []
        for name in self.layers:
            entry = record["layers"].get(name)
            if entry is None:
                layers.append(LayerStatus(name, False, None, ["not deployed"], {}))
                continue
            drift = []
            if entry.get("manifest_hash") != manifest_hash:
                drift.append("mlserve.toml changed since the last deploy")
            if fresh and entry.get("stack_hash") != fresh.get(name):
                drift.append("the rendered stack differs from what was applied")
            layers.append(LayerStatus(name, True, entry.get("applied_at"), drift, dict(entry.get("outputs") or {})))
        endpoints: list[dict[str, Any]] = []
        reachable: bool | None = None
        if probe_cluster and record["layers"].get("kubernetes"):
            try:
                endpoints = self._endpoint_status()
                reachable = True
            except ToolError as exc:
                reachable = False
                problems.append(f"cluster not reachable: {exc.message.splitlines()[0]}")
        return KubeStatus(self.env_name, bool(record["layers"]), layers, endpoints, reachable, problems)

    def _endpoint_status(self) -> list[dict[str, Any]]:
        namespace = self.env.namespace or "default"
        resource, _ = READINESS[self.env.serving or "kserve"]
        data = Kubectl(self.kube_context, timeout=20).get_json(resource, namespace=namespace)
        return [endpoint_row(item, self.env.serving or "kserve") for item in data.get("items", [])]


def endpoint_row(item: Mapping[str, Any], serving: str) -> dict[str, Any]:
    """Readiness and traffic weights of one InferenceService or SeldonDeployment (pure)."""
    meta = item.get("metadata", {})
    status = item.get("status", {}) or {}
    spec = item.get("spec", {}) or {}
    weights: dict[str, int] = {}
    if serving == "seldon":
        ready = status.get("state") == "Available"
        for p in spec.get("predictors", []) or []:
            if not p.get("shadow"):
                weights[str(p.get("name"))] = int(p.get("traffic", 0))
    else:
        conds = {c.get("type"): c.get("status") for c in status.get("conditions", []) or []}
        ready = conds.get("Ready") == "True"
        for t in (status.get("components", {}).get("predictor", {}) or {}).get("traffic", []) or []:
            label = t.get("tag") or t.get("revisionName") or "latest"
            weights[str(label)] = int(t.get("percent", 0))
    return {"name": meta.get("name"), "ready": ready, "weights": weights}


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def _with_seconds(outcome: LayerOutcome, seconds: float) -> LayerOutcome:
    return replace(outcome, seconds=round(seconds, 2))


def _small_outputs(outputs: Mapping[str, Any], limit: int = 512) -> dict[str, Any]:
    """Outputs worth recording: long blobs (certificates) are summarised, not copied."""
    out: dict[str, Any] = {}
    for name, value in outputs.items():
        text = json.dumps(value)
        out[name] = value if len(text) <= limit else f"({len(text)} characters)"
    return out


def _state_file(folder: Path, workspace: str) -> Path:
    if workspace == "default":
        return folder / "terraform.tfstate"
    return folder / "terraform.tfstate.d" / workspace / "terraform.tfstate"


def _has_state(folder: Path, workspace: str) -> bool:
    """Local state with resources, or a configured remote backend (which we cannot see offline)."""
    path = _state_file(folder, workspace)
    if path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            return True
        return bool(data.get("resources"))
    return (folder / ".terraform" / "terraform.tfstate").is_file()  # remote backend configured


_TF_WORK = (".terraform", ".terraform.lock.hcl", tfmod.CLI_CONFIG_NAME, tfmod.PLAN_FILE, "terraform.tfstate.d")


class _clean_if_new:
    """On failure in a folder that held no state before, remove Terraform's working files.

    A first deploy that fails at init or plan (a provider missing from the mirror, bad
    credentials) then leaves nothing behind that a later run could mistake for state.
    """

    def __init__(self, folder: Path, workspace: str) -> None:
        self.folder = folder
        self.workspace = workspace
        self.existed = {n for n in _TF_WORK if (folder / n).exists()}
        self.had_state = _has_state(folder, workspace)

    def __enter__(self) -> _clean_if_new:
        return self

    def __exit__(self, exc_type: object, _exc: object, _tb: object) -> None:
        if exc_type is None or self.had_state:
            return
        for name in _TF_WORK:
            if name in self.existed:
                continue
            path = self.folder / name
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            elif path.exists():
                path.unlink()


# ---------------------------------------------------------------------------
# Traffic and metrics for rollouts
# ---------------------------------------------------------------------------


class KubernetesRouter(control_arms.ControlArms):
    """A plan is a re-render of the environment with the new traffic state (only the kubernetes
    layer's ``traffic.yaml`` changes) and one ``kubectl apply --server-side`` of that layer.

    Every endpoint of the environment is rendered at once, so the router remembers the last
    plan it applied to each (``.mlserve/rollout-traffic/ENV.json``) and keeps the others' live
    traffic when it moves one. A rollout's control arm comes and goes with the plans that name
    it (:class:`~mlserve.targets.control_arms.ControlArms`, shared with the Gateway API router)."""

    def __init__(self, project: Project, env_name: str, *, render_root: Path | None = None) -> None:
        self.project = project
        self.env_name = env_name
        self.render_root = render_root or project.state_dir / "rollout-render"
        self.memory = project.state_dir / "rollout-traffic" / f"{env_name}.json"
        self.last_applied: Path | None = None

    def plans(self) -> dict[str, Plan]:
        from mlserve.fsutil import read_json

        data = read_json(self.memory) or {}
        return {str(ep): Plan.from_dict(p) for ep, p in data.items()}

    def apply(self, endpoint: str, plan: Plan) -> None:
        from mlserve import fsutil
        from mlserve.render import EndpointTraffic

        plans = {**self.plans(), endpoint: plan}
        traffic = {ep: to_render(p, EndpointTraffic) for ep, p in plans.items()}
        target = KubernetesTarget(self.project, self.env_name, traffic=traffic, work_root=self.render_root)
        try:
            self.last_applied = target.apply_traffic()
        except ToolError as exc:
            from mlserve.targets.kube_conflict import conflict_or_error

            raise conflict_or_error(exc, f"the traffic of {endpoint} (kubectl apply -k)", target.kube_context) from None
        fsutil.atomic_write_json(self.memory, {ep: p.to_dict() for ep, p in plans.items()})

    def current(self, endpoint: str) -> Plan | None:
        return self.plans().get(endpoint)

    def describe(self) -> str:
        context = control_arms.kube_context(self.project, self.env_name)
        return f"kubernetes environment {self.env_name!r} (kubectl context {context})"


class KubernetesMetrics:
    """Looks from the cluster's Prometheus (``prometheus_url``, or ``MLSERVE_PROMETHEUS_URL``
    for a port-forward): each arm's own series, selected by the workload that runs it (read
    from the live objects, :mod:`mlserve.targets.kube_arms`): Istio's sidecar series for
    KServe, the Seldon executor's for Seldon. Mirrored requests carry the candidate's own
    workload labels, so a shadow look is an ordinary look; agreement is counted where the
    stack renders the shadow comparator (:mod:`mlserve.targets.kube_shadow`).

    Settle time after a weight change: the router's convergence (``router_convergence``) plus
    one scrape interval of the cluster's Prometheus (``scrape_interval``) plus half a second."""

    def __init__(
        self,
        project: Project,
        env_name: str,
        query: QueryFn | None = None,
        *,
        router: Any = None,
        kubectl: Kubectl | None = None,
    ) -> None:
        env = project.manifest.environments[env_name]
        self.project = project
        self.env_name = env_name
        self.env = env
        self.namespace = env.namespace or ""
        source = "seldon" if env.serving == "seldon" else "istio"
        # agreement is counted where the stack renders the shadow comparator (an endpoint with a
        # shadow step, its arms with a payload logger); LLM versions (runtime = "vllm") report their token
        # streams in vLLM's own series
        from mlserve.render.kubernetes import compares_answers

        serving = env.serving or "kserve"
        compares = any(compares_answers(ep, serving) for ep in project.manifest.endpoints_in(env_name).values())
        self.capabilities = Capabilities(
            shadow_agreement=compares, background_load=False, query_set=source, llm_query_set="vllm"
        )
        self._query = query
        self.router = router
        self._kubectl = kubectl
        self._arms: dict[tuple[str, float, tuple[str, ...]], dict[str, dict[str, str]]] = {}

    def query(self) -> QueryFn:
        if self._query is None:
            from mlserve.metrics import prometheus_query

            url = os.environ.get("MLSERVE_PROMETHEUS_URL") or self.env.prometheus_url
            if not url:
                raise TargetError(
                    f"environment {self.env_name!r} has no prometheus_url",
                    hint="set prometheus_url in mlserve.toml, or MLSERVE_PROMETHEUS_URL (e.g. a port-forward)",
                )
            self._query = prometheus_query(url, timeout=10.0)
        return self._query

    def kubectl(self) -> Kubectl:
        if self._kubectl is None:
            self._kubectl = Kubectl(control_arms.kube_context(self.project, self.env_name), timeout=30)
        return self._kubectl

    def arms(self, request: LookRequest) -> dict[str, dict[str, str]]:
        """Each arm's workload, resolved once per step (its objects do not change within one)."""
        from mlserve.targets import kube_arms

        key = (request.endpoint, request.started_at, tuple(request.variants))
        if key not in self._arms:
            plan = self.router.current(request.endpoint) if self.router is not None else None
            wanted = kube_arms.wanted_arms(request.variants, plan.arms if plan is not None else None)
            from mlserve.render.kubernetes import inference_pools, llm_service

            serving = self.env.serving or "kserve"
            ep = self.project.manifest.endpoints[request.endpoint]
            self._arms[key] = kube_arms.resolve(
                self.kubectl(), serving=serving, router=self.env.router_kind, namespace=self.namespace,
                endpoint=request.endpoint, wanted=wanted, llm=llm_service(ep, serving),
                pools=inference_pools(ep, self.env),
            )  # fmt: skip
        return self._arms[key]

    def look(self, request: LookRequest, previous: Mapping[str, Any] | None) -> Collected:
        from mlserve.metrics import collect_look

        arms = self.arms(request)
        shadow = request.shadow
        caps = self.capabilities
        llm = caps.llm_query_set if request.token_streams else None
        request = replace(
            request, source=caps.query_set, namespace=self.namespace, shadow=False, arms=arms, llm_source=llm
        )
        seen = collect_look(self.query(), request, previous)
        if not shadow or not request.agreement:
            return seen  # no agreement asked for: shadow_agreement = 0 switches the gate off
        from mlserve.targets.kube_shadow import agreement

        counts, queries = agreement(self.query(), self.project.manifest, self.env_name, request, arms)
        return replace(seen, agreement=counts, queries=(*seen.queries, *queries))

    def settle_seconds(self) -> float:
        return self.env.convergence_seconds() + self.env.scrape_seconds() + 0.5
