"""``bench epochs``: whole training epochs (small CNN) over a JPEG ImageFolder read through http://.

``run`` writes (or reuses) the JPEG tree of ``bench.loader`` (files of
``file_px`` pixels, decoded and resized to ``size`` for the model), serves it
with ``http.server`` in its own process, and runs ``spidercache.data.train``
from the URL once per case (``none``; ``minio`` at working set 1.0; ``spider``
at 0.1), returning the per-epoch rows of each run; ``summary`` gives the mean
epoch seconds after the first and the ratios to ``none``. By default the
real read is the only cost; ``storage_latency_ms`` adds that delay to every
read (as the ``train`` option does), to stand for storage slower than loopback; ``threads``
pins torch's threads (0: ``ComputeThreads`` decides, as ``spidercache train`` does). (The accuracy study
over seeds and policies is ``spidercache bench train``; its aggregation lives
with the command.)
"""

from __future__ import annotations

import os

from ..checks import at_least
from .loader import http_server, jpeg_folder, summary
from .runner import Rows, check_choices

CASES = {"none": ("none", 0.1), "ws1": ("minio", 1.0), "spider": ("spider", 0.1), "lru": ("lru", 0.1)}


def run(
    root: str = ".spidercache/bench-jpeg",
    n: int = 20000,
    file_px: int = 64,
    size: int = 64,
    epochs: int = 3,
    workers: int = 2,
    batch_size: int = 256,
    cases: str = "none,ws1,spider",
    seed: int = 0,
    test_samples: int = 500,
    storage_latency_ms: float = 0.0,
    threads: int = 0,
) -> list[dict]:
    from ..data.train import TrainConfig, train

    at_least(1, flag=True, n=n, file_px=file_px, size=size, epochs=epochs, batch_size=batch_size)
    at_least(
        0,
        flag=True,
        workers=workers,
        test_samples=test_samples,
        storage_latency_ms=storage_latency_ms,
        threads=threads,
    )
    check_choices("--cases", cases, list(CASES))

    jpeg_folder(root, n, file_px)
    rows: list[dict] = []
    with http_server(root) as url:
        for case in cases.split(","):
            policy, ws = CASES[case]
            cfg = TrainConfig(
                train_paths=[f"{url}/train"],
                image_size=size,
                epochs=epochs,
                policy=policy,
                working_set_size=ws,
                workers=workers,
                batch_size=batch_size,
                seed=seed,
                storage_latency_ms=storage_latency_ms,
                threads=threads,
                test_samples=test_samples,
                progress=False,
            )
            for r in train(cfg).rows:
                rows.append({"bench": "train", "case": case, **r, "load": os.getloadavg()[0]})
    return Rows(rows, {"summary": summary(rows)})  # the ratios, printed under the table


__all__ = ["run", "summary"]
