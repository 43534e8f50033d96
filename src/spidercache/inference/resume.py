"""Per-epoch training state, so that an interrupted ``gati train-base`` or ``gati bench`` goes on.

Training a ResNet to convergence on a CPU takes hours, longer than a
shell, a session or a spot machine may last. After every epoch
``train_base_model`` writes the whole state of the run (weights, optimizer
and schedule, both random generators, the plateau rule's history and best
weights) to a ``.partial.pt`` file beside the checkpoint; the same command
run again loads it and continues with the next epoch, and on the CPU the
result is bit-identical to an uninterrupted run (``tests/inference/test_resume.py``;
on a GPU, the CUDA generator is not saved, so a network with dropout may differ).

A state carries a key: the network, the data (a digest of every image and
label), and every setting that changes the result. A state written for
another run is ignored, with one line saying so, never half-reused. The
file is written to a temporary name and renamed, so a kill while writing
leaves the previous epoch's state intact.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..paths import save_atomic


def partial_path(checkpoint: str | Path) -> Path:
    """Where the per-epoch state of the run that will write ``checkpoint`` lives."""
    p = Path(checkpoint)
    return p.with_name(p.name + ".partial.pt")


def run_key(images: np.ndarray, labels: np.ndarray, **settings) -> str:
    """A digest of the training data and every setting that changes the result."""
    h = hashlib.sha256()
    h.update(repr(sorted(settings.items())).encode())
    h.update(repr((images.shape, str(images.dtype))).encode())
    h.update(np.ascontiguousarray(images).tobytes())
    h.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
    return h.hexdigest()


def load_state(path: Path | None, key: str, say: Callable[[str], None]) -> dict | None:
    """The state saved at ``path`` for the run ``key``, or None (no file, another run, unreadable)."""
    if path is None or not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: start over, say why
        say(f"ignoring {path}: not a training state ({type(exc).__name__})")
        return None
    if not isinstance(state, dict) or state.get("key") != key:
        say(f"ignoring {path}: written by a run with other data or settings; starting over")
        return None
    say(f"resuming from {path} after epoch {state['epoch']}")
    return state


def rng_state(rng: np.random.Generator) -> dict:
    """Both random generators a training run draws from."""
    return {"numpy": rng.bit_generator.state, "torch": torch.get_rng_state()}


def restore_rng(rng: np.random.Generator, saved: dict) -> None:
    rng.bit_generator.state = saved["numpy"]
    torch.set_rng_state(saved["torch"])


class EpochState:
    """A training run's state, saved after every epoch and restored at the start.

    ``stop`` is the plateau rule; its attributes are saved as they are.
    ``path`` None: nothing is saved or restored.
    """

    def __init__(self, path, say, model, opt, sched, rng, stop) -> None:
        self.path = None if path is None else Path(path)
        self.say, self.model, self.opt, self.sched, self.rng, self.stop = say, model, opt, sched, rng, stop
        self.key, self.epoch, self.step, self.seconds, self.done, self.resumed_after = "", 0, 0, 0.0, False, 0

    def restore(self, data: tuple, **settings) -> None:
        """Continue the run saved at ``path`` if it was for these images, labels and settings.

        ``data``: training images and labels, validation images and labels (None without).
        """
        if self.path is None:
            return
        images, labels, val_images, val_labels = data
        val = None if val_images is None else run_key(val_images, val_labels)
        self.key = run_key(images, labels, val=val, **settings)
        state = load_state(self.path, self.key, self.say)
        if state is None:
            return
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        if self.sched is not None:
            self.sched.load_state_dict(state["sched"])
        restore_rng(self.rng, state["rng"])
        vars(self.stop).update(state["plateau"])
        self.epoch = self.resumed_after = state["epoch"]
        self.step, self.seconds, self.done = state["step"], state["seconds"], state["done"]

    def save(self, epoch: int, step: int, seconds: float, done: bool) -> None:
        if self.path is None:
            return
        state = {"key": self.key, "epoch": epoch, "step": step, "seconds": seconds, "done": done}
        state.update(model=self.model.state_dict(), opt=self.opt.state_dict(), rng=rng_state(self.rng))
        state.update(
            sched=None if self.sched is None else self.sched.state_dict(), plateau=dict(vars(self.stop))
        )
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            save_atomic(state, self.path)
        except OSError as exc:  # a full disk or a bad folder costs the resume, never the training
            self.say(
                f"cannot save the training state to {self.path} ({exc.strerror or exc}); going on without it"
            )
            self.path = None
