"""Read, write and generate request traces (arrays of integer keys, optional sizes).

A trace is a 1-D ``int64`` numpy array of keys, one per request, plus optional
per-request object sizes in bytes (``load_trace`` returns both as a ``Trace``).
Keys are 64-bit: signed, or unsigned up to 2^64 - 1 (libCacheSim's ids), held
as their bit pattern in ``int64``. Formats (``fmt``, or told from the name):

* ``npy``: a 1-D array of integers (what ``trace gen`` and ``trace convert``
  write); sizes, when there are any, in ``NAME.sizes.npy`` beside it;
* ``txt`` (``.txt``, ``.trace``, ``.log`` or any unknown suffix that parses):
  one integer key per line (libCacheSim's txt, RecMG's embedding traces);
* ``csv`` (``.csv``, ``.tsv``): keys in ``column`` (a header name or a 0-based
  index), sizes in ``size_column`` (libCacheSim's csv layouts with a header);
* ``oracleGeneral`` (a name containing ``oracleGeneral``), ``vscsi``
  (``.vscsi``) and the ARC paper's ``.lis``: see ``formats``.

Every mistake a user can make (missing file, empty trace, a line that is not an
integer, an unknown column) raises ``UserError`` with one line naming it.
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

import numpy as np

from ..checks import at_least
from ..errors import UserError
from ..paths import check_output_path
from .formats import Trace, read_lis, read_oracle_general, read_vscsi

_TWO_ON_A_LINE = re.compile(rb"\S[ \t\f\v]+\S")
TEXT_SUFFIXES = {".txt", ".trace", ".log", ".dat", ""}
CSV_SUFFIXES = {".csv", ".tsv"}
FORMATS = ("npy", "txt", "csv", "oracleGeneral", "vscsi", "lis")
_BINARY_READERS = {"oracleGeneral": read_oracle_general, "vscsi": read_vscsi, "lis": read_lis}


# ------------------------------------------------------------------ reading
def read_trace(path: str | os.PathLike, column: str | int | None = None) -> np.ndarray:
    """Load a trace file as a 1-D ``int64`` array of keys."""
    return load_trace(path, column).keys


def sizes_path(path: str | os.PathLike) -> Path:
    """Where the sizes of ``X.npy`` live: ``X.sizes.npy``."""
    path = Path(path)
    return path.with_name(path.name[: -len(".npy")] + ".sizes.npy")


def trace_format(path: Path, fmt: str | None = None, column=None) -> str:
    """The format named by ``fmt`` or told from the file name."""
    if fmt is not None:
        names = {f.lower(): f for f in FORMATS}
        if fmt.lower() not in names:
            raise UserError(f"unknown trace format {fmt!r}; choose from {', '.join(FORMATS)}")
        return names[fmt.lower()]
    suffix = path.suffix.lower()
    if suffix in {".vscsi", ".lis", ".npy"}:  # before the name: `trace convert` writes X.oracleGeneral.npy
        return suffix[1:]
    if "oraclegeneral" in path.name.lower() and (suffix == "" or suffix not in CSV_SUFFIXES | TEXT_SUFFIXES):
        return "oracleGeneral"
    if suffix in CSV_SUFFIXES or column is not None:
        return "csv"
    if suffix in TEXT_SUFFIXES or _looks_like_text(path):
        return "txt"
    raise UserError(
        f"unknown trace format {suffix!r} for {path}; use .npy, a text file with one integer key "
        "per line, a .csv with --column, or --format (oracleGeneral, vscsi, lis)"
    )


def load_trace(
    path: str | os.PathLike,
    column: str | int | None = None,
    size_column: str | int | None = None,
    fmt: str | None = None,
) -> Trace:
    """Load keys (and sizes, where the format has them) from a trace file."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"trace file not found: {path}")
    if path.is_dir():
        raise UserError(f"trace path is a directory, not a file: {path}")
    kind = trace_format(path, fmt, column)
    if kind != "csv" and (column is not None or size_column is not None):
        raise UserError(f"--column and --size-column apply to CSV traces only, not to {kind}")
    if kind == "npy":
        trace = Trace(_read_npy(path), _read_sizes_npy(path))
    elif kind == "csv":
        trace = _read_csv(path, column, size_column)
    elif kind == "txt":
        trace = Trace(_read_text(path))
    else:
        trace = _BINARY_READERS[kind](path)
    if trace.keys.size == 0:
        raise UserError(f"trace is empty: {path}")
    if trace.sizes is not None and trace.sizes.size and int(trace.sizes.min()) < 0:
        raise UserError(f"{path}: object sizes must be >= 0")
    return trace


def _keys_from_ints(values: list[int], where: str) -> np.ndarray:
    """Python ints in [-2^63, 2^64) as int64 bit patterns; a trace may not mix the two halves."""
    if not values:
        return np.empty(0, np.int64)
    lo, hi = min(values), max(values)
    if lo < -(2**63) or hi >= 2**64:
        bad = lo if lo < -(2**63) else hi
        raise UserError(f"{where}: key {bad} does not fit in 64 bits")
    if hi >= 2**63:
        if lo < 0:
            raise UserError(
                f"{where}: keys mix negative numbers and numbers >= 2^63; "
                "use signed or unsigned 64-bit keys, not both"
            )
        return np.array(values, dtype=np.uint64).view(np.int64)
    return np.array(values, dtype=np.int64)


def _read_npy(path: Path) -> np.ndarray:
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise UserError(f"cannot read {path} as a .npy array: {_first_line(exc)}") from None
    if arr.ndim != 1:
        if arr.ndim == 2 and 1 in arr.shape:
            arr = arr.reshape(-1)
        else:
            raise UserError(f"{path}: a trace must be a 1-D array of keys, got shape {arr.shape}")
    if arr.dtype.kind not in "iu":
        raise UserError(f"{path}: trace keys must be integers, got dtype {arr.dtype}")
    # A real (writable) copy: numba compiles separate kernels for read-only
    # arrays, which would put compile time inside the simulator's clock.
    if arr.dtype == np.uint64:
        return np.array(arr, copy=True).view(np.int64)  # unsigned ids keep their bits
    return np.array(arr, dtype=np.int64, copy=True)


def _read_sizes_npy(path: Path) -> np.ndarray | None:
    spath = sizes_path(path)
    if not spath.exists():
        return None
    sizes = _read_npy(spath)
    return sizes


def _looks_like_text(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(4096)
    if b"\0" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start >= len(head) - 3  # only a character cut at the end of the sample
    return True


def _read_text(path: Path) -> np.ndarray:
    # Fast path: numpy parses the whole file in C. On any failure re-scan
    # line by line, only to name the first bad line for the user.
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    if not data.strip():
        raise UserError(f"trace is empty: {path}")
    tokens = data.split()
    # split() would also break "1 2" on one line into two keys: accept the fast
    # result only when no line holds two tokens (a count of lines is fooled by blank ones)
    if not _TWO_ON_A_LINE.search(data):
        for dtype in (np.int64, np.uint64):  # unsigned ids >= 2^63 parse as uint64
            try:
                return np.array(tokens, dtype=dtype).view(np.int64)
            except (ValueError, OverflowError):
                pass
    out = []
    for lineno, raw in enumerate(data.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        try:
            out.append(int(line))
        except ValueError:
            shown = line[:40].decode("utf-8", "replace")
            raise UserError(f"{path}, line {lineno}: not an integer key: {shown!r}") from None
        if not -(2**63) <= out[-1] < 2**64:
            raise UserError(f"{path}, line {lineno}: key does not fit in 64 bits")
    return _keys_from_ints(out, str(path))


def _read_csv(path: Path, column: str | int | None, size_column: str | int | None = None) -> Trace:
    if column is None:
        raise UserError(f"{path} is a CSV trace: say which column holds the keys with --column")
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        return _csv_rows(path, column, size_column, delimiter)
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text: save the CSV as UTF-8") from None


def _csv_rows(path: Path, column, size_column, delimiter: str) -> Trace:
    # utf-8-sig: a byte-order mark (as Excel writes) is not part of the first cell
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = csv.reader(f, delimiter=delimiter)
        first = next(rows, None)
        if first is None:
            raise UserError(f"trace is empty: {path}")
        col_index, has_header = _resolve_column(path, first, column)
        size_index = None
        if size_column is not None:
            size_index, size_header = _resolve_column(path, first, size_column)
            has_header = has_header or size_header
        keys: list[int] = []
        sizes: list[int] = []
        rows_iter = rows if has_header else _chain([first], rows)
        for lineno, row in enumerate(rows_iter, start=2 if has_header else 1):
            if not row or all(not c.strip() for c in row):
                continue
            keys.append(_cell_int(path, lineno, row, col_index, "key"))
            if size_index is not None:
                sizes.append(_cell_int(path, lineno, row, size_index, "size"))
    size_arr = None
    if size_index is not None:
        if sizes and (min(sizes) < 0 or max(sizes) >= 2**63):
            raise UserError(f"{path}: object sizes must be in [0, 2^63)")
        size_arr = np.array(sizes, dtype=np.int64)
    return Trace(_keys_from_ints(keys, str(path)), size_arr)


def _cell_int(path: Path, lineno: int, row: list[str], index: int, what: str) -> int:
    if index >= len(row):
        raise UserError(f"{path}, line {lineno}: no column {index} (row has {len(row)})")
    cell = row[index].strip()
    try:
        return int(cell)
    except ValueError:
        raise UserError(f"{path}, line {lineno}: not an integer {what}: {cell[:40]!r}") from None


def _resolve_column(path: Path, first: list[str], column: str | int) -> tuple[int, bool]:
    """Return (column index, whether the first row is a header)."""
    text = str(column).strip()
    cells = [c.strip() for c in first]
    if text in cells and not _is_int(text):
        return cells.index(text), True
    if _is_int(text):
        idx = int(text)
        if idx < 0:
            raise UserError(f"--column must be a name or a 0-based index >= 0, got {text}")
        if idx >= len(cells):
            raise UserError(f"{path}: no column {idx}; the first row has {len(cells)} columns")
        # A first row whose chosen cell is not an integer is a header.
        return idx, not _is_int(cells[idx])
    raise UserError(f"{path}: no column named {text!r}; the header has {', '.join(cells)}")


def _is_int(s: str) -> bool:
    try:
        int(s)
        return True
    except ValueError:
        return False


def _chain(*iterables):
    for it in iterables:
        yield from it


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


# ------------------------------------------------------------------ writing
def write_trace(path: str | os.PathLike, keys: np.ndarray, sizes: np.ndarray | None = None) -> Path:
    """Write keys as ``.npy`` (the suffix is added when missing; sizes to ``NAME.sizes.npy``) or text.

    Text (``.txt``, ``.trace``) holds keys only; sizes need ``.npy``.
    """
    path = check_output_path(path)
    keys = np.ascontiguousarray(keys)
    keys = keys.view(np.int64) if keys.dtype == np.uint64 else keys.astype(np.int64, copy=False)
    if path.suffix.lower() in {".txt", ".trace"}:
        if sizes is not None:
            raise UserError(f"{path}: a text trace holds keys only; write .npy to keep the sizes")
        np.savetxt(path, keys, fmt="%d")
        return path
    if path.suffix.lower() != ".npy":
        path = path.with_name(path.name + ".npy")
    np.save(path, keys)
    if sizes is not None:
        np.save(sizes_path(path), np.ascontiguousarray(sizes, dtype=np.int64))
    return path


# --------------------------------------------------------------- generating
def zipf(alpha: float, keys: int, requests: int, seed: int = 0) -> np.ndarray:
    """A Zipf(alpha) trace of ``requests`` keys drawn from ``keys`` distinct keys.

    Rank r (1-based) has probability proportional to r**-alpha, for any
    alpha >= 0 (numpy's own zipf sampler needs alpha > 1 and an unbounded
    support, so we sample ranks by inverting the CDF with ``searchsorted``).
    Ranks are then mapped to keys through a random permutation so that hot
    keys are spread over 0..keys-1 rather than being the smallest integers.
    """
    _check_sizes(alpha=alpha, keys=keys, requests=requests)
    rng = np.random.default_rng(seed)
    ranks = np.arange(1, keys + 1, dtype=np.float64)
    weights = ranks ** (-float(alpha))
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    cdf[-1] = 1.0  # guard the last bucket against rounding below 1
    out = np.empty(requests, np.int64)
    rank_to_key = rng.permutation(keys).astype(np.int64)
    chunk = 1 << 22  # bounded temporary memory for large traces
    for start in range(0, requests, chunk):
        stop = min(start + chunk, requests)
        u = rng.random(stop - start)
        out[start:stop] = rank_to_key[np.searchsorted(cdf, u, side="right").clip(max=keys - 1)]
    return out


def uniform(keys: int, requests: int, seed: int = 0) -> np.ndarray:
    """Every key equally likely (a Zipf with alpha 0, without the CDF)."""
    _check_sizes(alpha=0.0, keys=keys, requests=requests)
    return np.random.default_rng(seed).integers(0, keys, size=requests, dtype=np.int64)


def _check_sizes(*, alpha: float, keys: int, requests: int) -> None:
    if not np.isfinite(alpha) or alpha < 0:
        raise UserError(f"alpha must be a finite number >= 0, got {alpha}")
    at_least(1, keys=keys, requests=requests)
