"""libCacheSim's binary trace formats and the ARC paper's ``.lis``: readers into a ``Trace``.

* ``oracleGeneral`` (libCacheSim's own binary): packed 24-byte records
  ``u32 time, u64 object id, u32 size, i64 next access (vtime, -1 never)``.
* ``vscsi`` (VMware SCSI traces, e.g. libCacheSim's ``cloudPhysicsIO``): two
  record layouts, told apart as libCacheSim does by the version byte of the first
  two records. Version 1 (32 bytes): ``u32 sn, u32 len, u32 nSG, u16 cmd, u16 ver,
  u64 lbn, u64 ts``; version 2 (40 bytes): ``u16 cmd, u16 ver, u32 sn, u32 len,
  u32 nSG, u64 lbn, u64 ts, u64 rt``. The object id is ``lbn``, the size ``len``.
* ``.lis`` (ARC paper, Megiddo & Modha): text lines ``start count ...``; each line
  is ``count`` consecutive pages ``start, start+1, ...``, each a request of size 1.

Keys are 64-bit patterns held in ``int64`` (an unsigned id above 2^63 - 1 keeps
its bits); sizes are ``int64`` bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError

ORACLE_GENERAL = np.dtype([("time", "<u4"), ("key", "<u8"), ("size", "<u4"), ("next", "<i8")])
VSCSI1 = np.dtype(
    {
        "names": ["sn", "len", "nsg", "cmd", "ver", "lbn", "ts"],
        "formats": ["<u4", "<u4", "<u4", "<u2", "<u2", "<u8", "<u8"],
        "offsets": [0, 4, 8, 12, 14, 16, 24],
        "itemsize": 32,
    }
)
VSCSI2 = np.dtype(
    {
        "names": ["cmd", "ver", "sn", "len", "nsg", "lbn", "ts", "rt"],
        "formats": ["<u2", "<u2", "<u4", "<u4", "<u4", "<u8", "<u8", "<u8"],
        "offsets": [0, 2, 4, 8, 12, 16, 24, 32],
        "itemsize": 40,
    }
)


@dataclass
class Trace:
    """A request trace: ``keys`` (int64 bit patterns) and optional per-request ``sizes`` (bytes)."""

    keys: np.ndarray
    sizes: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.sizes is not None and self.sizes.shape != self.keys.shape:
            raise UserError(f"a trace has {self.keys.size:,} keys but {self.sizes.size:,} sizes")


def _records(path: Path, dtype: np.dtype, what: str) -> np.ndarray:
    n_bytes = path.stat().st_size
    if n_bytes == 0:
        raise UserError(f"trace is empty: {path}")
    if n_bytes % dtype.itemsize:
        raise UserError(
            f"{path}: {n_bytes:,} bytes is not a whole number of {dtype.itemsize}-byte {what} records"
        )
    return np.fromfile(path, dtype=dtype)


def read_oracle_general(path: Path) -> Trace:
    rec = _records(path, ORACLE_GENERAL, "oracleGeneral")
    return Trace(rec["key"].view(np.int64).copy(), rec["size"].astype(np.int64))


def write_oracle_general(
    path: Path, keys: np.ndarray, sizes: np.ndarray | None = None, next_access: np.ndarray | None = None
) -> None:
    """Write an oracleGeneral file (sizes default to 1, next access to -1)."""
    keys = np.asarray(keys)
    rec = np.zeros(keys.size, ORACLE_GENERAL)
    rec["time"] = np.arange(keys.size, dtype=np.uint64).astype(np.uint32)
    rec["key"] = keys.astype(np.int64).view(np.uint64) if keys.dtype != np.uint64 else keys
    rec["size"] = 1 if sizes is None else sizes
    rec["next"] = -1 if next_access is None else next_access
    rec.tofile(path)


def vscsi_version(path: Path) -> int:
    """1 or 2, from the version byte of the first two records (as libCacheSim tells them)."""
    head = np.fromfile(path, dtype=np.uint8, count=2 * VSCSI2.itemsize)
    if head.size < 2 * VSCSI2.itemsize:
        raise UserError(f"{path}: too short to be a vscsi trace")
    v2 = head.view(VSCSI2)["ver"] >> 8
    if (v2 == 2).all():
        return 2
    v1 = head[: 2 * VSCSI1.itemsize].view(VSCSI1)["ver"] >> 8
    if (v1 == 1).all():
        return 1
    raise UserError(f"{path}: not a vscsi trace (no version 1 or 2 record header)")


def read_vscsi(path: Path) -> Trace:
    dtype = VSCSI2 if vscsi_version(path) == 2 else VSCSI1
    rec = _records(path, dtype, "vscsi")
    return Trace(rec["lbn"].view(np.int64).copy(), rec["len"].astype(np.int64))


def write_vscsi(path: Path, lbn: np.ndarray, length: np.ndarray, version: int = 2) -> None:
    """Write a vscsi trace (reads, command 40; ``ts`` is the request number in microseconds)."""
    dtype = VSCSI2 if version == 2 else VSCSI1
    rec = np.zeros(len(lbn), dtype)
    rec["cmd"] = 40
    rec["ver"] = version << 8
    rec["sn"] = np.arange(len(lbn), dtype=np.uint64).astype(np.uint32)
    rec["lbn"] = np.asarray(lbn).astype(np.uint64)
    rec["len"] = length
    rec["ts"] = np.arange(len(lbn), dtype=np.uint64) * 1000
    rec.tofile(path)


def read_lis(path: Path) -> Trace:
    """ARC paper ``.lis``: ``start count`` per line, expanded into ``count`` pages of size 1."""
    starts, counts = [], []
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            fields = raw.split()
            if not fields:
                continue
            if len(fields) < 2:
                raise UserError(f"{path}, line {lineno}: a .lis line needs a start page and a count")
            try:
                start, count = int(fields[0]), int(fields[1])
            except ValueError:
                shown = raw.strip()[:40].decode("utf-8", "replace")
                raise UserError(f"{path}, line {lineno}: not two integers: {shown!r}") from None
            if start < 0 or count < 1 or start + count > 2**63:
                raise UserError(
                    f"{path}, line {lineno}: start must be >= 0 and count >= 1, got {start} {count}"
                )
            starts.append(start)
            counts.append(count)
    if not starts:
        raise UserError(f"trace is empty: {path}")
    starts_a = np.array(starts, np.int64)
    counts_a = np.array(counts, np.int64)
    total = int(counts_a.sum())
    offsets = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(counts_a) - counts_a, counts_a)
    return Trace(np.repeat(starts_a, counts_a) + offsets)
