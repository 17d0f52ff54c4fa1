"""mlserve: declarative rollouts of ML inference endpoints, gated by sequential statistics."""

from __future__ import annotations

__version__ = "0.1.0"
