"""CachedEmbeddingBag: ``nn.EmbeddingBag`` whose hot rows live in a fast tier.

The full table lives in a slow tier, a numpy array in host memory or an
``np.memmap`` file; a fast tier holds ``cache_rows`` rows (or ``cache_mb``
megabytes) as a torch tensor, on the GPU when ``device`` is a CUDA device. Any
engine policy (``make_policy``: lru, lfu, arc, s3fifo, learned, ...) decides which
rows are in the fast tier, through the engine's ``Cache`` (its plan of each batch:
hits, admissions, evictions, and its statistics); rows it evicts are written back
to the slow tier.

forward: the batch's distinct rows are gathered (from whichever tier holds them)
into a small matrix and ``F.embedding_bag`` runs over it with remapped indices,
so each bag reduces the same values in the same order as ``nn.EmbeddingBag``:
the output is equal, bit for bit.

backward: like FBGEMM's table-batched embeddings, the optimiser step is fused
into backward (rows in a slow tier cannot be torch Parameters): each distinct
row is updated in whichever tier holds it at backward time, by ``optimizer``:

* ``"sgd"``: ``row -= lr * grad``, equal to ``nn.EmbeddingBag(sparse=True)`` + ``torch.optim.SGD``;
* ``"adagrad"``: row-wise Adagrad (FBGEMM's ROWWISE_ADAGRAD): one accumulator per row,
  ``s += mean(grad**2)``, ``row -= lr * grad / (sqrt(s) + eps)``;
* ``"adam"``: partial row-wise Adam (FBGEMM's PARTIAL_ROWWISE_ADAM): a first moment per
  element, a second moment per row, bias correction by the row's own step count (lazy Adam:
  a row's moments only move when the row is looked up).

The table is not a ``Parameter`` (it can be larger than memory); ``model.parameters()``
holds only ``lr_anchor``, an empty Parameter. Learning rate: ``bag.follow(optimizer)``
makes every step use the ``lr`` of the optimizer's param group that holds ``lr_anchor``
(so ``model.parameters()`` passed to the optimizer and any ``lr_scheduler`` on it drive the
table too); without ``follow`` the fixed ``lr`` given at construction is used.

``state_dict()`` holds the whole table (``weight``, fast-tier rows flushed first) and the
optimizer's row state (``optim.*``); ``load_state_dict`` empties the fast tier and restores
both, so checkpoint -> resume continues bit for bit.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..engine.cache import Cache, CacheStats
from ..engine.policies import make_policy, policy_names
from ..engine.policies.registry import TRAINING, canonical_name
from ..errors import UserError
from ._bagkernels import _FusedSGDBag, _row_grads, _sgd_fast, _unique_inverse
from ._bagstate import RowOptimizerMixin

OPTIMIZERS = ("sgd", "adagrad", "adam")


class CachedEmbeddingBag(RowOptimizerMixin, nn.Module):
    """``nn.EmbeddingBag(num_embeddings, embedding_dim, mode)`` over a fast and a slow tier.

    Args:
        cache_rows / cache_mb: size of the fast tier (one of them; default 10 % of the rows).
        policy: engine policy name, or a callable ``(capacity, n_ids) -> Policy``.
        slow: ``None`` (host memory) or a file path for an ``np.memmap`` table
            (an existing file of the right size is opened, not overwritten).
        lr: learning rate of the fused step in backward, until ``follow(optimizer)`` is called.
        optimizer: ``"sgd"``, ``"adagrad"`` (row-wise) or ``"adam"`` (partial row-wise); see the module doc.
        eps, betas: of Adagrad / Adam.
        weight: initial table (``num_embeddings x embedding_dim``); default N(0, 1) like torch.
        device: where the fast tier lives (``"cuda"`` puts it in GPU memory).
    """

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        mode: str = "mean",
        *,
        cache_rows: int | None = None,
        cache_mb: float | None = None,
        policy="lru",
        slow: str | os.PathLike | None = None,
        lr: float = 0.01,
        weight=None,
        include_last_offset: bool = False,
        device: str | torch.device = "cpu",
        policy_kwargs: dict | None = None,
        optimizer: str = "sgd",
        eps: float = 1e-8,
        betas: tuple[float, float] = (0.9, 0.999),
    ) -> None:
        super().__init__()
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")
        self.optimizer, self.eps, self.betas = optimizer, float(eps), (float(betas[0]), float(betas[1]))
        self.lr_anchor = nn.Parameter(torch.zeros(0))
        self._followed = None
        if mode not in ("sum", "mean", "max"):
            raise ValueError(f"mode must be sum, mean or max, got {mode!r}")
        if num_embeddings < 1 or embedding_dim < 1:
            raise ValueError("num_embeddings and embedding_dim must be at least 1")
        self.num_embeddings, self.embedding_dim, self.mode = int(num_embeddings), int(embedding_dim), mode
        self.include_last_offset = include_last_offset
        self.lr = float(lr)
        self.device = torch.device(device)
        if cache_rows is not None and cache_mb is not None:
            raise ValueError("give cache_rows or cache_mb, not both")
        if cache_mb is not None:
            cache_rows = int(cache_mb * 2**20 // (4 * embedding_dim))
        if cache_rows is None:
            cache_rows = max(1, num_embeddings // 10)
        if cache_rows < 1:
            raise ValueError("the fast tier must hold at least one row")
        self.cache_rows = min(int(cache_rows), self.num_embeddings)
        self.slow = self._make_slow(slow, weight)
        self.fast = torch.zeros(self.cache_rows, embedding_dim, dtype=torch.float32, device=self.device)
        self.slot_of = np.full(self.num_embeddings, -1, np.int64)  # row -> fast slot, -1 when slow
        self.row_of = np.full(self.cache_rows, -1, np.int64)  # slot -> row
        self._reset_free()
        self._stamp = np.full(self.num_embeddings, -1, np.int64)
        kw = dict(policy_kwargs or {})
        if isinstance(policy, str) and canonical_name(policy).startswith(TRAINING):
            raise UserError(
                f"policy {policy!r} picks training samples and stand-ins, not table rows; a cached bag "
                f"takes one of {', '.join(policy_names('engine'))}"
            )
        self.policy = (
            make_policy(policy, self.cache_rows, self.num_embeddings, **kw)
            if isinstance(policy, str)
            else policy(self.cache_rows, self.num_embeddings)
        )
        self.cache = Cache(self.policy, dense_ids=True)  # plans each batch, counts it (stats())
        self.write_backs = 0
        self.optim_state = self._new_optim_state()

    # -------------------------------------------------------------- tiers
    def _make_slow(self, slow, weight) -> np.ndarray:
        shape = (self.num_embeddings, self.embedding_dim)
        if weight is not None:
            w = weight.detach().cpu().numpy() if isinstance(weight, torch.Tensor) else np.asarray(weight)
            if w.shape != shape:
                raise ValueError(f"weight must have shape {shape}, got {w.shape}")
        if slow is None:
            return (
                np.array(w, np.float32) if weight is not None else torch.randn(*shape).numpy()
            )  # N(0, 1), as nn.EmbeddingBag initialises
        path = Path(slow)
        if path.exists() and weight is None:
            if path.stat().st_size != 4 * shape[0] * shape[1]:
                raise ValueError(f"{path} has {path.stat().st_size} bytes, not a {shape} float32 table")
            return np.memmap(path, np.float32, "r+", shape=shape)
        mm = np.memmap(path, np.float32, "w+", shape=shape)
        step = 1 << 16
        for s in range(0, shape[0], step):
            mm[s : s + step] = (
                w[s : s + step]
                if weight is not None
                else torch.randn(min(step, shape[0] - s), shape[1]).numpy()
            )
        return mm

    def _write_back(self, rows: np.ndarray) -> None:
        slots = self.slot_of[rows]
        had = slots >= 0
        if not had.any():
            return
        rows, slots = rows[had], slots[had]
        self._put_slow(rows, self.fast.index_select(0, torch.from_numpy(slots).to(self.device)))
        self.slot_of[rows] = -1
        self.row_of[slots] = -1
        self._free[self._n_free : self._n_free + slots.size] = slots
        self._n_free += slots.size
        self.write_backs += rows.size

    # torch's index_select / index_copy_ on the slow tier (an array or a memmap, shared, not copied)
    # move rows 2-3x faster than numpy's fancy indexing (6,600 rows of 64 floats: 76 vs 132 us
    # to gather, 150 vs 395 us to scatter).
    def _slow_rows(self, rows: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(self.slow).index_select(0, torch.from_numpy(rows)).to(self.device)

    def _put_slow(self, rows: np.ndarray, values: torch.Tensor) -> None:
        torch.from_numpy(self.slow).index_copy_(0, torch.from_numpy(rows), values.cpu())

    def _reset_free(self) -> None:
        # A stack of free fast-tier slots as an array: a Python list popped once per loaded row
        # was 15 % of a training step (cProfile, 10 % cached, ~6,600 loads a step).
        self._free = np.arange(self.cache_rows - 1, -1, -1, dtype=np.int64)
        self._n_free = self.cache_rows

    def _load(self, rows: np.ndarray) -> None:
        n = self._n_free
        slots = self._free[n - rows.size : n][::-1].copy()  # the order a list's pop() gave: slot 0 first
        self._n_free = n - rows.size
        self.fast.index_copy_(0, torch.from_numpy(slots).to(self.device), self._slow_rows(rows))
        self.slot_of[rows] = slots
        self.row_of[slots] = rows

    def __getstate__(self) -> dict:
        # the engine Cache pickles without its policy and planner (worker processes only run
        # plans); a copy of this module (deepcopy, torch.save of the module) needs them
        return {**self.__dict__, "_cache_planner": self.cache.planner}

    def __setstate__(self, state: dict) -> None:
        planner = state.pop("_cache_planner")
        super().__setstate__(state)
        self.cache.policy, self.cache.planner = self.policy, planner

    def stats(self) -> CacheStats:
        """Row requests (distinct rows per batch), hits, admissions (loads) and evictions."""
        return self.cache.stats()

    def flush(self) -> None:
        """Write every fast-tier row back to the slow tier (they stay cached)."""
        slots = np.flatnonzero(self.row_of >= 0)
        if slots.size:
            rows = self.row_of[slots]
            self._put_slow(rows, self.fast.index_select(0, torch.from_numpy(slots).to(self.device)))
        if isinstance(self.slow, np.memmap):
            self.slow.flush()

    @property
    def weight(self) -> torch.Tensor:
        """A copy of the whole table as it stands (fast-tier rows included)."""
        self.flush()
        return torch.from_numpy(np.array(self.slow))

    # ------------------------------------------------------------ forward
    def _rows(self, uniq: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        slots = self.slot_of[uniq]
        in_fast = slots >= 0
        if in_fast.all():
            return self.fast.index_select(0, torch.from_numpy(slots).to(self.device)), slots
        out = torch.empty(uniq.size, self.embedding_dim, dtype=torch.float32, device=self.device)
        f = np.flatnonzero(in_fast)
        s = np.flatnonzero(~in_fast)
        if f.size:
            out[torch.from_numpy(f).to(self.device)] = self.fast[torch.from_numpy(slots[f]).to(self.device)]
        out[torch.from_numpy(s).to(self.device)] = self._slow_rows(uniq[s])
        return out, slots

    def forward(
        self,
        input: torch.Tensor,
        offsets: torch.Tensor | None = None,
        per_sample_weights: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if input.dim() == 2:
            if offsets is not None:
                raise ValueError("offsets must be None when input is 2-D")
            b, per_bag = input.shape
            offsets = torch.arange(0, b * per_bag, per_bag, dtype=torch.int64)
            input = input.reshape(-1)
            if per_sample_weights is not None:
                per_sample_weights = per_sample_weights.reshape(-1)
        elif input.dim() != 1 or offsets is None:
            raise ValueError("input must be 2-D (B, L), or 1-D with offsets")
        idx = input.detach().cpu().numpy().astype(np.int64, copy=False)
        if idx.size and (idx.min() < 0 or idx.max() >= self.num_embeddings):
            raise IndexError(f"index out of range for a table of {self.num_embeddings} rows")
        uniq, inv = _unique_inverse(idx, self._stamp)
        if uniq.size:
            plan = self.cache.plan(uniq)
            self.cache.record(plan)
            self._write_back(plan.evict)  # rows resident before the batch and not after it
            new = plan.served[plan.admit]
            if new.size:
                self._load(new)
        rows, _ = self._rows(uniq)
        inv_t = torch.from_numpy(inv).to(self.device)
        offsets = offsets.to(self.device)
        if not (torch.is_grad_enabled() and self.training):
            return F.embedding_bag(
                inv_t,
                rows,
                offsets,
                mode=self.mode,
                per_sample_weights=per_sample_weights,
                include_last_offset=self.include_last_offset,
            )
        if self.mode == "max" or (per_sample_weights is not None and per_sample_weights.requires_grad):
            # rare cases: let autograd build the dense row gradient, apply it in a hook
            rows.requires_grad_(True)
            rows.register_hook(lambda g, u=uniq: self._apply_grad(u, g))
            return F.embedding_bag(
                inv_t,
                rows,
                offsets,
                mode=self.mode,
                per_sample_weights=per_sample_weights,
                include_last_offset=self.include_last_offset,
            )
        # sum / mean: a fused backward that never builds autograd's dense embedding_bag
        # gradient (that kernel was 70 % of a training step); see _FusedSGDBag.
        rows.requires_grad_(True)
        return _FusedSGDBag.apply(rows, self, uniq, inv_t, offsets, per_sample_weights)

    @torch.no_grad()
    def _fused_backward(
        self,
        uniq: np.ndarray,
        inv: torch.Tensor,
        offsets: torch.Tensor,
        psw: torch.Tensor | None,
        grad_out: torch.Tensor,
    ) -> None:
        n = inv.numel()
        n_bags = grad_out.shape[0]
        end = int(offsets[-1]) if self.include_last_offset else n
        if self.device.type != "cpu":
            starts = offsets[:n_bags]
            lengths = torch.diff(starts, append=starts.new_tensor([end]))
            bag_of = torch.repeat_interleave(torch.arange(n_bags, device=grad_out.device), lengths)
            g = grad_out
            if self.mode == "mean":
                g = g / lengths.clamp(min=1).to(g.dtype).unsqueeze(1)
            g = g.index_select(0, bag_of)  # one gradient row per lookup
            if psw is not None:
                g = g * psw.reshape(-1)[:end].to(g.dtype).unsqueeze(1)
            row_grad = torch.zeros(uniq.size, self.embedding_dim, dtype=g.dtype, device=g.device)
            row_grad.index_add_(0, inv[:end], g)
            self._apply_grad(uniq, row_grad)
            return
        # CPU: numba, one pass over the lookups, then one over the distinct rows
        row_grad = np.zeros((uniq.size, self.embedding_dim), np.float32)
        w = psw.reshape(-1).to(torch.float32).numpy() if psw is not None else np.zeros(1, np.float32)
        _row_grads(
            offsets[:n_bags].numpy(),
            end,
            inv.numpy(),
            grad_out.to(torch.float32).numpy(),
            w,
            psw is not None,
            self.mode == "mean",
            row_grad,
        )
        if self.optimizer != "sgd":
            self._step_rowwise(uniq, torch.from_numpy(row_grad))
            return
        lr = self.current_lr
        slots = self.slot_of[uniq]  # where each row is now, not at forward time
        _sgd_fast(slots, row_grad, self.fast.numpy(), np.float32(lr))
        s = np.flatnonzero(slots < 0)
        if s.size:
            self.slow[uniq[s]] -= lr * row_grad[s]

    @torch.no_grad()
    def _apply_grad(self, uniq: np.ndarray, grad: torch.Tensor) -> None:
        if self.optimizer != "sgd":
            self._step_rowwise(uniq, grad)
            return
        lr = self.current_lr
        slots = self.slot_of[uniq]  # where each row is now, not at forward time
        in_fast = slots >= 0
        if in_fast.all():
            self.fast.index_add_(0, torch.from_numpy(slots).to(self.device), grad, alpha=-lr)
            return
        f = np.flatnonzero(in_fast)
        if f.size:
            self.fast.index_add_(
                0,
                torch.from_numpy(slots[f]).to(self.device),
                grad[torch.from_numpy(f).to(grad.device)],
                alpha=-lr,
            )
        s = np.flatnonzero(~in_fast)
        rows = uniq[s]
        self.slow[rows] -= lr * grad[torch.from_numpy(s).to(grad.device)].cpu().numpy()

    def extra_repr(self) -> str:
        return (
            f"{self.num_embeddings}, {self.embedding_dim}, mode={self.mode!r}, "
            f"cache_rows={self.cache_rows}, policy={self.policy.name}, "
            f"slow={'memmap' if isinstance(self.slow, np.memmap) else 'memory'}, optimizer={self.optimizer}, "
            f"lr={self.current_lr}"
        )
