"""Print a list of result rows the way every listing command does: JSON with ``--json``, else a table."""

from __future__ import annotations

import json
import sys
from typing import Any, Callable, Mapping, Sequence

Column = tuple[str, Callable[[Mapping[str, Any]], str]]


def print_rows(rows: Sequence[Mapping[str, Any]], *, json_out: bool, title: str, columns: Sequence[Column]) -> None:
    """``rows`` as indented JSON (machine output), or as a rich table of ``columns`` (header, cell formatter)."""
    if json_out:
        json.dump(list(rows), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for header, _ in columns:
        table.add_column(header)
    for row in rows:
        table.add_row(*(cell(row) for _, cell in columns))
    Console().print(table)
