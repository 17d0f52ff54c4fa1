"""The one Terraform wrapper: python-terraform 0.10.1 underneath, fixed for Terraform 1.x.

python-terraform predates Terraform 1.x. What this module changes, and why:

- ``destroy()`` passes ``-force``, which 1.x removed: we pass ``-auto-approve`` instead.
- ``apply()`` asks for approval unless ``skip_plan=True``: we always apply a saved plan
  file (or destroy) with ``-auto-approve``.
- ``output(name)`` chokes on 1.x's bare values: we run ``output -json`` and parse it.
- a positional directory is read as a plan file by 1.x: the directory is only ever the
  working directory (the child's cwd); the only positional argument is a plan file.
- its ``cmd()`` waits for the whole output, copies ``os.environ`` (no way to add
  ``TF_CLI_CONFIG_FILE``), logs unscrubbed output and emits ``-synchronous=false``
  when asked not to wait. We keep its command-line generation (``generate_cmd_string``:
  flags, ``-var`` maps written to a temporary ``.tfvars.json``, ``-backend-config``) and
  replace only the process runner, which streams lines to a callback, merges the
  environment, scrubs secrets and enforces a timeout.

Every command runs with ``-input=false`` and ``-no-color``; plan, apply, destroy and
init run with ``-json`` so that errors come back as Terraform's own diagnostics.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from python_terraform import IsFlagged, IsNotFlagged
from python_terraform import Terraform as _PyTerraform

from mlserve.errors import ToolError
from mlserve.tools import merged_env, scrub, secret_values, which

PLUGIN_DIR_ENV = "MLSERVE_TF_PLUGIN_DIR"
CLI_CONFIG_NAME = ".mlserve.tfrc"
PLAN_FILE = "mlserve.tfplan"

LineCallback = Callable[[str], None]
_MISSING_PROVIDER = re.compile(r"provider registry\.terraform\.io/([\w.-]+/[\w.-]+) was not found")

# Terraform's plan action lists -> one word.
_ACTIONS: dict[tuple[str, ...], str] = {
    ("create",): "add",
    ("update",): "change",
    ("delete",): "destroy",
    ("delete", "create"): "replace",
    ("create", "delete"): "replace",
    ("read",): "read",
    ("no-op",): "no-op",
    ("forget",): "forget",
}


# ---------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ResourceChange:
    address: str
    type: str
    action: str  # add | change | destroy | replace | read | no-op | forget
    replace_paths: tuple[str, ...] = ()  # attributes that force a replacement


@dataclass(frozen=True)
class PlanSummary:
    """What a saved plan would do, from ``terraform show -json PLANFILE``."""

    changes: tuple[ResourceChange, ...]
    output_changes: tuple[str, ...] = ()
    plan_file: str | None = None
    # Output values in the state the plan started from (sensitive ones hidden): what
    # `terraform output` would print now, without running it again.
    prior_outputs: dict[str, Any] = field(default_factory=dict)

    @property
    def actionable(self) -> tuple[ResourceChange, ...]:
        return tuple(c for c in self.changes if c.action in ("add", "change", "destroy", "replace"))

    @property
    def has_changes(self) -> bool:
        return bool(self.actionable or self.output_changes)

    def count(self, action: str) -> int:
        return sum(1 for c in self.changes if c.action == action)

    @property
    def by_type(self) -> dict[str, dict[str, int]]:
        """add / change / destroy / replace counts per resource type."""
        out: dict[str, dict[str, int]] = {}
        for c in self.actionable:
            row = out.setdefault(c.type, {"add": 0, "change": 0, "destroy": 0, "replace": 0})
            row[c.action] += 1
        return dict(sorted(out.items()))

    def to_dict(self) -> dict[str, Any]:
        return {
            "has_changes": self.has_changes,
            "add": self.count("add"),
            "change": self.count("change"),
            "destroy": self.count("destroy"),
            "replace": self.count("replace"),
            "by_type": self.by_type,
            "resources": [
                {"address": c.address, "type": c.type, "action": c.action, "replace_paths": list(c.replace_paths)}
                for c in self.actionable
            ],
            "output_changes": list(self.output_changes),
        }

    def describe(self) -> str:
        if not self.has_changes:
            return "no changes"
        parts = [f"{self.count(a)} to {a}" for a in ("add", "change", "replace", "destroy") if self.count(a)]
        if self.output_changes and not self.actionable:
            parts.append(f"{len(self.output_changes)} output(s) to update")
        return ", ".join(parts)


def summarize_plan(plan_json: Mapping[str, Any], plan_file: str | None = None) -> PlanSummary:
    """Pure: the ``terraform show -json`` document of a plan -> counts per action and type."""
    changes: list[ResourceChange] = []
    for rc in plan_json.get("resource_changes") or []:
        actions = tuple(rc.get("change", {}).get("actions") or ())
        action = _ACTIONS.get(actions, "+".join(actions) or "no-op")
        paths = tuple(".".join(str(p) for p in path) for path in (rc.get("change", {}).get("replace_paths") or []))
        changes.append(ResourceChange(str(rc.get("address", "")), str(rc.get("type", "")), action, paths))
    outputs = tuple(
        sorted(
            name
            for name, oc in (plan_json.get("output_changes") or {}).items()
            if tuple(oc.get("actions") or ()) not in (("no-op",), ())
        )
    )
    prior = ((plan_json.get("prior_state") or {}).get("values") or {}).get("outputs") or {}
    return PlanSummary(tuple(changes), outputs, plan_file, _output_values(prior))


def _output_values(doc: Mapping[str, Any]) -> dict[str, Any]:
    """``{name: {value, sensitive, ...}}`` -> ``{name: value}``, sensitive values hidden."""
    return {
        name: ("(sensitive)" if item.get("sensitive") else item.get("value"))
        for name, item in sorted(doc.items())
        if isinstance(item, dict)
    }


@dataclass(frozen=True)
class ApplyResult:
    added: int
    changed: int
    destroyed: int
    outputs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _Run:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    diagnostics: tuple[str, ...]  # error diagnostics from -json output
    events: tuple[dict[str, Any], ...]  # parsed -json lines


# ---------------------------------------------------------------------------
# Configuration helpers
# ---------------------------------------------------------------------------


def plugin_dir_from_env(explicit: str | Path | None = None) -> Path | None:
    """``--plugin-dir`` wins, then ``MLSERVE_TF_PLUGIN_DIR``; None means Terraform's own config."""
    value = str(explicit) if explicit else os.environ.get(PLUGIN_DIR_ENV, "")
    if not value:
        return None
    path = Path(value).expanduser().resolve()
    if not path.is_dir():
        source = "--plugin-dir" if explicit else PLUGIN_DIR_ENV
        raise ToolError(
            f"{source}={value} is not a directory",
            hint="point it at a provider mirror (the layout registry.terraform.io/NAMESPACE/TYPE/VERSION/OS_ARCH/)",
        )
    return path


def cli_config_text(plugin_dir: Path, cache_dir: Path | None = None) -> str:
    """A CLI config that installs providers only from the local mirror.

    No ``direct {}`` block: a provider missing from the mirror fails at once with
    Terraform's "not found in any of the search locations" instead of a network hang.
    """
    lines = []
    if cache_dir is not None:
        lines.append(f"plugin_cache_dir = {json.dumps(str(cache_dir))}")
    lines += [
        "provider_installation {",
        "  filesystem_mirror {",
        f"    path = {json.dumps(str(plugin_dir))}",
        "  }",
        "}",
        "",
    ]
    return "\n".join(lines)


def check_aws_endpoint(env: Mapping[str, str] | None = None, timeout: float = 2.0) -> None:
    """Fail fast when ``AWS_ENDPOINT_URL`` points at nothing (a stopped moto or LocalStack).

    Without this the AWS provider retries the connection for about half a minute.
    """
    env = os.environ if env is None else env
    url = env.get("AWS_ENDPOINT_URL", "")
    if not url:
        return
    parsed = urlparse(url)
    host = parsed.hostname or ""
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return
    except OSError as exc:
        raise ToolError(
            f"the AWS endpoint {url} (AWS_ENDPOINT_URL) is not reachable: {exc.strerror or exc}",
            hint="start the endpoint (e.g. moto_server) or unset AWS_ENDPOINT_URL to use AWS itself",
        ) from None


# ---------------------------------------------------------------------------
# The engine: python-terraform with our process runner
# ---------------------------------------------------------------------------


class _Engine(_PyTerraform):
    """python-terraform's argv generation with a streaming, scrubbing runner."""

    def __init__(self, working_dir: Path, binary: str, runner: Callable[[list[str]], _Run]) -> None:
        super().__init__(working_dir=str(working_dir), terraform_bin_path=binary)
        self._runner = runner
        self.last: _Run | None = None

    def cmd(self, cmd: str, *args: Any, **kwargs: Any) -> tuple[int, str, str]:
        for key in ("capture_output", "raise_on_error", "synchronous"):
            kwargs.pop(key, None)
        argv = self.generate_cmd_string(cmd, *args, **kwargs)
        try:
            self.last = self._runner([str(a) for a in argv])
        finally:
            self.temp_var_files.clean_up()
        return self.last.returncode, self.last.stdout, self.last.stderr


class Terraform:
    """One root module (a layer) in one working directory and one workspace."""

    def __init__(
        self,
        working_dir: Path,
        *,
        workspace: str | None = None,
        plugin_dir: str | Path | None = None,
        backend_config: Mapping[str, str] | None = None,
        env: Mapping[str, str] | None = None,
        on_line: LineCallback | None = None,
        timeout: float | None = 3600.0,
        binary: str | None = None,
    ) -> None:
        self.working_dir = Path(working_dir).resolve()
        self.workspace = workspace
        self.plugin_dir = plugin_dir_from_env(plugin_dir)
        self.backend_config = dict(backend_config or {})
        self.on_line = on_line
        self.timeout = timeout
        self.binary = binary or which("terraform")
        extra = {"TF_IN_AUTOMATION": "1", "TF_INPUT": "0", "CHECKPOINT_DISABLE": "1"}
        extra.update(env or {})
        if self.plugin_dir is not None:
            cfg = self.working_dir / CLI_CONFIG_NAME
            if not self.working_dir.is_dir():
                raise ToolError(f"terraform working directory {self.working_dir} does not exist")
            cfg.write_text(cli_config_text(self.plugin_dir), encoding="utf-8")
            extra["TF_CLI_CONFIG_FILE"] = str(cfg)
        self.env = merged_env(extra)
        self._secrets = secret_values(self.env, self.backend_config.values())
        self._engine = _Engine(self.working_dir, self.binary, self._run)

    # -- process -------------------------------------------------------------

    def _run(self, argv: list[str]) -> _Run:
        if not self.working_dir.is_dir():
            raise ToolError(f"terraform working directory {self.working_dir} does not exist")
        try:
            proc = subprocess.Popen(
                argv,
                cwd=self.working_dir,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                errors="replace",
                start_new_session=True,
            )
        except OSError as exc:
            raise ToolError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
        err_lines: list[str] = []
        reader = threading.Thread(target=_drain, args=(proc.stderr, err_lines), daemon=True)
        reader.start()
        timer: threading.Timer | None = None
        timed_out = threading.Event()
        if self.timeout:

            def _kill() -> None:
                timed_out.set()
                _kill_group(proc)

            timer = threading.Timer(self.timeout, _kill)
            timer.daemon = True
            timer.start()
        out_lines: list[str] = []
        events: list[dict[str, Any]] = []
        diagnostics: list[str] = []
        try:
            assert proc.stdout is not None
            for raw in proc.stdout:
                line = scrub(raw.rstrip("\n"), self._secrets)
                out_lines.append(line)
                shown = line
                event = _parse_event(line)
                if event is not None:
                    events.append(event)
                    shown = str(event.get("@message", line))
                    diag = _diagnostic(event)
                    if diag:
                        diagnostics.append(diag)
                if self.on_line is not None and shown.strip():
                    for part in shown.splitlines() or [""]:
                        self.on_line(part)
            proc.wait()
        except BaseException:
            _kill_group(proc)
            raise
        finally:
            if timer is not None:
                timer.cancel()
            reader.join(timeout=5)
        stderr = scrub("".join(err_lines), self._secrets)
        shown_argv = [scrub(a, self._secrets) for a in argv]
        if timed_out.is_set():
            raise ToolError(
                f"terraform did not finish within {self.timeout:g}s: {' '.join(shown_argv[1:])}",
                stdout="\n".join(out_lines),
                stderr=stderr,
            )
        if self.on_line is not None:
            for line in stderr.splitlines():
                if line.strip():
                    self.on_line(line)
        return _Run(shown_argv, proc.returncode, "\n".join(out_lines), stderr, tuple(diagnostics), tuple(events))

    def _check(self, what: str, rc: int, ok: Sequence[int] = (0,)) -> _Run:
        run = self._engine.last
        assert run is not None
        if rc in ok:
            return run
        raise self._error(what, run)

    def _error(self, what: str, run: _Run) -> ToolError:
        if run.diagnostics:
            detail = "\n".join(run.diagnostics)
        else:
            tail = (run.stderr.strip() or run.stdout.strip()).splitlines()[-15:]
            detail = "\n".join(tail) or f"exit status {run.returncode}"
        headline = f"terraform {what} failed in {self.working_dir}"
        hint = None
        missing = sorted(set(_MISSING_PROVIDER.findall(detail)))
        if missing:
            where = f"the provider mirror {self.plugin_dir}" if self.plugin_dir else "any configured source"
            headline = f"cannot install provider {', '.join(missing)} from {where}; " + headline
            hint = (
                "this layer needs providers that cannot be installed here: add them to the mirror "
                "(`terraform providers mirror DIR` on a connected machine) or run without --plugin-dir"
            )
        return ToolError(
            f"{headline}:\n{detail}",
            hint=hint,
            stdout=run.stdout,
            stderr=run.stderr,
            returncode=run.returncode,
        )

    # -- commands ------------------------------------------------------------

    def init(self) -> None:
        """``init`` (backend config, provider mirror), then select or create the workspace."""
        rc, _, _ = self._engine.init(
            backend_config=self.backend_config or None,
            reconfigure=IsFlagged,
            backend=True,
            json=IsFlagged,
            input=False,
            no_color=IsFlagged,
            var=None,
        )
        self._check("init", rc)
        if self.workspace:
            self.select_workspace(self.workspace)

    def select_workspace(self, name: str) -> None:
        rc, _, _ = self._engine.cmd("workspace select", name, or_create=IsFlagged, no_color=IsFlagged)
        self._check(f"workspace select {name}", rc)

    def plan(
        self,
        *,
        variables: Mapping[str, Any] | None = None,
        destroy: bool = False,
        plan_file: str = PLAN_FILE,
    ) -> PlanSummary:
        """Save a plan in the working directory and summarise it."""
        rc, _, _ = self._engine.plan(
            detailed_exitcode=IsFlagged,
            out=plan_file,
            json=IsFlagged,
            input=False,
            no_color=IsFlagged,
            var=dict(variables) if variables else None,
            destroy=IsFlagged if destroy else IsNotFlagged,
        )
        self._check("plan", rc, ok=(0, 2))
        if rc == 0:
            # -detailed-exitcode 0: an empty diff (output changes would give 2). Skip
            # `show -json`, which loads every provider's schema; the state's outputs are
            # all a caller needs then.
            return PlanSummary((), (), plan_file, self.outputs())
        return self.show_plan(plan_file)

    def show_plan(self, plan_file: str = PLAN_FILE) -> PlanSummary:
        rc, out, _ = self._engine.cmd("show", plan_file, json=IsFlagged, no_color=IsFlagged)
        run = self._check("show", rc)
        try:
            doc = json.loads(out)
        except ValueError:
            raise self._error("show -json (unreadable output)", run) from None
        return summarize_plan(doc, plan_file)

    def apply(self, plan_file: str = PLAN_FILE) -> ApplyResult:
        """Apply a saved plan (``-auto-approve``; variables were fixed at plan time)."""
        rc, _, _ = self._engine.apply(
            plan_file,
            skip_plan=True,
            json=IsFlagged,
            input=False,
            no_color=IsFlagged,
            var=None,
        )
        run = self._check("apply", rc)
        self._remove(plan_file)
        added, changed, destroyed = _applied_counts(run.events)
        streamed = [e for e in run.events if e.get("type") == "outputs"]
        outputs = _output_values(streamed[-1].get("outputs") or {}) if streamed else self.outputs()
        return ApplyResult(added, changed, destroyed, outputs)

    def destroy(self, *, variables: Mapping[str, Any] | None = None) -> ApplyResult:
        """``destroy -auto-approve`` (python-terraform's ``-force`` is gone in 1.x)."""
        rc, _, _ = self._engine.destroy(
            force=IsNotFlagged,
            auto_approve=IsFlagged,
            json=IsFlagged,
            input=False,
            no_color=IsFlagged,
            var=dict(variables) if variables else None,
        )
        run = self._check("destroy", rc)
        added, changed, destroyed = _applied_counts(run.events)
        return ApplyResult(added, changed, destroyed, {})

    def outputs(self) -> dict[str, Any]:
        """``output -json`` parsed here: name -> value, sensitive values hidden."""
        rc, out, _ = self._engine.output_cmd(json=IsFlagged, no_color=IsFlagged)
        run = self._check("output", rc)
        try:
            doc = json.loads(out or "{}")
        except ValueError:
            raise self._error("output -json (unreadable output)", run) from None
        return _output_values(doc)

    def state_resources(self) -> list[str]:
        """Addresses in the current workspace's state (empty when there is none)."""
        rc, out, _ = self._engine.cmd("state list", no_color=IsFlagged)
        if rc != 0:
            return []
        return [line for line in out.splitlines() if line.strip()]

    def _remove(self, plan_file: str) -> None:
        (self.working_dir / plan_file).unlink(missing_ok=True)


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def _drain(stream: Any, sink: list[str]) -> None:
    for line in stream:
        sink.append(line)


def _kill_group(proc: subprocess.Popen[str], grace: float = 120.0) -> None:
    """Stop Terraform and its provider plugins (one process group).

    SIGINT first: Terraform then finishes the calls in flight and writes its state,
    which a SIGKILL mid-apply would lose. Only after ``grace`` seconds, SIGKILL.
    """
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGINT)
        deadline = time.monotonic() + grace
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _parse_event(line: str) -> dict[str, Any] | None:
    if not line.startswith("{"):
        return None
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) and "@message" in event else None


def _diagnostic(event: Mapping[str, Any]) -> str | None:
    diag = event.get("diagnostic")
    if not isinstance(diag, dict) or diag.get("severity") != "error":
        return None
    text = f"Error: {diag.get('summary', '').strip()}"
    if diag.get("address"):
        text += f" ({diag['address']})"
    detail = str(diag.get("detail", "")).strip()
    if detail:
        text += f"\n{detail}"
    rng = diag.get("range")
    if isinstance(rng, dict) and rng.get("filename"):
        text += f"\n  at {rng['filename']}:{rng.get('start', {}).get('line', '?')}"
    return text


def _applied_counts(events: Sequence[Mapping[str, Any]]) -> tuple[int, int, int]:
    for event in reversed(events):
        if event.get("type") == "change_summary":
            ch = event.get("changes", {})
            return int(ch.get("add", 0)), int(ch.get("change", 0)), int(ch.get("remove", 0))
    return 0, 0, 0


def tail(lines: Sequence[str] | deque[str], n: int = 20) -> list[str]:
    return list(lines)[-n:]
