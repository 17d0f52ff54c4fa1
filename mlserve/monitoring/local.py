"""What deploy needs from the monitoring settings on the local target: each endpoint's
gateway ``monitoring`` block (with its profile checked now, so a bad reference fails the
deploy with the manifest key, not the gateway later) and the rules file the local
Prometheus loads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlserve.errors import ManifestError

RULES_FILE = "rules.yml"


def gateway_monitoring(root: Path, name: str, ep: Any) -> Any:
    """The gateway's MonitorConfig for an endpoint, or None when it does not opt in."""
    from mlserve.monitoring.profile import ProfileError, load_profile
    from mlserve.monitoring.summaries import MonitorConfig

    mon = ep.monitoring
    if mon is None:
        return None
    profile: Path | None = None
    if mon.reference != "baseline":
        profile = (root / mon.reference).resolve()
        try:
            prof = load_profile(profile)
        except ProfileError as exc:
            raise ManifestError(
                [f"mlserve.toml: endpoints.{name}.monitoring.reference: {exc.message}"],
                hint=exc.hint or 'write it with `mlserve profile DATA -o PATH`, or set reference = "baseline"',
            ) from None
        width = ep.input.shape[-1] if ep.input.shape else None
        if width is not None and len(prof.features) != width:
            raise ManifestError(
                [
                    f"mlserve.toml: endpoints.{name}.monitoring.reference: {mon.reference} profiles "
                    f"{len(prof.features)} features, but endpoints.{name}.input.shape ends in {width}"
                ]
            )
    slots = int(max(1, min(30, mon.window // 2)))  # sub-windows of at least 2 s
    return MonitorConfig(
        profile=profile,
        window=float(mon.window),
        slots=slots,
        min_samples=mon.min_samples,
        reference_size=mon.reference_size,
        positive_threshold=mon.positive_threshold,
        output=mon.output,
        bins=mon.bins,
    )


def local_rules(manifest: Any, env_name: str) -> str | None:
    """The rules file text for the local Prometheus, or None when no endpoint has an SLO or monitoring."""
    from mlserve.monitoring.rules import manifest_rule_groups, rules_document

    groups = manifest_rule_groups(manifest, env_name, "local")
    return rules_document(groups) if groups else None
