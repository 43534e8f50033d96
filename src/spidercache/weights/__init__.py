"""DisCo-style caches for map/reduce training: layer weights across nodes on a
memcached pool (``weight_cache`` over the engine's memcached store, its format in
``layers``), job results memoized in an engine store (``memo``), map/reduce
rounds on Dask (``mapreduce``, the experiment in ``experiment``) and a tiled
matrix multiply (``kernels``; its benchmark is ``spidercache bench kernels``).

Submodules are imported on demand: ``kernels`` must also load on a GPU machine
that has numba and torch but none of the network clients.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> submodule, imported on first use (``from spidercache.weights import WeightCache``)
_EXPORTS = {
    "WeightCache": "weight_cache",
    "WeightCacheWarning": "weight_cache",
    "ResultCache": "memo",
    "memoize": "memo",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'spidercache.weights' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)
