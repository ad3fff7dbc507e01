"""Options that many commands share, parsed in one place."""

from __future__ import annotations

import typer

from faceatlas.errors import InvalidArgument


def database_option(param: typer.CallbackParam, value: str | None) -> str | None:
    """The callback of every command's database option (``--db``): an empty or blank value is
    :class:`InvalidArgument`. It is no database, and ``value or default`` read it as the default
    one: ``--db "$DB"`` with ``DB`` unset wrote to ``~/.local/share/faceatlas``."""
    if value is not None and not value.strip():
        name = param.opts[0] if param.opts else "--db"
        raise InvalidArgument(f"{name} is empty: give a database URL or SQLite file, or leave {name} out for "
                              "the default database (an unset shell variable?)")
    return value
