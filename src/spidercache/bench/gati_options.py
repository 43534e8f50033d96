"""The options of the GATI benchmark (``bench.gati.run``) that its front-end's commands share.

Light on purpose (no torch at import): ``spidercache gati ...`` declares its
flags with these texts and checks its values with these functions when the
command line is read, before any model is loaded.
"""

from __future__ import annotations

from typing import Optional

from ..errors import UserError

DATASET_HELP = (
    "fashion-mnist (default), or a path: a CIFAR-10/100 python folder, an ImageFolder tree "
    "(root/<class>/<image>, or root/train + root/test), a .npz (train.npz,test.npz)"
)
HOLDOUT_HELP = "share of the validation split held out to check the chosen thresholds (0: bound where chosen)"
FOLDS_HELP = "lower the budget by the threshold search's optimism, estimated over this many folds (0: off)"
PRECISION_HELP = "training arithmetic: fp32, or bf16 (autocast; ~2x faster on CPUs with AVX512-BF16)"
HELP = {
    "model": "network to train, or ignored with --checkpoint",
    "dataset": DATASET_HELP,
    "image_size": "input size of the trained base (images resized)",
    "stem": "ResNets: cifar or imagenet",
    "checkpoint": "benchmark this trained checkpoint instead of training",
    "epochs": "most epochs (with --converge) or exactly this many",
    "converge": "train the base until validation accuracy stops improving",
    "precision": PRECISION_HELP,
    "epsilons": "accuracy-loss budgets in points",
    "requests": "timed requests at batch 1 (batch B: requests/B)",
    "test_samples": "report on the first N test images (default: all)",
    "variants": "explore only these head variants (comma-separated)",
    "retime": "re-measure unit and head latencies of reused heads before composing",
    "z": "standard errors added to the validation loss (overfitting guard)",
    "holdout": HOLDOUT_HELP,
    "folds": FOLDS_HELP,
    "threads": "torch threads while timing",
    "train_threads": "torch threads while training",
    "work_dir": "trained models and heads are kept here",
    "rebuild": "retrain even if a matching model/heads exist in --work-dir",
    "rpc": "also measure gRPC overhead on loopback",
    "serving": "batch-1 against batched serving under concurrent clients",
    "clients": "concurrent clients for the serving figure",
    "window_ms": "batching window of the batched server",
    "stream": "online retraining on a shifting stream",
    "stream_requests": "requests in the shifting stream",
    "stream_rate": "arrivals per second in the stream (0: back to back)",
    "gpu": "also time the same compositions on a CUDA GPU (error when none)",
    "train_device": "cpu or cuda for training (default: cuda if any)",
    "plot": "PNG: latency against accuracy",
}
OPTION_NAMES = {"model": "--network"}


def parse_variants(text: Optional[str]) -> Optional[tuple[str, ...]]:
    """The head variants named in ``text`` (comma-separated), None for all."""
    from ..inference.heads import VARIANTS

    if not text:
        return None
    chosen = tuple(v.strip() for v in text.split(",") if v.strip())
    unknown = [v for v in chosen if v not in VARIANTS]
    if unknown or not chosen:
        raise UserError(f"unknown head variant in {text!r}; choose from {', '.join(VARIANTS)}")
    return chosen


def check_device(name: str) -> str:
    """``name`` if it is cpu, or cuda with a GPU torch can see (else a UserError)."""
    if name not in ("cpu", "cuda"):
        raise UserError(f"--device must be cpu or cuda, got {name!r}")
    import torch

    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA GPU is visible to torch on this machine")
    return name
