"""The report of the SpiderCache study (`spidercache bench spider --mode report`).

Merges study rows (JSON lines) per (policy, working set): seeds, hits,
substitutions, served averaged over the epochs after the first, served
relative to LRU, final test accuracy over seeds, epoch seconds, and for the
spider policies the index upkeep and its share; a markdown table and a plot.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict


def load(paths: list[str]) -> list[dict]:
    rows = []
    for p in paths:
        with open(p) as f:
            rows += [json.loads(line) for line in f if line.strip()]
    return rows


def summarize(rows: list[dict]) -> list[dict]:
    runs: dict[tuple, dict[int, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        runs[(r["policy"], r["working_set"])][r["seed"]].append(r)
    out = []
    for (policy, ws), by_seed in sorted(runs.items()):
        per = defaultdict(list)
        for seed_rows in by_seed.values():
            seed_rows.sort(key=lambda r: r["epoch"])
            later = seed_rows[1:] or seed_rows
            per["hit"].append(statistics.mean(r["hit_ratio"] for r in later))
            per["sub"].append(statistics.mean(r["substitution_ratio"] for r in later))
            per["sec"].append(statistics.mean(r["epoch_seconds"] for r in later))
            per["acc"].append(seed_rows[-1]["test_accuracy"])
            per["epochs"].append(len(seed_rows))
            if "upkeep_seconds" in seed_rows[0]:
                per["upkeep"].append(statistics.mean(r["upkeep_seconds"] for r in later))
                per["upkeep_share"].append(
                    statistics.mean(r["upkeep_seconds"] / r["epoch_seconds"] for r in later)
                )
                per["ratio"].append(later[-1].get("split_ratio", float("nan")))
        acc = per["acc"]
        row = {
            "policy": policy,
            "working_set": ws,
            "seeds": len(acc),
            "epochs": max(per["epochs"]),
            "hit": statistics.mean(per["hit"]),
            "sub": statistics.mean(per["sub"]),
            "served": statistics.mean(per["hit"]) + statistics.mean(per["sub"]),
            "acc": statistics.mean(acc),
            "acc_std": statistics.stdev(acc) if len(acc) > 1 else 0.0,
            "acc_half_range": (max(acc) - min(acc)) / 2,
            "accs": acc,
            "epoch_seconds": statistics.mean(per["sec"]),
        }
        if per["upkeep"]:
            row.update(
                upkeep_seconds=statistics.mean(per["upkeep"]),
                upkeep_share=statistics.mean(per["upkeep_share"]),
                final_ratio=statistics.mean(per["ratio"]),
            )
        out.append(row)
    lru = {r["working_set"]: r["served"] for r in out if r["policy"] == "lru"}
    for r in out:
        base = lru.get(r["working_set"])
        r["served_vs_lru"] = r["served"] / base if base else float("nan")
    return out


def report_table(summary: list[dict]) -> str:
    head = (
        "| policy | ws | seeds | hits | subst. | served | × LRU | final acc % (mean ± sd; per seed) "
        "| epoch s | upkeep s (share) | split |\n|---|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for r in summary:
        up = f"{r['upkeep_seconds']:.2f} ({100 * r['upkeep_share']:.1f}%)" if "upkeep_seconds" in r else ""
        split = f"{r['final_ratio']:.2f}" if "final_ratio" in r else ""
        accs = ", ".join(f"{a:.2f}" for a in r["accs"])
        lines.append(
            f"| {r['policy']} | {r['working_set']:g} | {r['seeds']} | {r['hit']:.3f} | {r['sub']:.3f} | "
            f"{r['served']:.3f} | {r['served_vs_lru']:.1f} | {r['acc']:.2f} ± {r['acc_std']:.2f} ({accs}) | "
            f"{r['epoch_seconds']:.1f} | {up} | {split} |"
        )
    return "\n".join(lines)


def draw(summary: list[dict], rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(16, 4.5))
    names = sorted({r["policy"] for r in summary})
    cmap = plt.get_cmap("tab20")
    color = {p: cmap(i % 20) for i, p in enumerate(names)}  # one colour per policy in all panels
    for policy in names:
        pts = sorted((r for r in summary if r["policy"] == policy), key=lambda r: r["working_set"])
        ws = [r["working_set"] for r in pts]
        a1.plot(ws, [r["served"] for r in pts], "o-", label=f"{policy}", color=color[policy])
        a1.plot(ws, [r["hit"] for r in pts], "x:", color=color[policy])
    a1.set_xlabel("working set"), a1.set_ylabel("share of requests (o-: hits+subst., x: true hits)")
    a1.legend(fontsize=7)
    # the working set with the most policies (the main comparison)
    counts: dict[float, int] = defaultdict(int)
    for r in summary:
        counts[r["working_set"]] += 1
    ws0 = max(counts, key=lambda w: (counts[w], -w))
    at = [r for r in summary if r["working_set"] == ws0]
    for r in at:
        a2.errorbar(r["served"], r["acc"], yerr=r["acc_std"], fmt="o", capsize=3, color=color[r["policy"]])
        a2.annotate(
            r["policy"], (r["served"], r["acc"]), fontsize=7, xytext=(3, 3), textcoords="offset points"
        )
    (
        a2.set_xlabel(f"served from cache at working set {ws0:g}"),
        a2.set_ylabel("final test accuracy %, mean ± sd"),
    )
    # Per-epoch curves only for the policies run with the most seeds: a mean over
    # another set of seeds starts from another epoch-0 accuracy and would mislead.
    most = max(r["seeds"] for r in at)
    full = {r["policy"] for r in at if r["seeds"] == most}
    per_epoch = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r["working_set"] == ws0 and r["policy"] in full:
            per_epoch[r["policy"]][r["epoch"]].append(r["test_accuracy"])
    for policy, by_ep in sorted(per_epoch.items()):
        eps = sorted(by_ep)
        a3.plot(eps, [statistics.mean(by_ep[e]) for e in eps], "o-", label=policy, color=color[policy])
    a3.set_xlabel("epoch"), a3.set_ylabel(f"test accuracy % (mean of {most} seeds), ws {ws0:g}")
    a3.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
