"""The Dask cluster the map/reduce rounds run on: a user's scheduler, or a LocalCluster started here."""

from __future__ import annotations

import logging

from ..checks import at_least
from ..errors import UserError


def open_dask(scheduler: str | None, workers: int = 2, processes: bool = True):
    """A dask.distributed Client: to ``scheduler`` when given, else to a fresh LocalCluster."""
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            return Client(scheduler, timeout=10)
        except (OSError, TimeoutError) as exc:
            raise UserError(f"Dask scheduler at {scheduler} does not answer ({type(exc).__name__})") from None
    at_least(1, workers=workers)
    cluster = LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=processes,
        dashboard_address=":0",
        silence_logs=logging.ERROR,
    )
    client = Client(cluster)
    client._spidercache_cluster = cluster  # closed together in close_dask
    return client


def close_dask(client) -> None:
    cluster = getattr(client, "_spidercache_cluster", None)
    client.close()
    if cluster is not None:
        cluster.close()
