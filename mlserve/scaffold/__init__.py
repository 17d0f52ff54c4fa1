"""``mlserve init``: a working project with two small trained model versions."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from mlserve.errors import MlserveError, UsageError

EXAMPLE_PROJECT_NAME = "acme-ml"
SEED = 20261123
N_FEATURES = 8
TRAIN_ROWS = 6000
HOLDOUT_ROWS = 2000  # rows neither version saw: `mlserve compare`'s labelled data
HOLDOUT_FILE = "data/fraud-holdout.csv"


@dataclass(frozen=True)
class ScaffoldResult:
    root: Path
    project_name: str
    written: list[str] = field(default_factory=list)
    overwritten: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def project_name_for(directory: Path) -> str:
    name = re.sub(r"[^a-z0-9-]+", "-", directory.resolve().name.lower()).strip("-")[:63].strip("-")
    return name or EXAMPLE_PROJECT_NAME


def _read(name: str) -> str:
    return (resources.files("mlserve.scaffold") / name).read_text(encoding="utf-8")


def manifest_text(project_name: str) -> str:
    text = _read("mlserve.toml")
    return text.replace(f'name = "{EXAMPLE_PROJECT_NAME}"', f'name = "{project_name}"', 1)


def static_files() -> dict[str, str]:
    """Relative path -> content of every text file a new project gets."""
    base = resources.files("mlserve.scaffold") / "files"
    out: dict[str, str] = {}

    def walk(node: object, prefix: str) -> None:
        for child in node.iterdir():  # type: ignore[attr-defined]
            rel = f"{prefix}{child.name}"
            if child.is_dir():
                walk(child, rel + "/")
            else:
                out[rel.replace("dot-", ".", 1) if rel.startswith("dot-") else rel] = child.read_text(encoding="utf-8")

    walk(base, "")
    return out


def training_data(n: int, seed: int) -> tuple[object, object]:
    """A synthetic, imbalanced fraud data set with 8 numeric features."""
    from sklearn.datasets import make_classification

    return make_classification(
        n_samples=n,
        n_features=N_FEATURES,
        n_informative=5,
        n_redundant=1,
        weights=[0.9, 0.1],
        class_sep=1.2,
        random_state=seed,
    )


# version -> (training rows: the first of the draw, inverse regularisation C)
VERSIONS = {"v1": (1500, 0.05), "v2": (TRAIN_ROWS, 1.0)}


def _draw() -> tuple[Any, Any]:
    """The rows the versions are trained on, then the holdout rows, as arrays."""
    import numpy as np

    x, y = training_data(TRAIN_ROWS + HOLDOUT_ROWS, SEED)
    return np.asarray(x), np.asarray(y)


def _fit(version: str, x: Any, y: Any) -> Any:
    """One version's model, deterministic (fixed seed): the same in every ``init`` and wherever
    the scaffold needs its predictions."""
    from sklearn.linear_model import LogisticRegression

    n, c = VERSIONS[version]
    return LogisticRegression(C=c, max_iter=500, random_state=SEED).fit(x[:n], y[:n])


def train_models(models_dir: Path) -> list[str]:
    """v1: strongly regularised, less data. v2: more data, less regularisation.

    Deterministic (fixed seed), so two ``init`` runs give byte-identical predictions.
    """
    import joblib

    x, y = _draw()
    written = []
    for version in VERSIONS:
        model = _fit(version, x, y)
        out = models_dir / "fraud" / version
        out.mkdir(parents=True, exist_ok=True)
        joblib.dump(model, out / "model.joblib")
        written.append(str((out / "model.joblib").relative_to(models_dir.parent)))
    return written


def reference_profile() -> str:
    """``profiles/fraud.json``: the drift reference of the fraud endpoint, from v1's training
    rows and v1's predictions on them (what ``mlserve profile`` writes for such a file)."""
    from mlserve.monitoring.profile import Profile, summarise

    x, y = _draw()
    n = VERSIONS["v1"][0]
    rows = x[:n]
    features = tuple(summarise(f"input-0[{j}]", rows[:, j]) for j in range(N_FEATURES))
    prediction = summarise("predict", _fit("v1", x, y).predict(rows).astype(float))
    profile = Profile(features, prediction, rows=len(rows), source="training data of fraud v1 (mlserve init)")
    return json.dumps(_rounded(profile.to_dict()), indent=1, sort_keys=True) + "\n"


def _rounded(value: object) -> object:
    """Floats to 9 significant digits, so the file does not depend on the last bits of BLAS."""
    if isinstance(value, float):
        return float(f"{value:.9g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def holdout_csv() -> str:
    """Labelled rows from the same draw as the training data but used by neither version."""
    x, y = training_data(TRAIN_ROWS + HOLDOUT_ROWS, SEED)
    header = ["id", *(f"f{i}" for i in range(N_FEATURES)), "label"]
    lines = [",".join(header)]
    for i in range(TRAIN_ROWS, TRAIN_ROWS + HOLDOUT_ROWS):
        feats = ",".join(f"{float(v):.6g}" for v in x[i])  # type: ignore[index]
        lines.append(f"tx-{i - TRAIN_ROWS + 1:05d},{feats},{int(y[i])}")  # type: ignore[index]
    return "\n".join(lines) + "\n"


def sample_payloads(n: int = 256) -> str:
    """V2 inference requests for the fraud endpoint, one per line (load tests).

    Rows of the training draw that v1 was not trained on (and that are not in the holdout
    file), so that traffic from them raises no drift against ``profiles/fraud.json``; a few
    are rows where v1 and v2 answer differently (what a shadow rollout's agreement gate is
    shown with)."""
    import numpy as np

    x, y = _draw()
    held_out = x[VERSIONS["v1"][0] : TRAIN_ROWS]
    v1, v2 = _fit("v1", x, y), _fit("v2", x, y)
    differ = np.flatnonzero(v1.predict(held_out) != v2.predict(held_out))[: max(1, n // 16)]
    picked = {int(i) for i in differ}
    chosen = sorted(picked | set([i for i in range(len(held_out)) if i not in picked][: n - len(picked)]))
    lines = []
    for row in held_out[chosen]:
        req = {
            "inputs": [
                {
                    "name": "input-0",
                    "shape": [1, N_FEATURES],
                    "datatype": "FP32",
                    "data": [round(float(v), 5) for v in row],
                }
            ]
        }
        lines.append(json.dumps(req))
    return "\n".join(lines) + "\n"


def scaffold(directory: Path, *, force: bool = False, train: bool = True) -> ScaffoldResult:
    directory = directory.resolve()
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"{directory}: exists and is not a directory")
    name = project_name_for(directory)
    files = {
        "mlserve.toml": manifest_text(name),
        "payloads/fraud.jsonl": sample_payloads(),
        "payloads/chat.jsonl": chat_prompts(),
        "profiles/fraud.json": reference_profile(),
        HOLDOUT_FILE: holdout_csv(),
    }
    files.update(static_files())
    model_files = ["models/fraud/v1/model.joblib", "models/fraud/v2/model.joblib"] if train else []
    existing = [rel for rel in [*files, *model_files] if (directory / rel).exists()]
    if existing and not force:
        raise UsageError(
            f"{directory}: would overwrite {', '.join(existing)}",
            hint="pass --force to overwrite, or choose an empty directory",
        )
    written: list[str] = []
    notes: list[str] = []
    try:
        for rel, content in files.items():
            path = directory / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content, encoding="utf-8")
            written.append(rel)
        if train:
            written.extend(train_models(directory / "models"))
            from mlserve.scaffold import llm

            if llm.available():
                written.extend(llm.create_models(directory / "models"))
            else:
                notes.append(f"models/chat was not created: {llm.MISSING}; then run `mlserve init --force`")
    except OSError as exc:
        raise MlserveError(f"{directory}: cannot write project files: {exc.strerror or exc}") from None
    return ScaffoldResult(root=directory, project_name=name, written=written, overwritten=existing, notes=notes)


def chat_prompts() -> str:
    """OpenAI chat requests for the chat endpoint, one per line (load tests)."""
    from mlserve.scaffold.llm import prompts

    lines = [
        json.dumps({"messages": [{"role": "user", "content": p}], "max_tokens": 16, "temperature": 0})
        for p in prompts()
    ]
    return "\n".join(lines) + "\n"
