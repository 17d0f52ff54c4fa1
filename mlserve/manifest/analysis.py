"""The manifest's rollout policy as the statistics' analysis spec.

``stats`` takes plain frozen dataclasses (:mod:`mlserve.stats.spec`); this is the one
place that turns a validated ``RolloutPolicy`` into one.
"""

from __future__ import annotations

import math
from pathlib import Path

from mlserve.manifest.models import RolloutPolicy
from mlserve.stats.spec import AnalysisSpec, MetricSpec


def analysis_spec(policy: RolloutPolicy) -> AnalysisSpec:
    return AnalysisSpec(
        metrics=tuple(
            MetricSpec(
                name=m.name,
                kind=m.kind,
                margin=m.margin,
                critical=m.critical,
                better=m.better,
                quantile=m.quantile,
            )
            for m in policy.metrics
        ),
        alpha=policy.alpha,
        min_requests=policy.min_requests,
        srm_p_value=policy.srm_p_value,
        max_error_rate=policy.max_error_rate,
        on_inconclusive=policy.on_inconclusive,
        shadow_agreement=policy.shadow_agreement,
        test_unit=policy.test_unit,
        horizon=float(max(1, math.ceil(float(policy.max_duration) / float(policy.interval)))),
    )


class Policies:
    """``--policy FILE``, else the snapshot's endpoint in the project's mlserve.toml, else
    the built-in defaults; each answer says where the policy came from."""

    def __init__(self, project_dir: Path, policy_file: Path | None) -> None:
        from mlserve.manifest.loader import load_manifest, load_policy
        from mlserve.manifest.models import Manifest

        self.fixed: tuple[RolloutPolicy, str] | None = None
        self.manifest: Manifest | None = None
        self.manifest_path = project_dir / "mlserve.toml"
        self.default = (RolloutPolicy(), "built-in defaults")
        if policy_file is not None:
            self.fixed = (load_policy(policy_file), f"--policy {policy_file}")
            return
        if self.manifest_path.is_file():
            self.manifest = load_manifest(self.manifest_path)

    def for_endpoint(self, endpoint: str | None) -> tuple[RolloutPolicy, str]:
        if self.fixed is not None:
            return self.fixed
        if self.manifest is not None and endpoint in self.manifest.endpoints:
            return self.manifest.endpoints[endpoint].rollout, f"{self.manifest_path}: endpoints.{endpoint}.rollout"
        return self.default

    def spec_for(self, endpoint: str | None) -> tuple[AnalysisSpec, str]:
        policy, source = self.for_endpoint(endpoint)
        return analysis_spec(policy), source
