"""Does the optimism correction keep the loss within the budget on images the search never saw?

Uses only the validation split of a `gati bench` work folder (the test split is not read): it
is cut into halves A and B (3 seeds); thresholds are chosen on A by the plain search
(``folds=0``) and by the corrected one (``folds=4``, estimated inside A), and each choice's
loss is measured on B. The figures are in docs/bench/gati.md.

    python scripts/gati_optimism_check.py /tmp/gati6/r34full-work
"""

import glob
import sys

import numpy as np

from spidercache.inference.compose import assess, compose, split_of
from spidercache.inference.explore import load_exploration


def loss_on(ex, comp, idx) -> float:
    part = split_of(ex, idx)
    conf, pred = [h.val_conf for h in part.heads], [h.val_pred for h in part.heads]
    base, gati, _ = assess(ex, comp, conf, pred, part.val_labels, part.val_base_pred)
    return base - gati


def main(work: str) -> None:
    ex = load_exploration(glob.glob(work.rstrip("/") + "/caches-*")[0])
    n = len(ex.val_labels)
    print("| eps | plain: loss on B (3 splits) | speedup (val) | corrected: optimism | loss on B | speedup |")
    for eps in (0.5, 1.0, 2.0):
        rows = []
        for seed in range(3):
            order = np.random.default_rng(seed).permutation(n)
            a, b = order[: n // 2], order[n // 2 :]
            part = split_of(ex, a)
            plain = compose(part, epsilon=eps, folds=0)
            fixed = compose(part, epsilon=eps, folds=4, seed=seed)
            rows.append(
                (
                    loss_on(ex, plain, b),
                    plain.base_expected_ms / plain.expected_ms,
                    fixed.optimism,
                    loss_on(ex, fixed, b),
                    fixed.base_expected_ms / fixed.expected_ms,
                )
            )
        r = np.array(rows)
        cells = [
            " / ".join(f"{x:+.2f}" for x in r[:, 0]) + f" (mean {r[:, 0].mean():+.2f})",
            f"{r[:, 1].mean():.1f}x",
            " / ".join(f"{x:.2f}" for x in r[:, 2]),
            " / ".join(f"{x:+.2f}" for x in r[:, 3]) + f" (mean {r[:, 3].mean():+.2f})",
            f"{r[:, 4].mean():.1f}x",
        ]
        print(f"| {eps:g} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
