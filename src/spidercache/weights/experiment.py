"""The map/reduce experiment behind `spidercache mapreduce train` and `bench weights`.

Train with cached weights and, to compare, from scratch every round; the
figure is the round at which the cached run reaches the from-scratch run's
final accuracy. ``run_experiment`` memoizes the whole experiment in the
job-result cache (``memo.py``).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Callable, Sequence

from ..errors import UserError
from .dask_cluster import close_dask, open_dask
from .layers import parse_servers
from .mapreduce import MapReduceConfig, data_fingerprint, run_mapreduce
from .weight_cache import WeightCache


def rounds_to_reach(accuracy: Sequence[float | None], target: float) -> int | None:
    """1-based round at which ``accuracy`` first reaches ``target``, or None."""
    for i, acc in enumerate(accuracy):
        if acc is not None and acc >= target:
            return i + 1
    return None


def compare_summary(cached: Sequence[float | None], scratch: Sequence[float | None]) -> dict:
    """The figure: rounds the cached run needs to reach the from-scratch run's final accuracy."""
    final = next((a for a in reversed(scratch) if a is not None), None)
    reach = rounds_to_reach(cached, final) if final is not None else None
    return {
        "scratch_final_accuracy": final,
        "cached_final_accuracy": next((a for a in reversed(cached) if a is not None), None),
        "rounds": len(scratch),
        "cached_rounds_to_match": reach,
        "meets_half": reach is not None and reach <= len(scratch) / 2,
    }


def plot_rounds(series: dict[str, Sequence[float | None]], path: str, title: str = "") -> str:
    """PNG of validation accuracy per round, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, acc in series.items():
        xs = [i + 1 for i, a in enumerate(acc) if a is not None]
        ax.plot(xs, [a for a in acc if a is not None], marker="o", label=label)
    ax.set_xlabel("round")
    ax.set_ylabel("validation accuracy")
    ax.set_title(title or "map/reduce: cached weights vs from scratch")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=120)
    except OSError as exc:
        raise UserError(f"cannot write plot {path}: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)
    return path


# -------------------------------------------------------------- experiment
def mapreduce_experiment(
    cfg: MapReduceConfig,
    compare: bool,
    servers: Sequence[str] | None,
    scheduler: str | None,
    workers: int,
    processes: bool,
    resume: bool,
    on_round: Callable[[str, int, dict], None] | None,
    on_ready: Callable[[list[str]], None] | None,
) -> dict:
    """Train with cached weights (and, with ``compare``, from scratch every round).

    Without ``servers`` two memcached servers are started on loopback for the
    run; ``on_ready(servers)`` is called once the pool is up.
    """
    from ..engine.stores.launch import memcached_pool

    with contextlib_pool(servers, memcached_pool) as addresses:
        WeightCache(addresses).close()  # a wrong address fails here, before Dask starts
        client = open_dask(scheduler, workers, processes)  # a wrong scheduler fails before the first line
        if on_ready is not None:
            on_ready(addresses)
        try:
            runs = {}
            variants = [("cached", cfg)]
            if compare:
                variants.append(
                    (
                        "scratch",
                        MapReduceConfig(**{**asdict(cfg), "job": cfg.job + "-scratch", "start": "scratch"}),
                    )
                )
            for label, variant in variants:
                hook = (lambda r, s, _l=label: on_round(_l, r, s)) if on_round else None
                runs[label] = run_mapreduce(
                    variant, addresses, client, fresh=not resume, on_round=hook
                ).to_dict()
        finally:
            close_dask(client)
    figure = compare_summary(runs["cached"]["accuracy"], runs["scratch"]["accuracy"]) if compare else None
    return {"cached": runs["cached"], "scratch": runs.get("scratch"), "figure": figure}


def run_experiment(
    cfg: MapReduceConfig,
    servers: Sequence[str] | None = None,
    scheduler: str | None = None,
    workers: int = 2,
    processes: bool = True,
    compare: bool = True,
    results: str | None = None,
    no_cache: bool = False,
    resume: bool = False,
    on_round: Callable[[str, int, dict], None] | None = None,
    on_ready: Callable[[list[str]], None] | None = None,
) -> dict:
    """``mapreduce_experiment`` memoized in the job-result cache.

    The key covers that function's source, the config, ``compare`` and the
    data's fingerprint; servers, the Dask cluster and ``local_mb`` (where chunks
    are read from) do not change the result and are left out. A run that hit
    faults (warnings) is not stored, nor is a ``resume`` run (it depends on
    what the cache held). Returns the experiment's dict plus
    ``"memo": {"hit", "key", "seconds"}``.
    """
    from .memo import ResultCache

    cfg.validate()
    fingerprint = data_fingerprint(cfg)
    with ResultCache.open(results) as cache:
        outcome = cache.run(
            mapreduce_experiment,
            (fingerprint,),
            {**{k: v for k, v in asdict(cfg).items() if k != "local_mb"}, "compare": compare},
            no_cache=no_cache or resume,
            call=lambda: mapreduce_experiment(
                cfg, compare, servers, scheduler, workers, processes, resume, on_round, on_ready
            ),
            save_if=lambda out: not out["cached"]["warnings"] and not (out["scratch"] or {}).get("warnings"),
        )
    out = dict(outcome.result)
    out["memo"] = {"hit": outcome.hit, "key": outcome.key, "seconds": outcome.seconds}
    return out


def contextlib_pool(servers: Sequence[str] | None, launcher):
    """The given servers, or a throw-away pool of two started by ``launcher``."""
    import contextlib

    if servers:
        return contextlib.nullcontext([f"{h}:{p}" for h, p in parse_servers(servers)])

    @contextlib.contextmanager
    def started():
        with launcher(2) as procs:
            yield [p.address for p in procs]

    return started()
