"""The one check of an output path, below every layer (like ``errors.py`` and ``console.py``).

Commands, benchmarks and the training loop call it before any work starts, so a
path that cannot be written ends in one ``error:`` line, not after an hour of work.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import UserError


def check_output_path(path: str | os.PathLike) -> Path:
    """Fail early (before generating anything) if ``path`` cannot be written."""
    path = Path(path)
    if not path.parent.is_dir():
        raise UserError(f"output folder does not exist: {path.parent}")
    if path.is_dir():
        raise UserError(f"output path is a directory: {path}")
    return path
