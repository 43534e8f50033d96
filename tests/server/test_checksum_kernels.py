"""The batch checksum kernels (``engine/stores/checksum.py``) against xxhash itself, and what they catch."""

from __future__ import annotations

import numpy as np
import xxhash

from spidercache.engine.stores.checksum import MIX
from spidercache.server.batch import Batch, check_batch_sums, check_view, with_checksums


def _expected(value: bytes, key: int) -> bytes:
    return (xxhash.xxh3_64_intdigest(value) ^ (int(key) * MIX % 2**64)).to_bytes(8, "little")


def _rows(ids, values, width):
    rows = np.zeros((len(values), width), np.uint8)
    lengths = np.empty(len(values), np.int64)
    for i, (k, v) in enumerate(zip(ids, values)):
        stored = v + _expected(v, k)
        rows[i, : len(stored)] = np.frombuffer(stored, np.uint8)
        lengths[i] = len(stored)
    return rows, lengths


def test_writer_trailers_are_xxh3_of_the_value_mixed_with_its_id():
    rng = np.random.default_rng(1)
    ids = np.array([0, 1, 7, 2**40 + 3, 5], np.int64)
    values = [b"", b"x", rng.bytes(300), rng.bytes(5000), bytearray(b"abc")]
    payload, lengths = with_checksums(ids, values)
    assert lengths.tolist() == [len(v) + 8 for v in values]
    expected = b"".join(bytes(v) + _expected(bytes(v), int(k)) for k, v in zip(ids, values))
    assert payload.tobytes() == expected


def test_reader_strips_good_values_and_fails_flipped_short_moved_and_oversized_ones():
    rng = np.random.default_rng(2)
    ids = np.arange(10, 18, dtype=np.int64)
    values = [rng.bytes(n) for n in (3072, 3072, 100, 0, 3072, 3072, 3072, 3072)]
    rows, lengths = _rows(ids, values, 3200)
    rows[1, 1500] ^= 0x01  # one flipped bit in the value
    rows[4, 3072 + 3] ^= 0x80  # one flipped bit in the trailer
    rows[5, :3080] = rows[6, :3080]  # id 16's row holds id 17's value and trailer
    lengths[6] = 5  # shorter than a trailer
    lengths[7] = 4000  # longer than its row: must fail without reading past it
    lengths = np.concatenate([lengths, [-1, -2]])
    ids = np.concatenate([ids, [99, 98]])
    batch = Batch(lengths, rows, np.concatenate([np.arange(8), [0, 0]]))
    assert check_batch_sums(ids, batch) == 5
    assert batch.lengths.tolist() == [3072, -1, 100, 0, -1, -1, -1, -1, -1, -2]
    got = batch.to_list()
    assert got[0] == values[0] and got[2] == values[2] and got[3] == b""


def test_readonly_gathered_rows_and_single_views():
    ids = np.array([4, 5], np.int64)
    rows, lengths = _rows(ids, [b"a" * 64, b"b" * 64], 80)
    rows.flags.writeable = False  # gRPC replies are read-only buffers
    batch = Batch(lengths.copy(), rows, np.arange(2))
    assert check_batch_sums(ids, batch) == 0 and batch.to_list() == [b"a" * 64, b"b" * 64]
    assert bytes(check_view(rows[0, :72], 4)) == b"a" * 64
    assert check_view(rows[0, :72], 5) is None  # another id
    assert check_view(rows[0, :7], 4) is None  # no room for a trailer
