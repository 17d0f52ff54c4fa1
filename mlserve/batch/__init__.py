"""Offline scoring and comparison: ``mlserve batch`` and ``mlserve compare``.

Pure core, no typer or rich: :mod:`formats` (JSONL, CSV, Parquet; scan and chunks),
:mod:`rows` (rows onto the declared input), :mod:`client` (multi-row V2 requests,
retries), :mod:`journal` (resumable state), :mod:`core` (plan, run, assemble, the local
engine), :mod:`ray_engine` (Ray Data), :mod:`rayjob` (KubeRay RayJob),
:mod:`agreement` (offline comparison statistics), :mod:`compare` and :mod:`report`.
"""
