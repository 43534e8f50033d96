"""How much of a GATI speedup do the heads allow, whatever the validation split? (docs/bench/gati.md)

Runs the threshold search twice on a `gati bench` work directory: as the benchmark does (on the
validation images, z = 1, no optimism correction) and on the test images' own outputs with z = 0,
that is with thresholds fitted to the very images they are measured on. The second is not a result
(it reads the test labels); it is a ceiling: the expected speedup no choice of thresholds over
these heads can beat at that accuracy loss.

    python scripts/gati_threshold_ceiling.py WORK_DIR TEST_LABELS.npz   # an .npz with the test labels as y
"""

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from spidercache.inference.compose import compose
from spidercache.inference.explore import load_exploration


def main(work_dir: str, labels: str) -> None:
    caches = next(Path(work_dir).glob("caches-*"))
    ex = load_exploration(caches)
    out = torch.load(caches / "test_outputs.pt", weights_only=False)
    heads = [
        replace(h, val_conf=np.asarray(out["conf"][j]), val_pred=np.asarray(out["pred"][j]))
        for j, h in enumerate(ex.heads)
    ]
    y = np.load(labels)["y"]
    on_test = replace(ex, heads=heads, val_labels=y, val_base_pred=np.asarray(out["base_pred"]))
    print(f"{caches}: base test accuracy {100 * np.mean(on_test.val_base_pred == y):.2f} %")
    for eps in (0.5, 1.0, 2.0):
        val = compose(ex, epsilon=eps, z=1.0, folds=0)
        test = compose(on_test, epsilon=eps, z=0.0, folds=0)
        print(
            f"  eps {eps}: expected {val.base_expected_ms / val.expected_ms:.2f}x chosen on validation,"
            f" {test.base_expected_ms / test.expected_ms:.2f}x fitted on the test split (ceiling)"
        )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
