"""Spider Cache: caching at every stage of a deep-learning job.

The heart is ``spidercache.engine``: policies decide which integer ids are
resident, stores hold the bytes, a cache joins the two. The front-ends
(training data, cache server, embedding rows, inference, weights) build on it.
"""

__version__ = "0.1.0"
