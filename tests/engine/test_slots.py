"""The one slot store (``engine/stores/slots.py``, ``gather.py``): seqlock writes and the fused
gather-and-check kernel.

The kernel hashes with XXH3 through the ``xxhash`` package's own C symbol; these
tests pin its trailers to ``xxhash.xxh3_64`` over random lengths 0..10,000 and
show that every way a value can go wrong comes back as TORN or BAD, never as
bytes.
"""

from __future__ import annotations

import numpy as np
import pytest
import xxhash

from spidercache.engine.stores import slots
from spidercache.engine.stores.checksum import MIX
from spidercache.engine.stores.gather import BAD, TORN, gather
from spidercache.server.batch import with_checksums


def _class(cap: int, slot_size: int) -> slots.SlotClass:
    seg = slots.Segment(None, slots.class_layout(cap, slot_size)[3], True)
    return slots.map_class(seg, cap, slot_size)


def _store(view, ids, values, trailers: bool):
    if trailers:
        src, lengths = with_checksums(np.asarray(ids, np.int64), values)
    else:
        src = np.frombuffer(b"".join(values), np.uint8)
        lengths = np.array([len(v) for v in values], np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    s = np.arange(len(values), dtype=np.int64)
    slots.write(view, s, src, offsets, lengths)
    return s


def _read(view, s, ids=None, want=None, width=None):
    width = view.slot_size if width is None else width
    body = np.zeros((s.size, width), np.uint8)
    out = np.full(s.size, -9, np.int64)
    bad = gather(view, np.arange(s.size), s, body[:, :0], body, out, want=want, keys=ids)
    return out, body, bad


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_checked_gather_matches_xxh3_over_random_lengths(seed):
    rng = np.random.default_rng(seed)
    n = 64
    values = [rng.bytes(int(k)) for k in rng.integers(0, 10_001, n)]
    values[0], values[1] = b"", rng.bytes(10_000)
    ids = rng.integers(0, 2**40, n).astype(np.int64)
    view = _class(n, 10_048)
    s = _store(view, ids, values, trailers=True)
    for k, v in enumerate(values):  # the trailer the writer left is XXH3 of the value, mixed with its id
        trailer = view.data[s[k], len(v) : len(v) + 8].tobytes()
        assert trailer == (xxhash.xxh3_64_intdigest(v) ^ (int(ids[k]) * MIX % 2**64)).to_bytes(8, "little")
    out, body, bad = _read(view, s, ids)
    assert bad == 0 and out.tolist() == [len(v) for v in values]
    assert all(body[k, : len(v)].tobytes() == v for k, v in enumerate(values))


def test_changed_torn_and_foreign_values_are_never_returned():
    rng = np.random.default_rng(3)
    values = [rng.bytes(3072) for _ in range(6)]
    ids = np.arange(100, 106, dtype=np.int64)
    view = _class(8, 3136)
    s = _store(view, ids, values, trailers=True)
    view.data[s[0], 1000] ^= 0x01  # a flipped bit: stable but wrong
    view.gens[s[1]] += 1  # a writer inside the slot: odd generation
    view.lens[s[2]] = 1 << 40  # a length no slot holds
    keys = ids.copy()
    keys[3] = 999  # id 999 asks for slot 3: another id's value
    out, body, bad = _read(view, s, keys)
    assert out.tolist() == [BAD, TORN, BAD, BAD, 3072, 3072]
    assert bad == 3
    want = slots.unpack(slots.pack(view.gens[s], 0, s))[0]
    want[5] += 2  # the index entry of a value since freed and rewritten
    out, _, _ = _read(view, s, ids, want=want)
    assert out[4] == 3072 and out[5] == TORN
    out, _, _ = _read(view, np.array([-1, 8, 4]), ids[[0, 0, 4]])  # slots outside the class
    assert out.tolist() == [TORN, TORN, 3072]


def test_split_copy_without_checksums_and_seqlock_free():
    values = [bytes([k]) * (100 + k) for k in range(4)]
    view = _class(4, 256)
    s = _store(view, None, values, trailers=False)
    head = np.zeros((4, 16), np.uint8)
    body = np.zeros((4, 103 - 16), np.uint8)
    out = np.zeros(4, np.int64)
    assert gather(view, np.arange(4), s, head, body, out) == 0
    assert out.tolist() == [100, 101, 102, 103]
    for k, v in enumerate(values):
        assert head[k].tobytes() + body[k, : len(v) - 16].tobytes() == v
    slots.free(view, s[:1])
    out, _, _ = _read(view, s[:1], want=np.zeros(1, np.int64))
    assert out[0] == TORN  # freed: the old generation no longer matches
    narrow = np.zeros((1, 50), np.uint8)
    got = np.zeros(1, np.int64)
    gather(view, np.array([0]), s[1:2], narrow[:, :0], narrow, got)
    assert got[0] == BAD  # longer than the caller's row: not copied past it
    with pytest.raises(ValueError):
        gather(view, np.arange(1), s[:1], head[:1], body[:1], out[:1], keys=np.zeros(1, np.int64))
