"""The one table of policies, every front-end's, imported lazily by name.

Each row is ``name: "module:attr"``; nothing is imported until a policy is
asked for, so ``make_policy("learned", ...)`` works with no other import first
and a broken optional policy (one that needs hnswlib or torch) cannot break the
others. Training policies (``spidercache.data.policies``) are named ``train-*``
and take the training constructor ``cls(n_ids, capacity, labels, seed, **kw)``;
every other row takes the engine one ``cls(capacity, n_ids, **kw)``.

Adding a policy is one line here (keep the rows sorted, one per line).
"""

from __future__ import annotations

import importlib
from typing import Any

from ...errors import UserError

POLICIES: dict[str, str] = {
    "arc": "spidercache.engine.policies.arc:ARC",
    "cacheus": "spidercache.engine.policies.cacheus:Cacheus",
    "clock": "spidercache.engine.policies.clock:Clock",
    "fifo": "spidercache.engine.policies.fifo:FIFO",
    "gdsf": "spidercache.engine.policies.gdsf:GDSF",
    "learned": "spidercache.embedding.adaptive:Learned",
    "learned+offline": "spidercache.embedding.policy:OfflineLearned",
    "learned+prefetch": "spidercache.embedding.policy:LearnedPrefetch",
    "lecar": "spidercache.engine.policies.lecar:LeCaR",
    "lfu": "spidercache.engine.policies.lfu:LFU",
    "lhd": "spidercache.engine.policies.lhd:LHD",
    "lrfu": "spidercache.embedding.lrfu:LRFU",
    "lru": "spidercache.engine.policies.lru:LRU",
    "lru+admit": "spidercache.embedding.admit:AdmitLRU",
    "opt": "spidercache.engine.policies.opt:OPT",
    "s3fifo": "spidercache.engine.policies.s3fifo:S3FIFO",
    "sieve": "spidercache.engine.policies.sieve:Sieve",
    "slrfu": "spidercache.embedding.sampled:SampledLRFU",
    "train-icache": "spidercache.data.policies.icache:ICachePolicy",
    "train-lru": "spidercache.data.policies.lru:LRUPolicy",
    "train-minio": "spidercache.data.policies.minio:MinIOPolicy",
    "train-none": "spidercache.data.policies.none:NoCache",
    "train-shade": "spidercache.data.policies.shade:ShadePolicy",
    "train-spider": "spidercache.data.policies.spider:SpiderPolicy",
    "train-spider-noh": "spidercache.data.policies.spider:SpiderNoHomophily",
    "train-spider-nois": "spidercache.data.policies.spider:SpiderNoImportanceSampling",
    "twoq": "spidercache.engine.policies.twoq:TwoQ",
    "wtinylfu": "spidercache.engine.policies.wtinylfu:WTinyLFU",
}

# other names people use for the same policies
ALIASES: dict[str, str] = {"belady": "opt", "min": "opt", "2q": "twoq", "tinylfu": "wtinylfu"}

TRAINING = "train-"  # the prefix of training policies' names

# engine policies of the simulator's default comparison (need no model or trace of their own but OPT's)
ENGINE_POLICIES: tuple[str, ...] = (
    "arc",
    "cacheus",
    "clock",
    "fifo",
    "gdsf",
    "lecar",
    "lfu",
    "lhd",
    "lru",
    "opt",
    "s3fifo",
    "sieve",
    "twoq",
    "wtinylfu",
)

_loaded: dict[str, type] = {}


def policy_names(kind: str = "all") -> list[str]:
    """Sorted names: ``kind`` is "all", "engine" (not training) or "training" (without the prefix)."""
    if kind == "training":
        return sorted(n[len(TRAINING) :] for n in POLICIES if n.startswith(TRAINING))
    if kind == "engine":
        return sorted(n for n in POLICIES if not n.startswith(TRAINING))
    return sorted(POLICIES)


def canonical_name(name: str) -> str:
    """The table's name for ``name`` (case, ``-``/``_`` in engine names and aliases forgiven)."""
    key = name.strip().lower()
    if key in POLICIES:
        return key
    squashed = key.replace("-", "").replace("_", "")
    key = ALIASES.get(squashed, squashed)
    if key in POLICIES:
        return key
    raise UserError(f"unknown policy {name!r}; choose from {', '.join(policy_names())}")


def policy_class(name: str) -> type:
    """The class named ``name``, imported on first use."""
    key = canonical_name(name)
    cls = _loaded.get(key)
    if cls is None:
        module_name, attr = POLICIES[key].split(":")
        cls = _loaded[key] = getattr(importlib.import_module(module_name), attr)
    return cls


def make_policy(name: str, capacity: int, n_ids: int = 0, **kwargs: Any) -> Any:
    """Build the policy ``name`` with room for ``capacity`` ids (of ``n_ids`` known ids).

    Training policies (``train-*``) also take ``labels`` and ``seed`` keywords.
    """
    key = canonical_name(name)
    cls = policy_class(key)
    if key.startswith(TRAINING):
        labels = kwargs.pop("labels", None)
        seed = kwargs.pop("seed", 0)
        return cls(n_ids, capacity, labels, seed, **kwargs)
    return cls(capacity, n_ids, **kwargs)
