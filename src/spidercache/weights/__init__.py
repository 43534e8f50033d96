"""DisCo-style caches for map/reduce training: layer weights across nodes on a
memcached pool (``weight_cache`` over the engine's memcached store, its format in
``layers``), job results memoized in an engine store (``memo``), map/reduce
rounds on Dask (``mapreduce``, the experiment in ``experiment``) and a tiled
matrix multiply (``kernels``; its benchmark is ``spidercache bench kernels``).

Submodules are imported on demand: ``kernels`` must also load on a GPU machine
that has numba and torch but none of the network clients.
"""
