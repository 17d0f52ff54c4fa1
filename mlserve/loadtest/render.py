"""Render the locustfile a load test runs, so that a user can read, edit and re-run it.

The template is ``loadtest/locustfile.py.j2``: a project's own ``templates/`` folder
overrides the built-in one by the same relative path. Values reach the Python source
through the ``py`` filter (``repr`` of plain str/int/float/None), so an endpoint name or
URL can never change the structure of the generated code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlserve.errors import MlserveError

TEMPLATE = "loadtest/locustfile.py.j2"


def builtin_templates_dir() -> Path:
    """The wheel ships ``templates/`` as ``mlserve/_templates``; an editable install reads the repository's."""
    package = Path(__file__).resolve().parent.parent
    shipped = package / "_templates"
    return shipped if shipped.is_dir() else package.parent / "templates"


def py_literal(value: Any) -> str:
    if value is None or isinstance(value, bool | int | float | str):
        return repr(value)
    raise TypeError(f"cannot write {type(value).__name__} into a locustfile")


def render_locustfile(context: dict[str, Any], project_root: Path | None = None, template: str = TEMPLATE) -> str:
    import jinja2

    dirs = []
    if project_root is not None and (project_root / "templates").is_dir():
        dirs.append(str(project_root / "templates"))
    dirs.append(str(builtin_templates_dir()))
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(dirs),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["py"] = py_literal
    try:
        return env.get_template(template).render(context)
    except jinja2.TemplateNotFound:
        raise MlserveError(f"template {template} not found (searched {', '.join(dirs)})") from None
    except jinja2.UndefinedError as exc:
        raise MlserveError(f"template {template}: {exc.message}") from None
    except jinja2.TemplateSyntaxError as exc:
        raise MlserveError(f"template {exc.filename or template}:{exc.lineno}: {exc.message}") from None
