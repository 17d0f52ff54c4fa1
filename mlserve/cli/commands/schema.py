from __future__ import annotations

import sys
from typing import Annotated

import typer

from mlserve.cli.output import get_state, to_json


def register(app: typer.Typer) -> None:
    @app.command("schema")
    def schema(
        ctx: typer.Context,
        fmt: Annotated[
            str, typer.Option("--format", help="json (JSON Schema, for editors) or markdown (the reference).")
        ] = "json",
    ) -> None:
        """Print the manifest's JSON Schema or its Markdown reference."""
        get_state(ctx)
        from mlserve.errors import UsageError
        from mlserve.manifest.reference import json_schema, reference_markdown

        if fmt == "json":
            sys.stdout.write(to_json(json_schema()) + "\n")
        elif fmt == "markdown":
            sys.stdout.write(reference_markdown())
        else:
            raise UsageError(f"--format must be json or markdown (got {fmt!r})")
