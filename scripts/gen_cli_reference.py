"""Write docs/cli.md from the CLI's command tree."""

from __future__ import annotations

from pathlib import Path

from mlserve.cli.main import app
from mlserve.cli.reference import cli_reference_markdown

if __name__ == "__main__":
    out = Path(__file__).resolve().parents[1] / "docs" / "cli.md"
    out.write_text(cli_reference_markdown(app), encoding="utf-8")
    print(f"wrote {out}")
