"""The jinja2 environment: built-in templates, project overrides, quoting filters.

StrictUndefined turns a misspelt variable into an error instead of an empty string;
autoescape is off because the targets are HCL and YAML, not HTML, and quoting is the
job of the ``hcl`` and ``yaml`` filters.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import jinja2

from mlserve.errors import MlserveError
from mlserve.render import filters


def builtin_templates_dir() -> Path:
    """The wheel ships templates as ``mlserve/_templates``; an editable install uses the
    repository's top-level ``templates/``."""
    package = Path(__file__).resolve().parent.parent
    shipped = package / "_templates"
    if shipped.is_dir():
        return shipped
    return package.parent / "templates"


def _search_path(project_root: Path | None) -> tuple[str, ...]:
    dirs: list[str] = []
    if project_root is not None:
        own = (project_root / "templates").resolve()
        if own.is_dir():
            dirs.append(str(own))
    builtin = str(builtin_templates_dir().resolve())
    if builtin not in dirs:
        dirs.append(builtin)
    return tuple(dirs)


_MISSING = object()


@jinja2.pass_context
def k8s_meta(
    ctx: jinja2.runtime.Context,
    name: str,
    ns: Any = _MISSING,
    extra_labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> str:
    """A Kubernetes ``metadata:`` block with mlserve's common labels, every value quoted.

    A Python helper rather than a jinja macro: it runs once per object, and at a few
    thousand objects per render the macro machinery was most of the render time.
    """
    namespace = ctx.get("namespace") if ns is _MISSING else ns
    labels = {
        "app.kubernetes.io/managed-by": "mlserve",
        "mlserve.io/project": ctx["project"]["name"],
        "mlserve.io/environment": ctx["env"]["name"],
    }
    labels.update(extra_labels or {})
    q = filters.yaml_string
    lines = ["metadata:", f"  name: {q(name)}"]
    if namespace:
        lines.append(f"  namespace: {q(namespace)}")
    lines.append("  labels:")
    lines += [f"    {q(k)}: {q(v)}" for k, v in sorted(labels.items())]
    if annotations:
        lines.append("  annotations:")
        lines += [f"    {q(k)}: {q(v)}" for k, v in sorted(annotations.items())]
    return "\n".join(lines)


@functools.lru_cache(maxsize=16)
def _environment(search_path: tuple[str, ...]) -> jinja2.Environment:
    loader = jinja2.ChoiceLoader([jinja2.FileSystemLoader(d) for d in search_path])
    env = jinja2.Environment(
        loader=loader,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )
    env.globals["k8s_meta"] = k8s_meta
    env.filters["hcl"] = filters.hcl
    env.filters["yaml"] = filters.yaml
    return env


def environment(project_root: Path | None) -> jinja2.Environment:
    """The environment for a project: its own ``templates/`` first, then the built-ins."""
    return _environment(_search_path(project_root))


def render_template(env: jinja2.Environment, name: str, context: dict[str, Any]) -> str:
    try:
        return env.get_template(name).render(context)
    except jinja2.TemplateNotFound as exc:
        raise MlserveError(
            f"template {exc.name} not found",
            hint="a project's templates/ folder overrides built-in templates by the same relative path",
        ) from None
    except jinja2.UndefinedError as exc:
        raise MlserveError(f"template {name}: {exc.message}") from None
    except filters.QuoteError as exc:
        raise MlserveError(f"template {name}: {exc}") from None
    except jinja2.TemplateSyntaxError as exc:
        raise MlserveError(f"template {exc.filename or name}:{exc.lineno}: {exc.message}") from None
