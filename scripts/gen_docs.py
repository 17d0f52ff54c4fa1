"""``make docs``: write every generated page, the only way they change.

- docs/cli.md from the CLI's command tree (also `python scripts/gen_cli_reference.py` alone),
- docs/manifest.md from the manifest's reference,
- docs/reliability.json and docs/reliability.md from what the reliability tests last
  measured (build/reliability-records.json; run them first to refresh their rows).

The tests check that each page is current; none of them writes a tracked file.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    from mlserve.cli.main import app
    from mlserve.cli.reference import cli_reference_markdown
    from mlserve.manifest.reference import reference_markdown
    from tests.reliability.report import DOC_PATH, update_docs

    (ROOT / "docs" / "cli.md").write_text(cli_reference_markdown(app), encoding="utf-8")
    (ROOT / "docs" / "manifest.md").write_text(reference_markdown(), encoding="utf-8")
    measured = update_docs()
    print(f"wrote docs/cli.md, docs/manifest.md, {DOC_PATH.relative_to(ROOT)} ({measured} measured records merged)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
