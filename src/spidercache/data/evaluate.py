"""Test accuracy of a training run (``data.train``), with unreadable test samples skipped.

The test split is read as the training samples are: a sample that cannot be
read or decoded (``BadSample``) is left out with a warning that names it and
counted, or, with ``strict``, ends the run in a ``UserError``. The reads run
in DataLoader workers; a bad sample travels back as its message and is
reported here, in the main process, so that ``strict`` is one clean line and
not a worker's traceback.
"""

from __future__ import annotations

import warnings

import torch

from ..errors import UserError
from .cached import BadSample
from .transforms import Normalize


class _Skipping(torch.utils.data.Dataset):
    """``dataset``'s items, or the message of a ``BadSample`` (a str) in place of one."""

    def __init__(self, dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        try:
            return self.dataset[i]
        except BadSample as exc:
            return str(exc)


def _collate(items: list) -> tuple:
    """(collated good items or None, messages of the bad ones)."""
    good = [it for it in items if not isinstance(it, str)]
    bad = [it for it in items if isinstance(it, str)]
    return (torch.utils.data.default_collate(good) if good else None), bad


def evaluate(
    model, test_ds, norm: Normalize, device, workers: int, strict: bool = False, batch: int = 1000
) -> tuple[float, int]:
    """(accuracy in % of the samples read, samples skipped); NaN when none was read."""
    if len(test_ds) == 0:
        return float("nan"), 0
    model.eval()
    correct = seen = skipped = 0
    dl = torch.utils.data.DataLoader(
        _Skipping(test_ds), batch_size=batch, num_workers=workers, collate_fn=_collate
    )
    try:
        with torch.no_grad():
            for xy, bad in dl:
                for why in bad:
                    if strict:
                        raise UserError(why)
                    warnings.warn(f"skipped: {why}", stacklevel=2)
                skipped += len(bad)
                if xy is None:
                    continue
                x, y = xy
                out = model(norm(x).to(device))
                correct += int((out.argmax(1).cpu() == y).sum())
                seen += len(y)
    finally:
        model.train()
    return (100.0 * correct / seen if seen else float("nan")), skipped
