"""Output paths, below every layer (like ``errors.py`` and ``console.py``): the one check and the
one atomic write of a torch file.

Commands, benchmarks and the training loop call ``check_output_path`` before any work starts, so a
path that cannot be written ends in one ``error:`` line, not after an hour of work. Every
checkpoint, training state and saved exploration is written with ``save_atomic``, so a crash or a
kill leaves the previous file or the new one, never half of one.
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


def save_atomic(obj, path: str | os.PathLike) -> Path:
    """``torch.save`` ``obj`` to ``path`` through a temporary file that is synced, then renamed."""
    import torch  # here, not at the top: most importers of this module never write a torch file

    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    torch.save(obj, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path
