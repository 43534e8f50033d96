"""Decode a batch of encoded values read as rows of one array (the shared-memory slot store).

``ShmSlotStore.get_rows`` hands out a batch as two gathers out of its arena:
``heads`` (the first ``split`` bytes of each value, numpy) and ``bodies``
(the rest, a uint8 torch tensor). ``decode_rows`` checks every value exactly as ``codec.decode`` does
(header, length, xxh3 checksum over all bytes but the checksum's own) and
returns what ``codec.decode`` would return, value by value; a value that does
not verify is reported, never returned.

The fast case is the training cache's: a run of tensors (or arrays) with the
same header, uncompressed, whose payload starts at ``split``. Their header is
parsed once; their payloads already lie in ``bodies`` as the rows of one
contiguous array, so the run decodes into one tensor without a copy (a
subset of the rows: one gather), verified row by row from a hasher
primed with the shared header, and each value is a view of it. ``Run``
records which positions a run covers, so a caller whose batch is exactly one
run (a warm epoch) can hand out that tensor as the stacked batch.
Everything else (other kinds, compressed values, a different ``split``)
decodes one value at a time with ``codec.decode``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import xxhash

from ..errors import CorruptValue
from . import codec

_CK = codec._CHECKSUM_AT  # checksum bytes: [_CK, FIXED_SIZE)


@dataclass
class Run:
    """Values decoded as views of one array: ``batch[j]`` is the value at position ``positions[j]``."""

    positions: np.ndarray
    batch: Any  # torch.Tensor (tensors) or numpy.ndarray (arrays)


@dataclass
class Rows:
    """``decode_rows``'s answer."""

    values: list  # per position: the decoded value, or None (absent or failed)
    bad: list  # positions whose value did not verify
    runs: list  # Run per group of equal-header values decoded together
    split: int  # the payload offset the next batch should be cut at (the last value's)


def _value_bytes(heads: np.ndarray, bodies, k: int, length: int) -> bytes:
    h = heads.shape[1]
    if length <= h:
        return heads[k, :length].tobytes()
    return heads[k].tobytes() + bodies[k, : length - h].numpy().tobytes()


def decode_rows(heads: np.ndarray, bodies, lengths: np.ndarray, ok: np.ndarray) -> Rows:
    """Decode values ``heads[k] + bodies[k]`` (first ``lengths[k]`` bytes) where ``ok[k]``.

    ``heads``: a uint8 numpy array; ``bodies``: a uint8 torch tensor (a run
    that is all of it, in order, decodes as that tensor itself).
    """
    n = int(lengths.size)
    out = Rows([None] * n, [], [], heads.shape[1])
    todo = np.flatnonzero(ok)
    while todo.size:
        k0 = int(todo[0])
        length = int(lengths[k0])
        try:
            kind, flags, dtype_str, shape, payload = codec._unpack(_value_bytes(heads, bodies, k0, length))
        except CorruptValue:
            out.bad.append(k0)
            todo = todo[1:]
            continue
        off = length - len(payload)
        out.split = off
        groupable = kind in (codec.KIND_TORCH, codec.KIND_NUMPY) and not flags & codec.FLAG_LZ4
        if not (groupable and len(payload) and off == heads.shape[1]):
            out.values[k0] = _decode_one(heads, bodies, k0, length, out.bad)
            todo = todo[1:]
            continue
        same = (
            (lengths[todo] == length)
            & (heads[todo, :_CK] == heads[k0, :_CK]).all(1)
            & (heads[todo, codec.FIXED_SIZE :] == heads[k0, codec.FIXED_SIZE :]).all(1)
        )
        _decode_run(heads, bodies, todo[same], kind, dtype_str, shape, len(payload), out)
        todo = todo[~same]
    return out


def _decode_one(heads, bodies, k: int, length: int, bad: list):
    try:
        return codec.decode(_value_bytes(heads, bodies, k, length))
    except CorruptValue:
        bad.append(k)
        return None


def _decode_run(
    heads, bodies, pos: np.ndarray, kind: int, dtype_str: str, shape: tuple, plen: int, out: Rows
):
    """Values at ``pos`` share one header: verify each checksum, decode all as views of one array."""
    import torch

    # the header (dtype, size) was checked when it was parsed; the first value checks the payload size
    first = (codec._decode_torch if kind == codec.KIND_TORCH else codec._decode_numpy)(
        dtype_str, shape, memoryview(bodies[pos[0], :plen].numpy())
    )
    whole = (
        pos.size == bodies.shape[0] and bodies.shape[1] == plen and bool((pos == np.arange(pos.size)).all())
    )
    rows = bodies if whole else torch.from_numpy(bodies.numpy()[pos, :plen])
    raw = rows.numpy()
    primed = xxhash.xxh3_64()
    primed.update(heads[pos[0], :_CK])
    primed.update(heads[pos[0], codec.FIXED_SIZE :])
    stored = heads[pos, _CK : codec.FIXED_SIZE].copy().view("<u8").reshape(-1)
    good = np.empty(pos.size, np.bool_)
    for j in range(pos.size):
        h = primed.copy()
        h.update(raw[j])
        good[j] = h.intdigest() == stored[j]
    if kind == codec.KIND_TORCH:
        batch = rows.view(cast(torch.dtype, first.dtype)).reshape(pos.size, *shape)
        views = batch.unbind(0)
    else:
        batch = raw.view(first.dtype).reshape(pos.size, *shape)
        batch.flags.writeable = False  # as codec.decode's zero-copy arrays
        views = list(batch)
    for j, k in enumerate(pos.tolist()):
        if good[j]:
            out.values[k] = views[j]
        else:
            out.bad.append(k)
    out.runs.append(Run(pos, batch))
