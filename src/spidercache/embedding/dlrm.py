"""A DLRM-style example model (dense MLP + several embedding bags + dot interaction) and click data.

``DLRM(table_rows, bag=...)`` builds one bag per table with ``bag(rows, dim)``; the default is
``nn.EmbeddingBag(sparse=True)``, and ``cached_bag(cache_share, optimizer)`` gives
``CachedEmbeddingBag`` with that share of each table cached. ``compare`` trains the two from
the same seeds on the same synthetic clicks and reports both accuracies.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .bag import CachedEmbeddingBag


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


class DLRM(nn.Module):
    """Bottom MLP on dense features, one pooled bag per table, pairwise dot products, top MLP -> logit."""

    def __init__(
        self, table_rows: list[int], dim: int = 16, dense_in: int = 8, hidden: int = 64, bag=None
    ) -> None:
        super().__init__()
        make = bag or (lambda rows, d: nn.EmbeddingBag(rows, d, mode="sum", sparse=True))
        self.bottom = _mlp([dense_in, hidden, dim])
        self.bags = nn.ModuleList([make(r, dim) for r in table_rows])
        t = len(table_rows) + 1
        self.top = _mlp([dim + t * (t - 1) // 2, hidden, 1])
        self._iu = torch.triu_indices(t, t, offset=1)

    def forward(self, dense: torch.Tensor, sparse: list[torch.Tensor]) -> torch.Tensor:
        x = self.bottom(dense)
        feats = torch.stack([x] + [bag(idx) for bag, idx in zip(self.bags, sparse)], dim=1)
        z = torch.bmm(feats, feats.transpose(1, 2))[:, self._iu[0], self._iu[1]]
        return self.top(torch.cat([x, z], dim=1)).squeeze(1)


def cached_bag(cache_share: float = 0.1, optimizer: str = "sgd", policy: str = "lru"):
    """A ``bag`` factory for ``DLRM``: CachedEmbeddingBag with ``cache_share`` of each table cached."""

    def make(rows: int, dim: int) -> CachedEmbeddingBag:
        return CachedEmbeddingBag(
            rows,
            dim,
            mode="sum",
            cache_rows=max(1, int(rows * cache_share)),
            weight=nn.EmbeddingBag(rows, dim).weight.detach(),
            optimizer=optimizer,
            policy=policy,
        )

    return make


def synthetic_clicks(
    n: int, table_rows: list[int], dense_in: int = 8, pooling: int = 4, seed: int = 0, sample_seed: int = 0
):
    """(dense [n, dense_in], sparse [n, pooling] per table, labels [n]): each row has a hidden effect
    (drawn from ``seed``), rows are Zipf-popular, a label is a Bernoulli draw of
    sigmoid(2 (mean effect + dense . w)); the samples are drawn from ``sample_seed``."""
    world = np.random.default_rng(seed)
    effects = [world.normal(0, 1.0, r) for r in table_rows]
    w = world.normal(0, 0.5, dense_in)
    rng = np.random.default_rng([seed, sample_seed])
    dense = rng.normal(0, 1, (n, dense_in)).astype(np.float32)
    sparse, score = [], dense @ w
    for r, eff in zip(table_rows, effects):
        idx = (rng.zipf(1.2, (n, pooling)) - 1) % r
        sparse.append(torch.from_numpy(idx.astype(np.int64)))
        score = score + eff[idx].mean(1)
    labels = (rng.random(n) < 1 / (1 + np.exp(-2 * score))).astype(np.float32)
    return torch.from_numpy(dense), sparse, torch.from_numpy(labels)


def train_eval(
    model: DLRM, data, test, optimizer: str = "sgd", lr: float = 0.05, batch: int = 256, epochs: int = 2
) -> float:
    """Train with ``optimizer`` on ``data``; accuracy on ``test``. Cached bags follow the optimizer's lr."""
    make = {"sgd": torch.optim.SGD, "adagrad": torch.optim.Adagrad}[optimizer]
    opt = make(model.parameters(), lr=lr)
    for bag in model.bags:
        if isinstance(bag, CachedEmbeddingBag):
            bag.follow(opt)
    dense, sparse, y = data
    loss_fn = nn.BCEWithLogitsLoss()
    for _ in range(epochs):
        for s in range(0, y.numel(), batch):
            out = model(dense[s : s + batch], [x[s : s + batch] for x in sparse])
            loss = loss_fn(out, y[s : s + batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        pred = model(test[0], test[1]) > 0
    model.train()
    return float((pred == (test[2] > 0.5)).float().mean())


def compare(
    table_rows: list[int] | None = None,
    n: int = 40_000,
    optimizer: str = "sgd",
    seed: int = 0,
    cache_share: float = 0.1,
    lr: float = 0.05,
) -> dict:
    """Accuracy of the same DLRM (same seeds, same data) with nn.EmbeddingBag and with CachedEmbeddingBag."""
    table_rows = table_rows or [5_000, 20_000, 2_000, 50_000]
    data = synthetic_clicks(n, table_rows, seed=seed, sample_seed=0)
    test = synthetic_clicks(n // 4, table_rows, seed=seed, sample_seed=1)
    out = {"optimizer": optimizer, "majority": float(max(test[2].mean(), 1 - test[2].mean()))}
    for name, bag in (("plain", None), ("cached", cached_bag(cache_share, optimizer))):
        torch.manual_seed(seed)
        model = DLRM(table_rows, bag=bag)
        out[name] = train_eval(model, data, test, optimizer, lr)
    return out
