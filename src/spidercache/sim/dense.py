"""The dense trace kept beside its input, so a second run starts at once.

``load_dense(path, ...)`` returns the trace as dense ids (``engine.ids``: keys
numbered in order of first appearance), their count, the sizes and the time the
remap took. The first run reads and remaps the trace, then writes three files
beside it: ``NAME.dense.npy`` (the ids; ``int32`` when they fit),
``NAME.dense.sizes.npy`` (when the trace has sizes), ``NAME.dense.keys.npy``
(the key each id stands for, which W-TinyLFU's filter hashes) and
``NAME.dense.json`` (what they were made from). A later run whose fingerprint matches loads those
instead: no parsing, no remap.

The fingerprint: the reader's arguments (format, CSV columns), the size and
modification time of the trace (and of ``NAME.sizes.npy`` for an ``.npy``
trace) and a BLAKE2b hash of three 64 KiB samples of its content (start,
middle, end), so a file rewritten within the same second with the same length
is still caught unless those samples agree too. Anything that does not match,
or cannot be read, is ignored and rewritten; a directory that cannot be written
leaves the run as it was (the dense trace is only an accelerator).

``remap_seconds`` is the time the remap took when the files were made; the
simulator keeps charging it to the rows (its share), so a row's ``seconds``
mean the same whether the dense trace was cached or not.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
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


def dense_paths(path: Path) -> tuple[Path, Path, Path, Path]:
    """(ids, sizes, keys, metadata) files kept beside ``path``."""
    exts = (".npy", ".sizes.npy", ".keys.npy", ".json")
    return tuple(path.with_name(f"{path.name}.dense{ext}") for ext in exts)


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
        "files": [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files],
        "sample_hash": h.hexdigest(),
    }


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
    ids_p, sizes_p, keys_p, meta_p = dense_paths(path)
    try:
        meta = json.loads(meta_p.read_text())
        if meta.get("fingerprint") != fp:
            return None
        ids = np.load(ids_p, allow_pickle=False).astype(np.int64)
        sizes = np.load(sizes_p, allow_pickle=False).astype(np.int64) if meta["has_sizes"] else None
        id_keys = np.load(keys_p, allow_pickle=False)
        if ids.ndim != 1 or ids.size != meta["requests"] or id_keys.shape != (meta["n"],):
            return None
        if sizes is not None and sizes.shape != ids.shape:
            return None
        return DenseTrace(ids, int(meta["n"]), sizes, float(meta["remap_seconds"]), True, id_keys)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write(path: Path, fp: dict, dense: DenseTrace) -> None:
    ids_p, sizes_p, keys_p, meta_p = dense_paths(path)
    meta = {
        "fingerprint": fp,
        "requests": int(dense.ids.size),
        "n": dense.n,
        "has_sizes": dense.sizes is not None,
        "remap_seconds": dense.remap_seconds,
    }
    try:
        meta_p.unlink(missing_ok=True)  # stale metadata never describes half-written arrays
        _save(ids_p, dense.ids.astype(np.int32) if dense.n < 2**31 else dense.ids)
        if dense.sizes is not None:
            small = dense.sizes.size and 0 <= int(dense.sizes.min()) and int(dense.sizes.max()) < 2**31
            _save(sizes_p, dense.sizes.astype(np.int32) if small else dense.sizes)
        _save(keys_p, dense.id_keys)
        tmp = meta_p.with_name(meta_p.name + ".tmp")
        tmp.write_text(json.dumps(meta))
        os.replace(tmp, meta_p)
    except OSError:
        return  # a read-only directory: run without keeping it


def _save(target: Path, arr: np.ndarray) -> None:
    tmp = target.with_name(target.name + ".tmp.npy")
    np.save(tmp, arr)
    os.replace(tmp, target)
