"""DisCo-style caches for map/reduce training: layer weights across nodes on a
memcached pool (``weight_cache``), job results memoized in an engine store
(``memo``), map/reduce rounds on Dask (``mapreduce``) and a tiled matrix
multiply (``kernels``).

Submodules are imported on demand: ``kernels`` must also load on a GPU machine
that has numba and torch but none of the network clients.
"""
