"""The one rule for printing with rich: never cut what goes to a pipe or a file.

Every command, benchmark and progress bar gets its console here (below every layer, like
``errors.py``, so the training loop's progress bar and the CLI's tables follow one rule).
"""

from __future__ import annotations

import sys


def console(stderr: bool = False, quiet: bool = False):
    """A rich Console that wraps on a terminal and never cuts a table going to a pipe or a file.

    (rich sizes a console to 80 columns when its stream is not a terminal, which cut flag
    names, numbers and session ids in CI logs and under ``| grep``: such a stream gets a
    width no table reaches, so a table is exactly as wide as its cells.)
    """
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, quiet=quiet, width=None if stream.isatty() else 10_000)
