"""Session semantics in one process: budget, spill, eviction policy, persist, pipeline check."""

from __future__ import annotations

import numpy as np
import pytest

from spidercache.server.manager import SessionManager
from spidercache.server.requests import validate_put
from spidercache.server.sessions import PipelineMismatch, RequestError, ServerConfig, SessionNotFound


def _put(session, ids, values):
    ids = np.asarray(ids, np.int64)
    lengths = np.array([len(v) for v in values], np.int64)
    return session.put(ids, lengths, np.frombuffer(b"".join(values), np.uint8))


def _get(session, ids):
    lengths, rows = session.get(np.asarray(ids, np.int64))
    out, r = [], 0
    for n in lengths.tolist():
        if n < 0:
            out.append(None)
        else:
            out.append(rows[r, :n].tobytes())
            r += 1
    return out


@pytest.fixture
def manager(tmp_path):
    made = []

    def make(**kw):
        kw.setdefault("memory_bytes", 1 << 20)
        kw.setdefault("shm", False)
        m = SessionManager(ServerConfig(**kw))
        made.append(m)
        return m

    yield make
    for m in made:
        m.close()


VALUES = [bytes([i]) * 3072 for i in range(40)]  # 40 x 3 KB > a 64 KB budget


def test_full_memory_without_spill_refuses_and_keeps_serving(manager):
    s = manager().new(memory_bytes=64 << 10)
    s.attach("p", "c")
    stored, spilled, rejected, status = _put(s, range(40), VALUES)
    assert stored > 0 and spilled == 0 and rejected == 40 - stored
    assert status.sum() == stored
    got = _get(s, range(40))
    assert got[:stored] == VALUES[:stored] and got[stored:] == [None] * (40 - stored)
    assert s.stats()["rejected"] == rejected


def test_full_memory_spills_and_reads_back(manager, tmp_path):
    s = manager(spill_dir=str(tmp_path / "spill")).new(memory_bytes=64 << 10, spill=True)
    s.attach("p", "c")
    stored, spilled, rejected, status = _put(s, range(40), VALUES)
    assert rejected == 0 and spilled == 40 - stored and status.all()
    assert _get(s, range(40)) == VALUES
    assert s.stats()["spilled_bytes"] == spilled * 3072
    assert s.stats()["items_spilled"] == spilled


def test_spilled_figures_drop_deleted_and_rewritten_values(manager, tmp_path):
    s = manager(spill_dir=str(tmp_path / "spill")).new(memory_bytes=64 << 10, spill=True)
    s.attach("p", "c")
    stored, spilled, _, _ = _put(s, range(40), VALUES)
    on_disk = list(range(stored, 40))
    s.delete(np.array(on_disk[:3], np.int64))  # deleted: no longer spilled
    assert s.stats()["items_spilled"] == spilled - 3
    assert s.stats()["spilled_bytes"] == (spilled - 3) * 3072
    _put(s, [on_disk[3]], [b"short"])  # rewritten small: fits in the room the deletes left
    assert s.stats()["spilled_bytes"] == (spilled - 4) * 3072
    assert _get(s, [on_disk[3]]) == [b"short"]
    s.delete(np.arange(40))
    assert s.stats()["items_spilled"] == 0 and s.stats()["spilled_bytes"] == 0
    assert _put(s, range(5), VALUES[:5])[0] == 5  # memory is free again: no spill
    assert s.stats()["spilled_bytes"] == 0


def test_lru_policy_evicts_instead_of_refusing(manager):
    s = manager(policy="lru").new(memory_bytes=64 << 10)
    s.attach("p", "c")
    for i in range(40):
        _put(s, [i], [VALUES[i]])
    got = _get(s, range(40))
    assert got[-1] == VALUES[-1]  # the newest is resident
    assert got[0] is None  # the oldest was evicted
    assert all(g is None or g == VALUES[i] for i, g in enumerate(got))
    assert s.stats()["evicted"] > 0 and s.stats()["rejected"] == 0


@pytest.mark.parametrize("policy", ["fifo", "twoq", "s3fifo", "lru"])
def test_reads_never_evict_and_never_return_freed_slots(manager, policy):
    # FIFO-like policies do not move an id on a hit, so a batch that writes an old id again
    # may evict it later in the same batch: it must not stay in memory behind the policy's back
    s = manager(policy=policy).new(memory_bytes=256 << 10)
    s.attach("p", "c")
    rng = np.random.default_rng(0)
    truth = {}
    for r in range(30):
        ids = rng.integers(0, 400, 40)
        values = [bytes([r + 1]) * int(n) for n in rng.integers(10, 6000, ids.size)]
        truth.update(zip(ids.tolist(), values))
        _put(s, ids, values)
    held = set(np.flatnonzero(s.arena.entries(np.arange(400)) >= 0).tolist())
    assert held <= set(s.policy.resident_ids().tolist())
    evicted = s.stats()["evicted"]
    ids = sorted(truth)
    got = _get(s, ids)
    assert s.stats()["evicted"] == evicted  # a read only records hits
    assert sum(g is not None for g in got) == len(held) > 0
    assert all(g is None or g == truth[i] for i, g in zip(ids, got))


def test_persist_reloads_after_restart(manager, tmp_path):
    spill = str(tmp_path / "spill")
    m1 = manager(spill_dir=spill, persist=True)
    s = m1.new()
    s.attach("pipe", "c")
    _put(s, range(10), VALUES[:10])
    s.seal(10)
    sid = s.id
    m1.close()  # as after a crash: shared memory gone, disk stays
    m2 = manager(spill_dir=spill, persist=True)
    s2 = m2.get(sid)
    assert s2.pipeline == "pipe" and s2.sealed_items == 10
    assert s2.arena.items == 10 and s2.stats()["items_spilled"] == 0  # back in memory, not read from disk
    assert _get(s2, range(12)) == VALUES[:10] + [None, None]


def test_persist_reload_fills_memory_up_to_the_budget(manager, tmp_path):
    spill = str(tmp_path / "spill")
    m1 = manager(spill_dir=spill, persist=True)
    s = m1.new(memory_bytes=64 << 10, spill=True)
    s.attach("pipe", "c")
    stored, spilled, _, _ = _put(s, range(40), VALUES)
    assert spilled > 0
    sid = s.id
    m1.close()
    m2 = manager(spill_dir=spill, persist=True)
    s2 = m2.get(sid)
    assert s2.arena.items == stored and s2.arena.used_bytes <= 64 << 10
    assert s2.stats()["items_spilled"] == spilled and s2.stats()["spilled_bytes"] == spilled * 3072
    assert _get(s2, range(40)) == VALUES


def test_without_persist_a_restart_starts_empty(manager, tmp_path):
    spill = str(tmp_path / "spill")
    m1 = manager(spill_dir=spill)
    s = m1.new(memory_bytes=8 << 10, spill=True)
    s.attach("p", "c")
    _put(s, range(10), VALUES[:10])
    m1.close()
    m2 = manager(spill_dir=spill)
    with pytest.raises(SessionNotFound):
        m2.get(s.id)
    assert not any(p.name.startswith("session-") for p in (tmp_path / "spill").iterdir())


def test_pipeline_check_and_unknown_session(manager):
    m = manager()
    s = m.new()
    s.attach("a", "c1")
    s.attach("a", "c2")  # identical pipeline: shares
    with pytest.raises(PipelineMismatch, match=f"^session {s.id} holds a cache for a different pipeline$"):
        s.attach("b", "c3")
    m.destroy(s.id)
    with pytest.raises(SessionNotFound):
        m.get(s.id)


def test_session_ids_are_random_32_bit(manager):
    m = manager(memory_bytes=16 << 20)  # 20 sessions' own overhead fits
    ids = {m.new().id for _ in range(20)}
    assert len(ids) == 20 and all(0 < i < 1 << 32 for i in ids)


def test_last_write_in_a_batch_wins(manager):
    s = manager().new()
    s.attach("p", "c")
    _put(s, [1, 2, 1], [b"old", b"two", b"new"])
    assert _get(s, [1, 2]) == [b"new", b"two"]


@pytest.mark.parametrize(
    "ids,lengths,data",
    [
        (b"\x01", b"", b""),  # not int64
        (np.array([1], "<i8").tobytes(), b"", b""),  # no lengths
        (np.array([1], "<i8").tobytes(), np.array([5], "<i8").tobytes(), b"abc"),  # lengths != data
        (np.array([-1], "<i8").tobytes(), np.array([1], "<i8").tobytes(), b"a"),  # negative id
        (np.array([1], "<i8").tobytes(), np.array([-3], "<i8").tobytes(), b""),  # negative length
    ],
)
def test_malformed_puts_are_refused(ids, lengths, data):
    with pytest.raises(RequestError):
        validate_put(ids, lengths, data)
