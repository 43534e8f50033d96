"""The optimizer and checkpoint half of CachedEmbeddingBag: row-wise Adagrad / Adam state, the
learning rate taken from the user's optimizer, and the table in ``state_dict`` (see bag.py)."""

from __future__ import annotations

import numpy as np
import torch

from ..errors import UserError


class RowOptimizerMixin:
    """Methods CachedEmbeddingBag gets from here; they use its tiers (``fast``, ``slow``, ``slot_of``)."""

    def _new_optim_state(self) -> dict[str, torch.Tensor]:
        n, d = self.num_embeddings, self.embedding_dim
        if self.optimizer == "adagrad":
            return {"sum": torch.zeros(n)}
        if self.optimizer == "adam":
            return {"exp_avg": torch.zeros(n, d), "exp_avg_sq": torch.zeros(n), "step": torch.zeros(n)}
        return {}

    def follow(self, optimizer: torch.optim.Optimizer) -> None:
        """Take the learning rate from ``optimizer``'s param group that holds ``lr_anchor`` at every step."""
        for j, group in enumerate(optimizer.param_groups):
            if any(p is self.lr_anchor for p in group["params"]):
                # the group is looked up at each step: load_state_dict replaces the group dicts
                self._followed = (optimizer, j)
                return
        raise ValueError("the optimizer does not hold this bag's lr_anchor; build it from model.parameters()")

    @property
    def current_lr(self) -> float:
        if self._followed is None:
            return self.lr
        opt, j = self._followed
        return float(opt.param_groups[j]["lr"])

    @torch.no_grad()
    def _step_rowwise(self, uniq: np.ndarray, grad: torch.Tensor) -> None:
        """Row-wise Adagrad / partial row-wise Adam on the distinct rows ``uniq`` (state on the CPU)."""
        g = grad.to(torch.float32).cpu()
        u = torch.from_numpy(uniq)
        vals, _ = self._rows(uniq)
        vals = vals.cpu()
        lr, st = self.current_lr, self.optim_state
        g2 = g.pow(2).mean(1)
        if self.optimizer == "adagrad":
            acc = st["sum"].index_select(0, u) + g2
            st["sum"].index_copy_(0, u, acc)
            new = vals - lr * g / (acc.sqrt() + self.eps).unsqueeze(1)
        else:
            b1, b2 = self.betas
            step = st["step"].index_select(0, u) + 1
            m = st["exp_avg"].index_select(0, u).mul_(b1).add_(g, alpha=1 - b1)
            v = st["exp_avg_sq"].index_select(0, u).mul_(b2).add_(g2, alpha=1 - b2)
            st["step"].index_copy_(0, u, step)
            st["exp_avg"].index_copy_(0, u, m)
            st["exp_avg_sq"].index_copy_(0, u, v)
            mhat = m / (1 - b1**step).unsqueeze(1)
            vhat = v / (1 - b2**step)
            new = vals - lr * mhat / (vhat.sqrt() + self.eps).unsqueeze(1)
        self._write_rows(uniq, new)

    def _write_rows(self, uniq: np.ndarray, new: torch.Tensor) -> None:
        slots = self.slot_of[uniq]  # where each row is now
        f = np.flatnonzero(slots >= 0)
        if f.size:
            self.fast[torch.from_numpy(slots[f]).to(self.device)] = new[torch.from_numpy(f)].to(self.device)
        s = np.flatnonzero(slots < 0)
        if s.size:
            self._put_slow(uniq[s], new[torch.from_numpy(s)])

    def _save_to_state_dict(self, destination, prefix, keep_vars) -> None:
        super()._save_to_state_dict(destination, prefix, keep_vars)
        destination[prefix + "weight"] = self.weight  # flushes the fast tier first
        for k, v in self.optim_state.items():
            destination[prefix + "optim." + k] = v.clone()

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ) -> None:
        mine = {
            k[len(prefix) :]: v
            for k, v in state_dict.items()
            if k.startswith(prefix)
            and (k[len(prefix) :] == "weight" or k[len(prefix) :].startswith("optim."))
        }
        rest = {
            k: v for k, v in state_dict.items() if not (k.startswith(prefix) and k[len(prefix) :] in mine)
        }
        super()._load_from_state_dict(
            rest, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
        if "weight" not in mine:
            if strict:
                missing_keys.append(prefix + "weight")
            return
        w = mine["weight"]
        if tuple(w.shape) != (self.num_embeddings, self.embedding_dim):
            raise UserError(
                f"state dict {prefix}weight is a {tuple(w.shape)} table; this bag is "
                f"({self.num_embeddings}, {self.embedding_dim})"
            )
        theirs = {k[len("optim.") :] for k in mine if k != "weight"}
        if theirs != set(self.optim_state):
            raise UserError(
                f"state dict {prefix}optim.* holds {sorted(theirs) or 'no'} optimizer state; this bag's "
                f"optimizer is {self.optimizer} ({sorted(self.optim_state) or 'no state'})"
            )
        self._drop_fast_tier()
        self.slow[:] = w.detach().cpu().numpy()
        for k, v in self.optim_state.items():
            v.copy_(mine["optim." + k])

    def _drop_fast_tier(self) -> None:
        """Forget every cached row without writing it back (the table is about to be replaced)."""
        self.policy.remove(self.policy.resident_ids())
        self.slot_of[:] = -1
        self.row_of[:] = -1
        self._reset_free()
