"""The one Jinja environment that renders what a reviewer reads: report.md, the history page,
migration.md, `ft gate`'s table and `ft plan`'s comment.

Templates are package data (review/report/templates/*.j2), found through the installed package
(PackageLoader), so a wheel renders the same as a checkout. Undefined names are errors
(StrictUndefined), never empty strings; HTML templates autoescape, Markdown ones do not (a
Markdown cell is made safe by the `cell` and `code` filters). Numbers are written by the
filters of format.py, so a template says where a number goes and format.py how it looks.
"""

from functools import cache

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from .format import cell, code, delta, fixed, fmt, short, signed, sparkline


@cache
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader(__package__, "templates"),
        undefined=StrictUndefined,
        autoescape=select_autoescape(enabled_extensions=("html", "html.j2"), default=False),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(
        fmt=fmt,
        fixed=fixed,
        short=short,
        cell=cell,
        code=code,
        delta=delta,
        sparkline=sparkline,
        signed=signed,
    )
    return env


def render_template(name: str, **context) -> str:
    return environment().get_template(name).render(**context)


def render_macro(name: str, macro: str, *args, **kwargs) -> str:
    """One macro of a template (tables.md.j2's tables), called from Python."""
    return str(getattr(environment().get_template(name).module, macro)(*args, **kwargs))
