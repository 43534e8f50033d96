"""`spidercache bench spider`: the SpiderCache study and its report.

Two modes, one function (``run``):

* ``study`` (default): one stream of the study for one seed: train each policy
  at each working set exactly as ``spidercache bench train`` does (the same
  ``train()``, the same config fields) and append one JSON row per epoch to
  ``append`` (``bench train``'s row format plus, for the spider policies, the
  policy's own per-epoch figures: split ratio, index upkeep seconds). Several
  streams (one per seed) can run side by side.
* ``report``: merge the rows of ``merge`` files (JSON lines) into the summary of
  docs/bench/spider.md, per (policy, working set): seeds, hits, substitutions,
  served (their sum) averaged over the epochs after the first, served relative
  to LRU, the final test accuracy (mean, standard deviation, half-range over
  seeds), epoch seconds after the first, and for the spider policies the index
  upkeep seconds per epoch and its share of the epoch time; ``plot`` draws it.
The data path alone (no model step) is ``spidercache bench loader``.

``spidercache bench spider --seed 0 --policies spider,none --append rows.jsonl``;
``spidercache bench spider --mode report --merge rows.jsonl --plot spider.png``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Optional

from ..errors import UserError
from .runner import Rows, parse_numbers, parse_options
from .spider_report import draw, load, report_table, summarize
from .train import EPOCH_KEYS, train_logged

HELP = {
    "mode": "study (train, append rows) or report (merge row files).",
    "policies": "Comma-separated training policies.",
    "working_set": "Comma-separated working sets (fraction of the data cached).",
    "option": "key=value policy option for the spider policies (repeatable).",
    "label": "Name written as the rows' policy (for option variants).",
    "threads": "torch intra-op threads (0: leave as is).",
    "append": "study: append the per-epoch rows (JSON lines) here.",
    "merge": "report: row files (JSON lines) to merge (repeatable).",
    "plot": "report: draw the summary as a PNG here.",
}


def run(
    mode: str = "study",
    seed: int = 0,
    policies: str = "spider,none,shade,icache,lru",
    working_set: str = "0.1",
    epochs: int = 5,
    train_samples: int = 20000,
    test_samples: int = 0,
    storage_latency_ms: float = 5.0,
    workers: int = 2,
    network: str = "small",
    batch_size: int = 256,
    threads: int = 0,
    option: Optional[list[str]] = None,
    label: str = "",
    append: Optional[Path] = None,
    merge: Optional[list[Path]] = None,
    plot: Optional[Path] = None,
    log: Callable[[str], None] = print,
) -> Rows:
    """SpiderCache study stream, report over row files, or the data path alone (see the module)."""
    names = [p.strip() for p in policies.split(",") if p.strip()]
    sets = parse_numbers("--working-set", working_set)
    opts = parse_options(option or [], "--option")
    if mode == "report":
        if not merge:
            raise UserError("--mode report needs --merge FILE (rows written by the study)")
        rows = load([str(p) for p in merge])
        summary = summarize(rows)
        if plot is not None:
            draw(summary, rows, str(plot))
        return Rows(summary, {"mode": mode, "files": [str(p) for p in merge]})
    if mode != "study":
        raise UserError(
            f"--mode must be study or report, got {mode!r} (the data path alone is `bench loader`)"
        )
    config = dict(
        network=network,
        epochs=epochs,
        batch_size=batch_size,
        storage_latency_ms=storage_latency_ms,
        train_samples=train_samples,
        test_samples=test_samples,
        workers=workers,
        seed=seed,
        progress=False,
    )
    rows = study_rows(names, sets, config, threads, opts, label, log)
    if append is not None:
        with open(append, "a") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    return Rows(summarize(rows), {"mode": mode, "epochs": rows})


def table(rows: Rows):
    return report_table(rows)


# ------------------------------------------------------------------ study
def study_rows(names, sets, config: dict, threads: int, opts: dict, label: str, log) -> list[dict]:
    """Train each policy of ``names`` at each working set of ``sets`` (``config``: the rest of train's
    config); one row per epoch, with the spider policies' own per-epoch figures."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    out = []
    for ws in sets:
        for p in names:
            sink: list[dict] = []
            spider_opts = dict(opts, stats_sink=sink) if p.startswith("spider") else {}
            result = train_logged(
                dict(config, policy=p, working_set_size=ws, policy_options=spider_opts), log
            )
            per_epoch = {s["epoch"]: s for s in sink}
            for r in result.rows:
                row = {k: r[k] for k in EPOCH_KEYS}
                if label:
                    row["policy"] = label
                row.update(
                    network=config["network"],
                    train_samples=r["train_samples"],
                    storage_latency_ms=config["storage_latency_ms"],
                )
                s = per_epoch.get(r["epoch"])
                if s is not None:
                    row.update(
                        split_ratio=s["ratio"], upkeep_seconds=s["upkeep_seconds"], clusters=s["clusters"]
                    )
                out.append(row)
    return out
