"""Slot arena and shared-memory reader, in one process (no server)."""

from __future__ import annotations

import numpy as np
import pytest

from spidercache.server.arena import SlotArena
from spidercache.server.reader import ShmReader
from spidercache.server.shm import ABSENT, SLOT_SIZES, SPILLED, slot_class


def _put(arena, ids, values, room=1 << 30):
    ids = np.asarray(ids, np.int64)
    lengths = np.array([len(v) for v in values], np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    src = np.frombuffer(b"".join(values), np.uint8)
    return arena.put(ids, lengths, offsets, src, room)


@pytest.fixture
def arena(request):
    a = SlotArena(f"spidercache-test-{request.node.name[:40]}-{id(request)}", 8 << 20)
    yield a
    a.close()


def test_slot_classes_waste_at_most_a_quarter():
    lengths = np.arange(1, 70000)
    slots = SLOT_SIZES[slot_class(lengths)]
    assert (slots >= lengths).all()
    assert (slots[lengths >= 256] <= 1.25 * lengths[lengths >= 256] + 64).all()


def test_round_trip_mixed_sizes_through_reader(arena):
    rng = np.random.default_rng(0)
    values = [rng.integers(0, 256, n, dtype=np.uint8).tobytes() for n in (0, 1, 100, 3000, 3000, 70000)]
    admitted, _ = _put(arena, [5, 1, 9, 2000, 3, 7], values)
    assert admitted.all()
    reader = ShmReader(arena.header_name)
    ids = np.array([7, 5, 4, 2000, 1, 9, 3, 10**9])
    lengths, rows = reader.read(ids)
    expect = {5: values[0], 1: values[1], 9: values[2], 2000: values[3], 3: values[4], 7: values[5]}
    for i, k in enumerate(ids.tolist()):
        if k in expect:
            assert lengths[i] == len(expect[k])
            assert rows[i, : lengths[i]].tobytes() == expect[k]
        else:
            assert lengths[i] == ABSENT
    # the server-side gather agrees
    _, glen, grows = arena.gather(ids)
    assert (glen == lengths).all()


def test_reused_slot_is_never_read_as_the_old_item(arena):
    _put(arena, [1], [b"a" * 3000])
    reader = ShmReader(arena.header_name)
    stale_index = reader.index.copy()
    arena.mark(np.array([1]), ABSENT)  # delete: slot freed
    _put(arena, [2], [b"b" * 3000])  # same class: reuses the slot
    reader.index = stale_index  # a reader holding the old entry for id 1
    lengths, _ = reader.read(np.array([1]))
    assert lengths[0] == SPILLED  # "ask the server", never b"b" * 3000
    views = ShmReader(arena.header_name).views(np.array([2]))
    assert views.arrays[0].tobytes() == b"b" * 3000 and views.valid().all()
    arena.mark(np.array([2]), ABSENT)
    assert not views.valid().any()


def test_index_growth_is_seen_by_an_open_reader(arena):
    _put(arena, [3], [b"x" * 10])
    reader = ShmReader(arena.header_name)
    _put(arena, [50_000], [b"y" * 10])  # beyond the first index: a new segment
    lengths, rows = reader.read(np.array([3, 50_000]))
    assert lengths.tolist() == [10, 10]
    assert rows[1, :10].tobytes() == b"y" * 10


def test_budget_stops_admission_and_overwrite_keeps_newest(arena):
    admitted, _ = _put(
        arena, range(10), [bytes([i]) * 3072 for i in range(10)], room=5 * (3072 + 16) + 8 * 1024
    )  # slots + their gens/lens words + the first index block
    assert admitted.tolist() == [True] * 5 + [False] * 5
    admitted, _ = _put(arena, [0], [b"z" * 3072])
    assert admitted.all()
    _, lengths, rows = arena.gather(np.array([0]))
    assert rows[0, :3072].tobytes() == b"z" * 3072
    assert arena.items == 5


def test_freed_small_slots_are_compacted_and_values_stay_right(arena):
    n = 40_000  # 64 B slots: 2.5 MB of an 8 MB arena
    values = [i.to_bytes(4, "little") * 12 for i in range(n)]
    reader = ShmReader(arena.header_name)
    admitted, _ = _put(arena, range(n), values)
    assert admitted.all()
    view = arena.classes[int(slot_class(np.array([48]))[0])]
    before = view.gens.copy()
    keep = np.arange(0, n, 50)
    arena.mark(np.setdiff1d(np.arange(n), keep), ABSENT)  # 98% freed: more than 5% of the budget
    free = arena.free[int(slot_class(np.array([48]))[0])]
    assert free.fresh == keep.size and free.top == 0  # compacted: the kept values sit in the first slots
    lengths, rows = reader.read(np.arange(n))
    assert (lengths[keep] == 48).all() and (np.delete(lengths, keep) == ABSENT).all()
    assert all(rows[i, :48].tobytes() == values[i] for i in keep.tolist())
    assert (view.gens[: keep.size] >= before[: keep.size]).all()
    admitted, _ = _put(arena, [n + 1], [b"z" * 48])  # and the class goes on from there
    assert admitted.all() and reader.read(np.array([n + 1]))[0][0] == 48
