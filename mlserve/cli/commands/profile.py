from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mlserve.cli.output import JsonFlag, get_state


def register(app: typer.Typer) -> None:
    @app.command("profile")
    def profile(
        ctx: typer.Context,
        data: Annotated[
            Path, typer.Argument(help="Reference data: CSV with a header, or JSONL (V2 requests, objects).")
        ],
        output: Annotated[
            Path, typer.Option("--output", "-o", help="Where to write the profile (name it in monitoring.reference).")
        ],
        prediction_column: Annotated[
            str | None,
            typer.Option("--prediction-column", help="Column holding the model's prediction (its reference)."),
        ] = None,
        ignore: Annotated[
            list[str] | None, typer.Option("--ignore", help="Column to leave out (labels, ids); repeatable.")
        ] = None,
        feature_names: Annotated[
            str | None, typer.Option("--feature-names", help="Comma-separated names for the features, in order.")
        ] = None,
        bins: Annotated[int, typer.Option("--bins", help="Bins per numeric feature (quantiles).")] = 10,
        max_rows: Annotated[int, typer.Option("--max-rows", help="Read at most this many rows.")] = 1_000_000,
        json_out: JsonFlag = False,
    ) -> None:
        """Write a reference profile for drift monitoring: per feature, fixed bins and the reference counts.

        Only these summaries are written, never the data.
        """
        state = get_state(ctx, json_out)
        from mlserve.fsutil import atomic_write_json
        from mlserve.monitoring.profile import build_profile

        names = [n.strip() for n in feature_names.split(",")] if feature_names else None
        prof = build_profile(
            data,
            prediction_column=prediction_column,
            ignore=ignore or (),
            feature_names=names,
            bins=bins,
            max_rows=max_rows,
        )
        atomic_write_json(output, prof.to_dict())
        result: dict[str, Any] = {
            "output": str(output),
            "rows": prof.rows,
            "features": [
                {"name": f.name, "bins": f.size, "categorical": f.categorical, "mean": f.mean, "std": f.std}
                for f in prof.features
            ],
            "prediction": None
            if prof.prediction is None
            else {"name": prof.prediction.name, "bins": prof.prediction.size, "mean": prof.prediction.mean},
        }
        state.emit(result, lambda con: _show(con, result))


def _show(con: Console, r: dict[str, Any]) -> None:
    table = Table(title=f"profile of {r['rows']:,} rows -> {escape(r['output'])}", title_justify="left")
    for col in ("feature", "bins", "kind", "mean", "std"):
        table.add_column(col)
    for f in r["features"]:
        kind = "categorical" if f["categorical"] else "numeric"
        table.add_row(escape(f["name"]), str(f["bins"]), kind, f"{f['mean']:.4g}", f"{f['std']:.4g}")
    con.print(table)
    if r["prediction"]:
        p = r["prediction"]
        con.print(f"prediction {escape(p['name'])}: {p['bins']} bins, mean {p['mean']:.4g}")
    else:
        con.print("no prediction reference: drift of predictions is measured against the baseline's own answers")
