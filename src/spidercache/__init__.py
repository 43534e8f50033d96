"""Spider Cache: caching at every stage of a deep-learning job.

The heart is ``spidercache.engine``: policies decide which integer ids are
resident, stores hold the bytes, a cache joins the two. The front-ends
(training data, cache server, embedding rows, inference, weights) build on it.

The names users reach for are importable from here; each is loaded on first use,
so ``import spidercache`` stays cheap (no torch, no gRPC) until one is touched::

    import spidercache
    cache = spidercache.Cache(spidercache.make_policy("lru", 1000), spidercache.open_store("memory:64"))
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> "module:attribute" (relative to this package), imported lazily.
_EXPORTS = {
    "Cache": "engine.cache:Cache",
    "CachedEmbeddingBag": "embedding.bag:CachedEmbeddingBag",
    "CachedLoader": "data.loader:CachedLoader",
    "ComputeThreads": "data.compute_threads:ComputeThreads",
    "CorruptValue": "errors:CorruptValue",
    "DatasetCache": "server.client:DatasetCache",
    "StoreUnavailable": "errors:StoreUnavailable",
    "UserError": "errors:UserError",
    "WeightCache": "weights.weight_cache:WeightCache",
    "make_policy": "engine.policies:make_policy",
    "open_store": "engine.stores:open_store",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    target = _EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"module 'spidercache' has no attribute {name!r}")
    module, attr = target.split(":")
    value = getattr(importlib.import_module(f".{module}", __name__), attr)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return __all__
