"""``ShmSlotStore.get_rows`` + ``codec_rows.decode_rows``: the batch read of the training cache.

Every value decodes to what ``codec.decode`` gives for its bytes, bit for bit,
whatever the cut; a damaged or half-written value is never returned.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spidercache.engine import codec
from spidercache.engine.codec_rows import decode_rows
from spidercache.engine.plan import SlotAllocator
from spidercache.engine.stores.shm import ShmSlotStore


def _bits(v):
    if isinstance(v, torch.Tensor):
        return (str(v.dtype), tuple(v.shape), v.contiguous().view(torch.uint8).numpy().tobytes())
    if isinstance(v, np.ndarray):
        return (v.dtype.str, v.shape, np.ascontiguousarray(v).tobytes())
    return v


def _values(rng):
    same = [torch.from_numpy(rng.integers(0, 256, (3, 8, 8), dtype=np.uint8)) for _ in range(6)]
    floats = torch.from_numpy(
        rng.integers(0, 2**32, (5, 4), dtype=np.uint32).view(np.float32)
    )  # NaN bits too
    return (
        same[:3]
        + [
            floats,  # another header in the middle of a run
            np.arange(10, dtype=np.int16),
            {"a": [1, 2]},
            b"raw bytes",
            torch.zeros(3, 8, 8, dtype=torch.uint8),  # compressed below
        ]
        + same[3:]
    )


def _store(values, compress_at=7):
    st = ShmSlotStore(32, 20, 4096, shared=False)
    SlotAllocator(20, 0, st.table).assign(np.arange(len(values)))
    blobs = [codec.encode(v, compress=k == compress_at) for k, v in enumerate(values)]
    assert st.put_many(np.arange(len(values)), blobs).all()
    return st, blobs


@pytest.mark.parametrize("split", [0, 17, 48, 64, 80, 4096])
def test_rows_decode_like_decode_for_any_cut(split):
    values = _values(np.random.default_rng(0))
    st, blobs = _store(values)
    order = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 31])  # 31: never stored
    got = decode_rows(*st.get_rows(order, split))
    assert got.bad == [] and got.values[-1] is None
    for k, i in enumerate(order[:-1].tolist()):
        assert _bits(got.values[k]) == _bits(codec.decode(blobs[i])), (split, i)
    if split == 64:  # the 3x8x8 uint8 tensors' payload offset: runs decode as views of one tensor
        assert [r.positions.tolist() for r in got.runs] == [[0, 1, 2, 8, 9, 10], [3]]
        assert got.values[9].data_ptr() == got.runs[0].batch[4].data_ptr()
    if split == 48:  # the int16 array's payload offset: a run of one numpy array, read-only as decode's
        assert [r.positions.tolist() for r in got.runs] == [[4]] and not got.values[4].flags.writeable
    assert got.split in {codec.header_size(b) for b in blobs}  # where the next batch is cut


def test_a_whole_batch_of_one_header_is_one_tensor_without_a_copy_of_the_snapshot():
    rng = np.random.default_rng(1)
    values = [torch.from_numpy(rng.integers(0, 256, (3, 8, 8), dtype=np.uint8)) for _ in range(8)]
    st, _ = _store(values, compress_at=-1)
    heads, bodies, lengths, ok = st.get_rows(np.arange(8)[::-1], 64)
    got = decode_rows(heads, bodies, lengths, ok)
    assert len(got.runs) == 1 and got.runs[0].positions.tolist() == list(range(8))
    assert got.runs[0].batch.data_ptr() == bodies.data_ptr()  # the gather itself, no second copy
    assert torch.equal(got.runs[0].batch, torch.stack(values[::-1]))
    bodies[0, 0] ^= 1  # a snapshot is a copy: the arena does not change
    assert torch.equal(
        decode_rows(*st.get_rows(np.arange(8)[::-1], 64)).runs[0].batch, torch.stack(values[::-1])
    )


@pytest.mark.parametrize("where", ["payload", "shape", "checksum"])
def test_a_damaged_value_in_a_run_is_bad_and_the_others_verify(where):
    values = _values(np.random.default_rng(2))
    st, blobs = _store(values)
    at = {"payload": -1, "shape": 40, "checksum": 21}[where]
    slot = st.table[1]
    st.data[slot, at % len(blobs[1])] ^= 0x10
    got = decode_rows(*st.get_rows(np.array([0, 1, 2]), 64))
    assert got.bad == [1] and got.values[1] is None
    for k in (0, 2):
        assert _bits(got.values[k]) == _bits(values[k])


def test_a_value_being_written_or_rewritten_is_not_read():
    values = _values(np.random.default_rng(3))
    st, _ = _store(values)
    slot = st.table[2]
    st.version[slot] += 1  # a writer is inside put_many
    heads, bodies, lengths, ok = st.get_rows(np.array([0, 2]), 64)
    assert ok.tolist() == [True, False] and decode_rows(heads, bodies, lengths, ok).values[1] is None
    st.version[slot] += 1
    st.owner[slot] = 5  # the slot now holds another id
    assert st.get_rows(np.array([2]), 64)[3].tolist() == [False]
