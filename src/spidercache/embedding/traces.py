"""Embedding-row access traces: generate, read, sample.

A key is one embedding row of one table packed into an int64 as
``table << 40 | row`` (so 2**40 rows per table and 2**23 tables fit).

``generate`` builds synthetic DLRM traces the way FBGEMM's benchmark does
(per-table Zipf over rows, a pooling factor per bag, a batch of bags per table,
several tables) and adds what real traces have and i.i.d. Zipf lacks:
popularity that drifts (the rank -> row map changes over time), bursts (a few
cold rows of one table become hot for some batches) and rows used only once.

Readers: Meta's dlrm_datasets ``.pt`` files (a tuple ``indices, offsets,
lengths``), RecMG's text traces (one index per line) and ``.npy``.
``sample`` is RecMG's trace preparation: keep a share of the batches, shuffled,
written in shards of 5 M indices.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..checks import at_least, between
from ..errors import UserError
from ..sim.traces import load_trace, trace_format

TABLE_SHIFT = 40
ROW_MASK = (1 << TABLE_SHIFT) - 1


def pack_keys(tables: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Keys ``table << 40 | row``."""
    return (np.asarray(tables, np.int64) << TABLE_SHIFT) | np.asarray(rows, np.int64)


def table_of(keys: np.ndarray) -> np.ndarray:
    # unsigned: a libCacheSim id >= 2^63 (held as a negative int64) is in a table >= 2^23, not < 0
    return (np.asarray(keys, np.int64).view(np.uint64) >> np.uint64(TABLE_SHIFT)).astype(np.int64)


def row_of(keys: np.ndarray) -> np.ndarray:
    return np.asarray(keys, np.int64) & ROW_MASK


# --------------------------------------------------------------- generating
@dataclass
class GenConfig:
    """Knobs of the synthetic trace. Defaults: drift, bursts and one-off rows on,
    about 2 M lookups, which a cache model trains on in a minute or two here."""

    tables: int = 8
    rows: int = 50_000  # rows per table
    alpha: float = 1.05  # Zipf exponent per table (FBGEMM's --alpha)
    batch_size: int = 128  # bags per table per batch
    pooling: float = 10.0  # mean lookups per bag (Poisson, at least 1)
    batches: int = 160
    drift: float = 0.001  # per batch, probability that a popularity rank moves to another row
    burst_rate: float = 0.05  # expected bursts started per batch
    burst_rows: int = 64  # rows in one burst
    burst_batches: int = 10  # how long a burst lasts
    burst_share: float = 0.1  # share of its table's lookups a burst takes
    one_off: float = 0.05  # share of lookups that go to rows never used again
    seed: int = 0

    def check(self) -> None:
        between(1, (1 << 23) - 1, tables=self.tables)
        between(1, 1 << 39, rows=self.rows)
        at_least(1, batch_size=self.batch_size, batches=self.batches)
        if not np.isfinite(self.alpha) or self.alpha < 0:
            raise UserError(f"alpha must be a finite number >= 0, got {self.alpha}")
        at_least(1, pooling=self.pooling)
        for name in ("pooling", "burst_rate"):  # inf passes the >= checks but not numpy's Poisson draw
            if not np.isfinite(getattr(self, name)):
                raise UserError(
                    f"{name.replace('_', '-')} must be a finite number, got {getattr(self, name)}"
                )
        for name in ("drift", "one_off", "burst_share"):
            v = getattr(self, name)
            if not 0 <= v < 1:
                raise UserError(f"{name.replace('_', '-')} must be in [0, 1), got {v}")
        at_least(0, burst_rate=self.burst_rate)
        at_least(1, burst_rows=self.burst_rows, burst_batches=self.burst_batches)
        at_least(0, seed=self.seed)  # numpy's generators take no negative seed


def generate(cfg: GenConfig | None = None, progress=None, observer=None) -> np.ndarray:
    """A synthetic DLRM trace: batch-major, then table-major, then bag order (as in dlrm_datasets).

    ``observer(batch, table, start, n, perm, bursts)``, if given, is called for every
    (batch, table) block before its ``n`` lookups (trace positions ``start ..
    start + n``) are drawn, with the table's rank -> row map and the rows of its
    active bursts in the order they are applied: the generator's ground truth,
    which ``oracle.py`` turns into true per-row probabilities. It draws nothing
    from the random stream, so the trace is the same with or without it."""
    cfg = cfg or GenConfig()
    cfg.check()
    rng = np.random.default_rng(cfg.seed)
    ranks = np.arange(1, cfg.rows + 1, dtype=np.float64)
    cdf = np.cumsum(ranks ** (-cfg.alpha))
    cdf /= cdf[-1]
    cdf[-1] = 1.0
    # Each table has its own rank -> row map; drift swaps entries of it.
    perms = [rng.permutation(cfg.rows).astype(np.int64) for _ in range(cfg.tables)]
    n_swaps = rng.binomial(cfg.rows, cfg.drift / 2, size=(cfg.batches, cfg.tables)) if cfg.drift else None
    next_fresh = np.full(cfg.tables, cfg.rows, np.int64)  # one-off rows live above ``rows``
    bursts: list[tuple[int, np.ndarray, int]] = []  # (table, rows, last batch)
    out: list[np.ndarray] = []
    start = 0
    for b in range(cfg.batches):
        for _ in range(rng.poisson(cfg.burst_rate)):
            t = int(rng.integers(cfg.tables))
            bursts.append((t, rng.integers(0, cfg.rows, cfg.burst_rows), b + cfg.burst_batches))
        bursts = [x for x in bursts if x[2] > b]
        for t in range(cfg.tables):
            if n_swaps is not None and n_swaps[b, t]:
                k = int(n_swaps[b, t])
                a, c = rng.integers(0, cfg.rows, k), rng.integers(0, cfg.rows, k)
                perms[t][a], perms[t][c] = perms[t][c].copy(), perms[t][a].copy()
            lengths = np.maximum(rng.poisson(cfg.pooling, cfg.batch_size), 1)
            n = int(lengths.sum())
            if observer is not None:
                observer(b, t, start, n, perms[t], [brows for bt, brows, _ in bursts if bt == t])
            start += n
            rows = perms[t][np.searchsorted(cdf, rng.random(n), side="right").clip(max=cfg.rows - 1)]
            for bt, brows, _ in bursts:
                if bt == t:
                    m = rng.random(n) < cfg.burst_share
                    rows[m] = brows[rng.integers(0, brows.size, int(m.sum()))]
            if cfg.one_off:
                m = rng.random(n) < cfg.one_off
                k = int(m.sum())
                rows[m] = next_fresh[t] + np.arange(k)
                next_fresh[t] += k
            out.append(pack_keys(np.full(n, t), rows))
        if progress is not None:
            progress(b + 1, cfg.batches)
    return np.concatenate(out)


# ------------------------------------------------------------------ reading
def read_dlrm_pt(path: str | os.PathLike) -> np.ndarray:
    """Keys of a Meta dlrm_datasets ``.pt`` file: ``(indices, offsets, lengths)``.

    ``lengths`` is ``[tables, batch]``; ``indices`` holds, table after table, the
    rows of every bag of that table; ``offsets`` has ``tables * batch + 1`` entries.
    """
    import torch

    path = Path(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a file it cannot read
        raise UserError(
            f"cannot read {path} as a torch file: {str(exc).strip().splitlines()[0][:120]}"
        ) from None
    expected = "a tuple (indices, offsets, lengths) of integer tensors as in Meta's dlrm_datasets"
    if (
        not isinstance(obj, (tuple, list))
        or len(obj) != 3
        or not all(isinstance(x, torch.Tensor) for x in obj)
    ):
        raise UserError(f"{path} is not a dlrm_datasets trace: expected {expected}")
    indices, offsets, lengths = obj
    if any(x.dtype.is_floating_point or x.dtype == torch.bool for x in obj):
        raise UserError(f"{path} is not a dlrm_datasets trace: expected {expected}")
    if indices.dim() != 1 or offsets.dim() != 1 or lengths.dim() != 2:
        raise UserError(
            f"{path} is not a dlrm_datasets trace: indices must be 1-D, offsets 1-D and lengths 2-D "
            f"[tables, batch]; got {tuple(indices.shape)}, {tuple(offsets.shape)}, {tuple(lengths.shape)}"
        )
    tables, batch = lengths.shape
    lengths_np = lengths.numpy().astype(np.int64)
    if lengths_np.size and int(lengths_np.min()) < 0:  # a bag cannot hold fewer than 0 rows
        raise UserError(
            f"{path} is not a dlrm_datasets trace: lengths must be >= 0, got {int(lengths_np.min())}"
        )
    if int(lengths_np.sum()) != indices.numel() or offsets.numel() != tables * batch + 1:
        raise UserError(
            f"{path} is not a dlrm_datasets trace: lengths sum to {int(lengths_np.sum())} and offsets "
            f"have {offsets.numel()} entries, but indices have {indices.numel()} (expected "
            f"{tables * batch + 1} offsets)"
        )
    idx = indices.numpy().astype(np.int64)
    if idx.size and idx.min() < 0:
        raise UserError(f"{path}: negative row index {int(idx.min())}")
    per_table = lengths_np.sum(axis=1)
    table_ids = np.repeat(np.arange(tables, dtype=np.int64), per_table)
    return pack_keys(table_ids, idx)


def read_embedding_trace(
    path: str | os.PathLike, column: str | int | None = None, fmt: str | None = None
) -> np.ndarray:
    """A trace of keys from ``.pt`` (dlrm_datasets) or any format ``sim`` reads (``column`` and
    ``fmt`` as in ``sim.traces.load_trace``). Signed keys must be >= 0; unsigned ids (oracleGeneral,
    vscsi, a uint64 ``.npy``) may be >= 2^63 and keep their bits."""
    path = Path(path)
    if fmt is None and path.suffix.lower() in {".pt", ".pth"}:
        if column is not None:
            raise UserError(f"--column applies to CSV traces only, not to a .pt: {path}")
        if not path.exists():
            raise UserError(f"trace file not found: {path}")
        keys = read_dlrm_pt(path)
        if keys.size == 0:
            raise UserError(f"trace is empty: {path}")
    else:
        keys = load_trace(path, column, None, fmt).keys
        if keys.size and int(keys.min()) < 0 and _unsigned_ids(path, fmt, column):
            return keys  # ids >= 2^63, not negative numbers: remapped densely like any other
    check_keys(keys, str(path))
    return keys


def _unsigned_ids(path: Path, fmt: str | None, column) -> bool:
    """Whether the file holds unsigned 64-bit ids (a negative int64 key is then an id >= 2^63)."""
    kind = trace_format(path, fmt, column)
    if kind == "npy":
        return np.load(path, mmap_mode="r", allow_pickle=False).dtype.kind == "u"
    # text and CSV hold signed numbers as written; lis keys are block numbers built as int64
    return kind in ("oracleGeneral", "vscsi")


def check_keys(keys: np.ndarray, where: str = "trace") -> None:
    if keys.size and int(keys.min()) < 0:
        pos = int(np.argmax(keys < 0))
        raise UserError(f"{where}: negative key {int(keys[pos])} at position {pos}; keys must be >= 0")


# ------------------------------------------------------------------ sampling
@dataclass
class SampleResult:
    batches_total: int
    batches_kept: int
    indices: int
    shards: list[str]

    def as_dict(self) -> dict:
        return asdict(self)


def sample(
    keys: np.ndarray,
    out_dir: str | os.PathLike,
    rate: float = 0.8,
    batch_lookups: int = 4096,
    shard_size: int = 5_000_000,
    seed: int = 0,
) -> SampleResult:
    """RecMG's preparation: keep ``rate`` of the batches (runs of ``batch_lookups``
    lookups), in shuffled order, written as ``sample_<i>.npy`` shards of ``shard_size``."""
    if not 0 < rate <= 1:
        raise UserError(f"rate must be in (0, 1], got {rate}")
    at_least(1, batch_lookups=batch_lookups, shard_size=shard_size)
    at_least(0, seed=seed)  # numpy's generators take no negative seed
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"output path exists and is not a folder: {out}")
    out.mkdir(parents=True, exist_ok=True)
    n_batches = -(-keys.size // batch_lookups)
    keep = max(1, int(round(rate * n_batches)))
    rng = np.random.default_rng(seed)
    chosen = rng.permutation(n_batches)[:keep]  # shuffled order, as RecMG writes them
    starts = chosen * batch_lookups
    pieces = [keys[s : s + batch_lookups] for s in starts]
    kept = np.concatenate(pieces)
    shards = []
    for i, s in enumerate(range(0, kept.size, shard_size)):
        p = out / f"sample_{i}.npy"
        np.save(p, kept[s : s + shard_size])
        shards.append(str(p))
    return SampleResult(n_batches, keep, int(kept.size), shards)
