"""Printing and plotting the rows of ``gati bench`` (``bench.gati.run``)."""

from __future__ import annotations

import numpy as np


def plot(rows: list[dict], path: str) -> None:
    """Latency against test accuracy per batch size, like the paper's trade-off figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r["section"] == "latency" and r.get("device", "cpu") == "cpu"]
    batches = sorted({r["batch"] for r in rows})
    fig, axes = plt.subplots(1, len(batches), figsize=(5.5 * len(batches), 4.2), squeeze=False)
    for ax, b in zip(axes[0], batches):
        rs = sorted([r for r in rows if r["batch"] == b], key=lambda r: r["epsilon"])
        ax.plot([r["gati_mean_ms"] for r in rs], [r["gati_accuracy"] for r in rs], "o-", label="GATI")
        for r in rs:
            ax.annotate(
                f"ε={r['epsilon']:g}",
                (r["gati_mean_ms"], r["gati_accuracy"]),
                fontsize=7,
                textcoords="offset points",
                xytext=(4, -8),
            )
        ax.plot(
            [np.mean([r["base_mean_ms"] for r in rs])],
            [rs[0]["base_accuracy"]],
            "k*",
            ms=12,
            label="base model",
        )
        ax.set_xlabel(f"mean latency per request of {b} (ms)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{rs[0]['model']}, batch {b}")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _latency_table(rows: list[dict], model: str):
    """The latency rows (one per device, batch and epsilon) as a rich table."""
    from rich.table import Table

    table = Table(title=f"GATI on {model}")
    for col in (
        "dev",
        "batch",
        "ε",
        "heads",
        "base ms",
        "gati ms",
        "base p99",
        "gati p99",
        "speedup",
        "base acc",
        "gati acc",
        "loss",
    ):
        table.add_column(col)
    for r in (r for r in rows if r["section"] == "latency"):
        table.add_row(
            r["device"],
            str(r["batch"]),
            f"{r['epsilon']:g}",
            " ".join(r["heads"]) or "-",
            f"{r['base_mean_ms']:.2f}",
            f"{r['gati_mean_ms']:.2f}",
            f"{r['base_p99_ms']:.2f}",
            f"{r['gati_p99_ms']:.2f}",
            f"{r['speedup']:.2f}x",
            f"{r['base_accuracy']:.2f}",
            f"{r['gati_accuracy']:.2f}",
            f"{r['accuracy_loss']:+.2f}",
        )
    return table


def tables(rows: list[dict]):
    """The rows as the CLI prints them: base line, latency table, RPC, serving and retraining lines."""
    from rich.console import Group

    parts: list = []
    base = next(r for r in rows if r["section"] == "base")
    how = (
        f"{base['epochs']} epoch(s), best epoch {base['best_epoch']}, "
        f"{'converged' if base['converged'] else 'NOT converged'}"
        if base["converged"] is not None
        else f"{base['epochs']} epoch(s), fixed schedule"
    )
    parts.append(
        f"base {base['model']} ({base['stem']} stem, input {'x'.join(map(str, base['input_shape']))}) on "
        f"{base['dataset']}: test accuracy {base['test_accuracy']:.2f}%, validation "
        f"{base['val_accuracy']:.2f}% ({how})"
    )
    parts.append(_latency_table(rows, base["model"]))
    for rp in (r for r in rows if r["section"] == "rpc"):
        parts.append(
            f"gRPC loopback overhead: mean {rp['overhead_mean_ms']:.3f} ms, "
            f"p50 {rp['overhead_p50_ms']:.3f} ms "
            f"per request (round trip {rp['roundtrip_mean_ms']:.3f} ms); beyond the whole handler "
            f"p50 {rp['overhead_vs_handler_p50_ms']:.3f} ms; an empty call alone p50 "
            f"{rp['empty_rpc_p50_ms']:.3f} ms (load average {rp['load_average']:.1f})"
        )
    for r in (r for r in rows if r["section"] == "serving"):
        parts.append(
            f"serving {r['mode']:<8} window {r['window_ms']:g} ms, {r['clients']} clients: "
            f"{r['throughput_rps']:.0f} req/s, p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms, "
            f"CPU {r['cpu_ms_per_request']:.2f} ms/request on {r['cores_used']:.2f} cores, "
            f"mean batch {r['mean_batch']:.2f} "
            f"(torch threads {r['torch_threads']}, chunks {r['parallel']}; "
            f"load average {r['load_average']:.1f})"
        )
    for r in (r for r in rows if r["section"] == "serving_summary"):
        parts.append(
            f"serving round {r['round']}: batched / batch-1 throughput {r['throughput_ratio']:.2f}x "
            f"(best batch-1: {r['batch1_best']}, p99 {r['batch1_p99_ms']:.1f} ms; best batched: "
            f"{r['batched_best']}, p99 {r['batched_p99_ms']:.1f} ms); CPU per request "
            f"{r['cpu_per_request_ratio']:.2f}x fewer batched (load average {r['load_average']:.1f})"
        )
    for r in (r for r in rows if r["section"] == "retraining" and r["window"] is None):
        secs = r["retrain_seconds"]
        busy = r["mean_ms_while_retraining"]
        parts.append(
            f"stream {r['mode']:<10}: hit rate {r['hit_rate_before_shift']:.1f}% before the shift, "
            f"{r['hit_rate_after_shift']:.1f}% after "
            f"(last window {r['hit_rate_last_window']:.1f}%); accuracy "
            f"{r['accuracy_before_shift']:.2f}% -> {r['accuracy_after_shift']:.2f}% (base alone "
            f"{r['base_accuracy_before_shift']:.2f}% -> {r['base_accuracy_after_shift']:.2f}%; last window "
            f"{r['accuracy_last_window']:.2f}%); {r['retrains']} retrain(s)"
            + (f" of {np.mean(secs):.2f} s each, {r['swaps']} swapped in" if secs else "")
            + (
                f"; latency {busy:.2f} ms while retraining vs {r['mean_ms_otherwise']:.2f} ms otherwise"
                if busy is not None and r["mean_ms_otherwise"] is not None
                else ""
            )
        )
    return Group(*parts)
