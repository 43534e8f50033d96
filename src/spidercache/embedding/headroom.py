"""How much of the gap from the best classic policy to OPT an online policy can close on a
generated trace: the classic policies, OPT, the learned policy, the oracles of ``oracle.py``
(generator truth) and the issue's reference, LRU with an admission oracle (``oracle_admit.py``),
on one trace, each with ``closed = (h - h_best) / (h_OPT - h_best)``.

``spidercache embed headroom`` prints it; ``bench embed`` gives the admission oracle per family.
"""

from __future__ import annotations

from pathlib import Path

from .evaluate import evaluate
from .oracle import GeneratorTruth, oracle_hits
from .oracle_admit import admission_oracle_hits
from .oracle_sampled import sampled_oracle_hits
from .traces import GenConfig, generate

CLASSIC = ("lru", "lfu", "arc", "s3fifo")
# (row name, keyword arguments of sampled_oracle_hits) for the posterior oracle and its ablations
POSTERIOR_ROWS = [("posterior oracle", {}), ("posterior oracle + phase (4 C)", {"horizon": 4.0})]
ABLATION_ROWS = [
    ("posterior, not told rank changes", {"know_changes": False}),
    ("posterior, not told bursts", {"know_bursts": False}),
    ("posterior, not told one-offs", {"know_one_offs": False}),
    (
        "posterior, told nothing (counts only)",
        {"know_changes": False, "know_bursts": False, "know_one_offs": False},
    ),
]


def sized_config(requests: int, **kw) -> GenConfig:
    """The generator's configuration with the number of batches that gives about ``requests`` lookups."""
    cfg = GenConfig(**kw)
    per_batch = cfg.tables * cfg.batch_size * cfg.pooling
    cfg.batches = max(4, int(round(requests / per_batch)))
    return cfg


def headroom(
    requests: int,
    cache_size: float = 0.1,
    model_dir: str | Path | None = None,
    ablations: bool = False,
    n_samples: int = 64,
    progress=None,
    **gen_kw,
) -> list[dict]:
    """Rows ``{name, hit_ratio, closed}``; ``closed`` is relative to the best classic policy.
    ``learned`` runs online (warm-started when ``model_dir`` is given). ``progress(done, total, what)``
    is called before each step."""
    total = 4 + len(POSTERIOR_ROWS) + (len(ABLATION_ROWS) if ablations else 0)
    step = iter(range(total + 1))

    def tick(what: str) -> None:
        if progress is not None:
            progress(next(step), total, what)

    cfg = sized_config(requests, **gen_kw)
    cfg.check()
    truth = GeneratorTruth(cfg)
    tick("generating the trace")
    keys = generate(cfg, observer=truth)
    policies = [*CLASSIC, "opt", "learned"]
    tick("policies")
    by = {r["policy"]: r["hit_ratio"] for r in evaluate(keys, policies, [cache_size], model_dir)}
    best = max(CLASSIC, key=lambda p: by[p])
    h_best, h_opt = by[best], by["opt"]
    rows = [(f"{p} (best classic)" if p == best else p, by[p]) for p in CLASSIC]
    rows.append(("learned", by["learned"]))
    for name, kw in POSTERIOR_ROWS + (ABLATION_ROWS if ablations else []):
        tick(name)
        rows.append(
            (
                name,
                float(
                    sampled_oracle_hits(
                        keys, truth, cfg, cache_size, posterior=True, n_samples=n_samples, **kw
                    ).mean()
                ),
            )
        )
    tick("true-rate oracle")
    rows.append(("true-rate oracle", float(oracle_hits(keys, truth.events(), cfg, cache_size).mean())))
    tick("LRU + admission oracle")
    adm = admission_oracle_hits(keys, cache_size)
    rows.append(("lru + admission oracle, two-pass", adm["two_pass"]))
    n_pass = len(adm["passes"]) - 1
    how = "fixed point" if adm["converged"] else f"best of {n_pass} passes, no fixed point"
    rows.append((f"lru + admission oracle, {how}", float(adm["hits"].mean())))
    rows.append(("opt", h_opt))
    gap = h_opt - h_best
    out = [
        {"name": name, "hit_ratio": h, "closed": (h - h_best) / gap if gap > 0 else 0.0} for name, h in rows
    ]
    out.append({"name": "target (0.15 of the gap)", "hit_ratio": h_best + 0.15 * gap, "closed": 0.15})
    return out
