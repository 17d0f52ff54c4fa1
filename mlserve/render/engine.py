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
    )
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
