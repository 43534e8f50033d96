"""How every command prints: ``console()`` for text and tables, ``print_rows`` for result rows.

Output that goes to a pipe or a file is never cut: rich sizes a console to 80
columns when its stream is not a terminal, which truncated flag names, numbers
and session ids in CI logs and under ``| grep``; ``console()`` gives such a
stream a width no table reaches, so a table is exactly as wide as its cells.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Mapping, Sequence

# one console rule and one table builder for the commands and the benchmarks (bench/runner.py)
from ..bench.runner import Column, rows_table
from ..console import console

__all__ = ["Column", "console", "print_rows"]


def print_rows(
    rows: Sequence[Mapping[str, Any]], *, json_out: bool, title: str, columns: Sequence[Column]
) -> None:
    """``rows`` as indented JSON (machine output), or a rich table of ``columns`` (header, cell formatter)."""
    if json_out:
        json.dump(list(rows), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    console().print(rows_table(rows, title, columns))
