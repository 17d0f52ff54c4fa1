"""Rollouts: move a candidate into production on evidence.

``record`` (the typed run, state.json), ``plans`` (the steps a strategy walks), ``machine``
(the state machine), ``service`` (what the CLI calls), ``load`` (``rollout run --load``),
``store`` (the run directory, its lock and events), ``manifest_edit`` (a promotion written
back into mlserve.toml). See docs/architecture.md and docs/rollouts.md.
"""
