"""A function the config names (a data filter, a segment function): looked up in its table
by name and the config's params checked against its signature, so a typo fails as one
error naming the key instead of deep inside the pipeline."""

import inspect
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from ..errors import UserError


class Registered(Protocol):
    """What FILTERS and SEGMENTS hold: a name's function, taking a row first."""

    @property
    def fn(self) -> Callable[..., Any]: ...


T = TypeVar("T", bound=Registered)


def resolve(
    table: dict[str, T],
    name: str | None,
    params: dict[str, Any],
    *,
    unknown: str,
    what: str,
    home: str,
    file: str | None,
    key: str,
    name_key: str,
) -> T:
    """`table[name]`, whose `fn` takes a row and then `params` by keyword; else a UserError.

    `unknown` names the kind in the not-found message and `what` in the bad-parameter one;
    `home` is the module to add one to; the errors name `{key}.{name_key}` and
    `{key}.params.<param>`."""
    entry = None if name is None else table.get(name)
    if entry is None:
        raise UserError(
            f"unknown {unknown} {name!r}",
            file=file,
            key=f"{key}.{name_key}",
            fix=f"use one of: {', '.join(sorted(table))}, or add it to {home}",
        )
    accepted = list(inspect.signature(entry.fn).parameters)[1:]
    for p in params:
        if p not in accepted:
            raise UserError(
                f"{what} {name!r} takes no parameter {p!r}",
                file=file,
                key=f"{key}.params.{p}",
                fix=f"its parameters are: {', '.join(accepted) or 'none'}",
            )
    return entry
