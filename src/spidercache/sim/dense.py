"""The dense trace kept beside its input, so a second run starts at once.

``load_dense(path, ...)`` returns the trace as dense ids (``engine.ids``: keys
numbered in order of first appearance), their count, the sizes and the time the
remap took. The first run reads and remaps the trace, then writes one file
beside it, ``NAME.dense.npz`` (uncompressed): the ids (``int32`` when they fit),
the sizes (when the trace has them), the key each id stands for (W-TinyLFU's
filter hashes keys) and what they were made from. It is written whole under a
temporary name and renamed into place, so concurrent runs never mix two
writers' arrays. A later run whose fingerprint matches loads it instead: no
parsing, no remap.

The fingerprint: the reader's arguments (format, CSV columns), the size,
modification time, status-change time (ctime) and inode of the trace (and of
``NAME.sizes.npy`` for an ``.npy`` trace) and a BLAKE2b hash of three 64 KiB
samples of its content (start, middle, end), so a file rewritten within the
same second with the same length is still caught unless those samples agree
too, and a copy that keeps size and mtime (``cp -p``) is caught by its ctime,
which no user call can set back. Anything that does not match, or cannot be
read, is ignored and rewritten; a directory that cannot be written
leaves the run as it was (the dense trace is only an accelerator).

``remap_seconds`` is the time the remap took when the file was made; the
simulator keeps charging it to the rows (its share), so a row's ``seconds``
mean the same whether the dense trace was cached or not.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..engine.ids import remap_trace
from .run import keys_by_id
from .traces import load_trace, sizes_path, trace_format

VERSION = 1
SAMPLE = 64 << 10


@dataclass
class DenseTrace:
    ids: np.ndarray  # int64 dense ids, one per request
    n: int  # distinct keys
    sizes: np.ndarray | None  # bytes per request, or None
    remap_seconds: float  # what the remap took when it was done
    cached: bool  # True: loaded from the files beside the trace
    id_keys: np.ndarray | None = None  # the key each id stands for


def dense_path(path: Path) -> Path:
    """The file kept beside ``path``: ``NAME.dense.npz``."""
    return path.with_name(f"{path.name}.dense.npz")


def fingerprint(path: Path, column=None, size_column=None, fmt=None) -> dict:
    """What the dense files must have been made from (see the module docstring)."""
    kind = trace_format(path, fmt, column)
    files = [path] + ([sizes_path(path)] if kind == "npy" and sizes_path(path).exists() else [])
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        length = os.fstat(f.fileno()).st_size
        for start in (0, max(0, length // 2 - SAMPLE // 2), max(0, length - SAMPLE)):
            f.seek(start)
            h.update(f.read(SAMPLE))
    return {
        "version": VERSION,
        "format": kind,
        "column": None if column is None else str(column),
        "size_column": None if size_column is None else str(size_column),
        # ctime and inode too: a copy that keeps size and mtime (cp -p, rsync -t) still changes
        # them, and may differ from the old file only outside the sampled windows
        "files": [[p.name, *_stat(p)] for p in files],
        "sample_hash": h.hexdigest(),
    }


def _stat(p: Path) -> list[int]:
    st = p.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def load_dense(path, column=None, size_column=None, fmt=None, *, keep: bool = True) -> DenseTrace:
    """The trace at ``path`` as dense ids; with ``keep``, reuse or write the files beside it."""
    path = Path(path)
    fp = fingerprint(path, column, size_column, fmt) if keep and path.is_file() else None
    if fp is not None:
        cached = _read(path, fp)
        if cached is not None:
            return cached
    trace = load_trace(path, column, size_column, fmt)
    keys = trace.keys.view(np.int64) if trace.keys.dtype == np.uint64 else trace.keys
    t0 = time.perf_counter()
    ids, n = remap_trace(np.require(keys, np.int64, ["C_CONTIGUOUS", "WRITEABLE"]))
    seconds = time.perf_counter() - t0
    dense = DenseTrace(ids, int(n), trace.sizes, seconds, False, keys_by_id(keys, ids, int(n)))
    if fp is not None:
        _write(path, fp, dense)
    return dense


def _read(path: Path, fp: dict) -> DenseTrace | None:
    try:
        with np.load(dense_path(path), allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            if meta.get("fingerprint") != fp:
                return None
            ids = z["ids"].astype(np.int64)
            sizes = z["sizes"].astype(np.int64) if meta["has_sizes"] else None
            id_keys = z["keys"]
        if ids.ndim != 1 or ids.size != meta["requests"] or id_keys.shape != (meta["n"],):
            return None
        if sizes is not None and sizes.shape != ids.shape:
            return None
        return DenseTrace(ids, int(meta["n"]), sizes, float(meta["remap_seconds"]), True, id_keys)
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile):
        return None


def _write(path: Path, fp: dict, dense: DenseTrace) -> None:
    meta = {
        "fingerprint": fp,
        "requests": int(dense.ids.size),
        "n": dense.n,
        "has_sizes": dense.sizes is not None,
        "remap_seconds": dense.remap_seconds,
    }
    arrays = {
        "meta": np.array(json.dumps(meta)),
        "ids": dense.ids.astype(np.int32) if dense.n < 2**31 else dense.ids,
        "keys": dense.id_keys,
    }
    if dense.sizes is not None:
        small = dense.sizes.size and 0 <= int(dense.sizes.min()) and int(dense.sizes.max()) < 2**31
        arrays["sizes"] = dense.sizes.astype(np.int32) if small else dense.sizes
    # one file, written under a name of this process's own and renamed into place: a reader
    # sees a whole file from one writer or none (two runs may write at once)
    tmp = path.with_name(f"{path.name}.dense.{os.getpid()}.tmp.npz")
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, dense_path(path))
    except OSError:  # a read-only directory, a full disk: run without keeping it
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
