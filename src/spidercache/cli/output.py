"""How every command prints: ``console()`` for text and tables, ``print_rows`` for result rows.

Output that goes to a pipe or a file is never cut: rich sizes a console to 80
columns when its stream is not a terminal, which truncated flag names, numbers
and session ids in CI logs and under ``| grep``; ``console()`` gives such a
stream a width no table reaches, so a table is exactly as wide as its cells.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Callable, Mapping, Sequence

# Wide enough for any table we print; a table that does not expand takes only what it needs.
_PIPE_WIDTH = 10_000


def console(stderr: bool = False, quiet: bool = False):
    """A rich Console for stdout (or stderr) that wraps on a terminal and never truncates elsewhere."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else _PIPE_WIDTH
    return Console(stderr=stderr, quiet=quiet, width=width)


Column = tuple[str, Callable[[Mapping[str, Any]], str]]


def print_rows(rows: Sequence[Mapping[str, Any]], *, json_out: bool, title: str, columns: Sequence[Column]) -> None:
    """``rows`` as indented JSON (machine output), or as a rich table of ``columns`` (header, cell formatter)."""
    if json_out:
        json.dump(list(rows), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    from rich.table import Table

    table = Table(title=title)
    for header, _ in columns:
        table.add_column(header)
    for row in rows:
        table.add_row(*(cell(row) for _, cell in columns))
    console().print(table)
