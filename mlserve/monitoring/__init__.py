"""Monitoring between rollouts: reference profiles, drift summaries, SLO alert rules,
dashboards and the live monitor view.

What runs where: the local gateway keeps sliding-window drift summaries
(:mod:`mlserve.monitoring.summaries`, with the reference profiles of :mod:`mlserve.monitoring.profile`); the statistics are pure functions in
:mod:`mlserve.stats.drift`; on Kubernetes the same summaries are computed by
:mod:`mlserve.monitoring.collector` from the serving platform's payload logger. Rules and
dashboards are rendered from the manifest here, for the local Prometheus and for the
cluster's kube-prometheus-stack alike.

The package sits below the local runtime, the renderer and the CLI, which use it: it never
imports ``mlserve.local`` or ``mlserve.targets`` (``tests/test_architecture.py``).
"""
