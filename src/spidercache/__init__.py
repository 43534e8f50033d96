"""Spider Cache: caching at every stage of a deep-learning job.

The heart is ``spidercache.engine``: policies decide which integer ids are
resident, stores hold the bytes, a cache joins the two. The front-ends
(training data, cache server, embedding rows, inference, weights) build on it.
"""

__version__ = "0.1.0"

__all__ = ["CachedLoader", "__version__"]


def __getattr__(name: str):
    # ``import spidercache`` stays light; torch is imported when the loader is first used.
    if name == "CachedLoader":
        from .data.loader import CachedLoader

        return CachedLoader
    raise AttributeError(f"module 'spidercache' has no attribute {name!r}")
