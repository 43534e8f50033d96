"""The cache model and the prefetch model (PyTorch).

RecMG uses LSTM sequence-to-sequence models. We use a small MLP over the cheap
history features of ``features.py`` instead, for two reasons measured here: the
policy must score >= 1 M requests/s batched on a CPU, which an LSTM over a
window of past keys per access cannot do on two cores, and the features already
carry the history an LSTM would have to learn to summarise (recency, frequency,
reuse-gap history, decayed popularity, table, position in batch).

* ``CacheModel``: P(OPT keeps this row until its next use), trained with binary
  cross-entropy on ``optgen`` labels.
* ``PrefetchModel``: P(a candidate key is requested in the next window); the set
  of candidates above 0.5 is the predicted set. Trained with a set loss with a
  real gradient: soft Dice (1 - soft F1 between the predicted and the true set)
  plus BCE; RecMG's Chamfer loss went through ``argmax`` and had none.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numba as nb
import numpy as np
import torch
from torch import nn

from ..checks import at_least, positive
from ..engine.capacity import capacity_for
from ..errors import UserError
from .features import FEATURE_NAMES, N_FEATURES

MAX_DISTANCE = 64.0  # in units of the capacity: farther (or never) reads as this
MAX_LOG_DISTANCE = float(np.log1p(MAX_DISTANCE))
_KINDS = {int: "a whole number", float: "a number", str: "a string", list: "a list (of names or sizes)"}


@nb.njit(cache=True, fastmath=True)
def _mlp2(x, w1, b1, w2, b2, w3, b3, sigmoid_first):
    # fused two-hidden-layer MLP, one row at a time: no intermediate tensors
    n, f = x.shape
    h1n, h2n, on = w1.shape[0], w2.shape[0], w3.shape[0]
    out = np.empty((n, on), np.float32)
    h1 = np.empty(h1n, np.float32)
    h2 = np.empty(h2n, np.float32)
    for r in range(n):
        for j in range(h1n):
            a = b1[j]
            for i in range(f):
                a += w1[j, i] * x[r, i]
            h1[j] = a if a > 0 else 0.0
        for j in range(h2n):
            a = b2[j]
            for i in range(h1n):
                a += w2[j, i] * h1[i]
            h2[j] = a if a > 0 else 0.0
        for j in range(on):
            a = b3[j]
            for i in range(h2n):
                a += w3[j, i] * h2[i]
            out[r, j] = a
        if sigmoid_first:
            out[r, 0] = 1.0 / (1.0 + np.exp(-out[r, 0]))
    return out


def mlp_forward(x: np.ndarray, weights: list[np.ndarray], sigmoid_first: bool = False) -> np.ndarray:
    """Forward of an MLP given as [W1, b1, ...]; numba for two hidden layers, numpy otherwise."""
    if len(weights) == 6:
        return _mlp2(x, *weights, sigmoid_first)
    h = x
    for i in range(0, len(weights), 2):
        h = h @ weights[i].T + weights[i + 1]
        if i + 2 < len(weights):
            h = np.maximum(h, 0)
    h = np.ascontiguousarray(h, np.float32)
    if sigmoid_first:
        h[:, 0] = 1 / (1 + np.exp(-h[:, 0]))
    return h


@dataclass
class ModelConfig:
    """Everything that fixes a model's shape and its training (written as config.json)."""

    model: str = "cache"  # "cache" or "prefetch"
    features: list[str] = field(default_factory=lambda: list(FEATURE_NAMES))
    hidden_size: int = 32
    num_layers: int = 2
    learning_rate: float = 3e-3
    batch_size: int = 4096
    steps: int = 1500
    checkpoint_every: int = 100
    seed: int = 0
    cache_sizes: list[float] = field(default_factory=lambda: [0.05, 0.1, 0.2])
    batch_lookups: int = 4096  # the trace's batch, for the position-in-batch feature
    window: float = 0.25  # prefetch: next window, in units of the cache capacity
    history: float = 1.0  # prefetch: candidate keys seen within this many capacities
    validation_share: float = 0.1

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise UserError(f"unknown model config keys: {', '.join(sorted(unknown))}")
        return cls(**d)

    def check(self) -> None:
        """Refuse a value of the wrong type or range (a config JSON is typed by hand), naming its key."""
        defaults = ModelConfig()
        for name in self.__dataclass_fields__:
            value, default = getattr(self, name), getattr(defaults, name)
            # exact types: a bool is an int to Python but never a count; a whole number is a float
            allowed = (int, float) if type(default) is float else (type(default),)
            items = (str,) if name == "features" else (int, float)  # what the two lists hold
            if type(value) not in allowed or (
                type(value) is list and any(type(v) not in items for v in value)
            ):
                raise UserError(f"model config {name} must be {_KINDS[type(default)]}, got {value!r}")
        if self.model not in ("cache", "prefetch"):
            raise UserError(f"unknown model kind {self.model!r}; choose cache or prefetch")
        at_least(1, hidden_size=self.hidden_size, num_layers=self.num_layers, batch_size=self.batch_size)
        at_least(
            1, steps=self.steps, checkpoint_every=self.checkpoint_every, batch_lookups=self.batch_lookups
        )
        at_least(0, seed=self.seed)  # numpy's and torch's generators take no negative seed
        positive(learning_rate=self.learning_rate, window=self.window, history=self.history)
        if not 0 <= self.validation_share < 1:  # 1 would leave nothing to train on
            raise UserError(f"validation_share must be in [0, 1), got {self.validation_share}")
        if not self.cache_sizes:
            raise UserError("cache_sizes must name at least one cache size")
        for cs in self.cache_sizes:
            try:
                capacity_for(cs, 1)
            except UserError as exc:
                raise UserError(f"cache_sizes: {exc}") from None


class _MLP(nn.Module):
    out_dim = 1

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        at_least(1, hidden_size=cfg.hidden_size, num_layers=cfg.num_layers)
        layers: list[nn.Module] = []
        width = N_FEATURES
        for _ in range(cfg.num_layers):
            layers += [nn.Linear(width, cfg.hidden_size), nn.ReLU()]
            width = cfg.hidden_size
        layers.append(nn.Linear(width, self.out_dim))
        self.net = nn.Sequential(*layers)
        self.config = cfg

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Raw outputs: ``[rows]`` for one output, ``[rows, out_dim]`` otherwise."""
        out = self.net(x)
        return out.squeeze(-1) if self.out_dim == 1 else out

    def numpy_weights(self) -> list[np.ndarray]:
        """[W1, b1, W2, b2, ...] as contiguous float32 arrays, for the numba scorer."""
        out = []
        for m in self.net:
            if isinstance(m, nn.Linear):
                out += [
                    np.ascontiguousarray(m.weight.detach().numpy(), np.float32),
                    np.ascontiguousarray(m.bias.detach().numpy(), np.float32),
                ]
        return out

    @torch.no_grad()
    def score(self, feats) -> np.ndarray:
        """The first output through a sigmoid, for a numpy batch (the fast path: numba, no torch)."""
        return mlp_forward(np.ascontiguousarray(feats, np.float32), self.numpy_weights(), sigmoid_first=True)[
            :, 0
        ]


class CacheModel(_MLP):
    """Two outputs from the access's history features, both learned from optgen:
    the logit of P(OPT keeps the row until its next use) and the predicted
    log1p(next-use distance / C) (distances beyond 64 C, and "never", read as 64 C).
    The policy evicts the row whose predicted next use is farthest, as Belady does."""

    out_dim = 2

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = self(x)
        return nn.functional.binary_cross_entropy_with_logits(out[:, 0], y[:, 0]) + nn.functional.mse_loss(
            out[:, 1], y[:, 1]
        )

    @torch.no_grad()
    def predict(self, feats) -> np.ndarray:
        """``[rows, 2]``: P(keep) and predicted next-use distance in units of C (numba path)."""
        out = mlp_forward(np.ascontiguousarray(feats, np.float32), self.numpy_weights(), sigmoid_first=True)
        out[:, 1] = np.expm1(np.clip(out[:, 1], 0.0, MAX_LOG_DISTANCE))
        return out


class PrefetchModel(_MLP):
    """P(candidate key is requested in the next window); trained per window as a set."""

    def loss(self, x: torch.Tensor, y: torch.Tensor, sets: torch.Tensor, n_sets: int) -> torch.Tensor:
        """Soft-Dice set loss averaged over windows (``sets`` = window index of each candidate) + BCE."""
        logits = self(x)
        p = torch.sigmoid(logits)
        inter = torch.zeros(n_sets).index_add_(0, sets, p * y)
        size_p = torch.zeros(n_sets).index_add_(0, sets, p)
        size_y = torch.zeros(n_sets).index_add_(0, sets, y)
        dice = 1 - (2 * inter + 1) / (size_p + size_y + 1)
        return dice.mean() + nn.functional.binary_cross_entropy_with_logits(logits, y)


def build_model(cfg: ModelConfig) -> _MLP:
    if cfg.model == "cache":
        return CacheModel(cfg)
    if cfg.model == "prefetch":
        return PrefetchModel(cfg)
    raise UserError(f"unknown model kind {cfg.model!r}; choose cache or prefetch")


def save_model(model: _MLP, path: str | Path) -> None:
    torch.save({"config": asdict(model.config), "state": model.state_dict()}, path)


def load_model(path: str | Path, expect: str | None = None) -> _MLP:
    """Load ``model.pt`` (or a training folder holding one); checks kind and shape."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.pt"
    if not path.exists():
        raise UserError(f"model file not found: {path}")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserError(f"cannot read model {path}: {str(exc).strip().splitlines()[0][:120]}") from None
    if not isinstance(blob, dict) or "config" not in blob or "state" not in blob:
        raise UserError(f"{path} is not a spidercache embedding model")
    cfg = ModelConfig.from_dict(blob["config"])
    if expect is not None and cfg.model != expect:
        raise UserError(f"{path} holds a {cfg.model} model, expected a {expect} model")
    model = build_model(cfg)
    try:
        model.load_state_dict(blob["state"])
    except RuntimeError:
        raise UserError(f"{path}: weights do not match the model configuration it declares") from None
    model.eval()
    return model
