"""Kernels of CachedEmbeddingBag: distinct rows of a batch, per-row gradients, the fused SGD step."""

from __future__ import annotations

import numba as nb
import numpy as np
import torch
import torch.nn.functional as F


@nb.njit(cache=True)
def _unique_inverse(idx, stamp):
    """Distinct rows in order of first appearance and each index's position among them.
    ``stamp`` (one int64 per row, all -1) is left all -1 again."""
    uniq = np.empty(idx.size, np.int64)
    inv = np.empty(idx.size, np.int64)
    u = 0
    for i in range(idx.size):
        r = idx[i]
        s = stamp[r]
        if s < 0:
            s = u
            stamp[r] = u
            uniq[u] = r
            u += 1
        inv[i] = s
    for j in range(u):
        stamp[uniq[j]] = -1
    return uniq[:u], inv


@nb.njit(cache=True)
def _row_grads(starts, end, inv, grad_out, psw, use_psw, mean, row_grad):
    """row_grad[inv[i]] += grad_out[bag of i] (/ bag length, * psw[i]): the sum / mean
    embedding_bag backward, reduced per distinct row in one pass (no per-lookup matrix)."""
    n_bags, dim = grad_out.shape
    for b in range(n_bags):
        lo = starts[b]
        hi = starts[b + 1] if b + 1 < n_bags else end
        if hi <= lo:
            continue
        scale = np.float32(1.0 / (hi - lo)) if mean else np.float32(1.0)
        for i in range(lo, hi):
            w = scale * psw[i] if use_psw else scale
            r = inv[i]
            for d in range(dim):
                row_grad[r, d] += grad_out[b, d] * w


@nb.njit(cache=True)
def _sgd_fast(slots, row_grad, fast, lr):
    """fast[slot] -= lr * grad for the distinct rows that are in the fast tier."""
    dim = row_grad.shape[1]
    for j in range(slots.size):
        s = slots[j]
        if s >= 0:
            for d in range(dim):
                fast[s, d] -= lr * row_grad[j, d]


class _FusedSGDBag(torch.autograd.Function):
    """``F.embedding_bag`` over the gathered rows whose backward applies the SGD step to
    the tiers directly (sum / mean): per-lookup gradients are the bag's output gradient
    (scaled by 1 / bag length for mean, by the per-sample weight if given), summed per
    distinct row with one ``index_add_``. Nothing is returned for ``rows``."""

    @staticmethod
    def forward(ctx, rows, bag, uniq, inv, offsets, psw):
        ctx.bag, ctx.uniq = bag, uniq
        ctx.save_for_backward(inv, offsets, psw)
        return F.embedding_bag(
            inv,
            rows,
            offsets,
            mode=bag.mode,
            per_sample_weights=psw,
            include_last_offset=bag.include_last_offset,
        )

    @staticmethod
    def backward(ctx, grad_out):
        inv, offsets, psw = ctx.saved_tensors
        ctx.bag._fused_backward(ctx.uniq, inv, offsets, psw, grad_out.contiguous())
        return None, None, None, None, None, None
