import numpy as np
import pytest
import torch

from spidercache.embedding.traces import (
    GenConfig,
    generate,
    read_dlrm_pt,
    read_embedding_trace,
    row_of,
    sample,
    table_of,
)
from spidercache.errors import UserError


def small(**kw):
    return GenConfig(tables=3, rows=1000, batch_size=8, batches=20, **kw)


def test_generate_is_seeded_and_packs_table_and_row():
    a, b = generate(small(seed=1)), generate(small(seed=1))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, generate(small(seed=2)))
    assert set(np.unique(table_of(a))) == {0, 1, 2}
    regular = row_of(a) < 1000
    assert regular.mean() > 0.9  # one-off rows (5 %) live above ``rows``
    once = row_of(a)[~regular]
    assert np.unique(a[~regular]).size == once.size  # every one-off row is used exactly once


def test_iid_zipf_has_no_one_offs():
    keys = generate(small(drift=0.0, burst_rate=0.0, one_off=0.0))
    assert row_of(keys).max() < 1000


def test_dlrm_pt_reader(tmp_path):
    lengths = torch.tensor([[2, 1], [0, 3]])
    indices = torch.tensor([4, 5, 6, 7, 8, 9])
    offsets = torch.tensor([0, 2, 3, 3, 6])
    p = tmp_path / "day.pt"
    torch.save((indices, offsets, lengths), p)
    keys = read_dlrm_pt(p)
    assert list(table_of(keys)) == [0, 0, 0, 1, 1, 1]
    assert list(row_of(keys)) == [4, 5, 6, 7, 8, 9]


@pytest.mark.parametrize(
    "obj",
    [
        {"a": torch.zeros(3)},
        (torch.zeros(3), torch.zeros(2)),
        (torch.arange(4), torch.arange(3), torch.ones(2, 2, dtype=torch.int64)),
        (torch.arange(4), torch.zeros(5, dtype=torch.long), torch.tensor([[-1, -1], [3, 3]])),
        (torch.arange(4), torch.zeros(5, dtype=torch.long), torch.tensor([[3, -1], [1, 1]])),
    ],
)
def test_dlrm_pt_of_another_structure(tmp_path, obj):
    p = tmp_path / "bad.pt"
    torch.save(obj, p)
    with pytest.raises(UserError, match="dlrm_datasets"):
        read_dlrm_pt(p)


def test_negative_keys_are_refused(tmp_path):
    p = tmp_path / "neg.npy"
    np.save(p, np.array([1, 2, -3]))
    with pytest.raises(UserError, match="negative key"):
        read_embedding_trace(p)
    t = tmp_path / "t.txt"
    t.write_text("1\n2\n3\n")
    assert list(read_embedding_trace(t)) == [1, 2, 3]


def test_sample_keeps_share_of_batches_in_shards(tmp_path):
    keys = np.arange(10_000, dtype=np.int64)
    res = sample(keys, tmp_path / "s", rate=0.8, batch_lookups=100, shard_size=3000, seed=0)
    assert res.batches_total == 100 and res.batches_kept == 80 and res.indices == 8000
    parts = [np.load(p) for p in res.shards]
    assert [p.size for p in parts] == [3000, 3000, 2000]
    kept = np.concatenate(parts)
    assert np.unique(kept).size == 8000
    starts = kept[::100]
    assert np.all(starts % 100 == 0) and not np.all(np.diff(starts) > 0)  # whole batches, shuffled


def test_csv_and_format_read_as_sim_reads_them(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("ts,key\n1,5\n2,7\n3,5\n")
    with pytest.raises(UserError, match="--column"):
        read_embedding_trace(p)
    assert list(read_embedding_trace(p, "key")) == [5, 7, 5]
    d = tmp_path / "t.dat"
    d.write_text(p.read_text())
    assert list(read_embedding_trace(d, 1, "csv")) == [5, 7, 5]


def test_unsigned_ids_at_or_above_2_63_are_read(tmp_path):
    from spidercache.sim.formats import write_oracle_general

    ids = np.array([2**64 - 1, 5, 2**64 - 1, 2**63 + 5], np.uint64)
    og = tmp_path / "x.oracleGeneral.bin"
    write_oracle_general(og, ids, np.ones(4, np.int64))
    keys = read_embedding_trace(og)
    assert np.array_equal(keys.view(np.uint64), ids)
    assert list(table_of(keys)) == [2**24 - 1, 0, 2**24 - 1, 2**23]  # the unsigned key >> 40
    u = tmp_path / "u.npy"
    np.save(u, ids)
    assert np.array_equal(read_embedding_trace(u).view(np.uint64), ids)


@pytest.mark.parametrize("field", ["pooling", "burst_rate"])
def test_infinite_pooling_or_burst_rate_is_refused(field):
    with pytest.raises(UserError, match=field.replace("_", "-") + " must be a finite number"):
        generate(small(**{field: float("inf")}))
