"""The one trace-replay loop: a trace of dense ids through any policy of the registry.

An engine policy answers ``access(ids[, sizes]) -> hits``; a training policy
(``spidercache.data.policies``) answers ``lookup(ids) -> Lookup`` and may serve
a miss with a resident stand-in. ``replay`` drives either kind the same way and
returns which requests were hits and which were served by a stand-in (never
both): the simulator, ``embed eval`` and the tests all go through it.

Training policies decide a batch at a time, as their loader asks them, so they
replay in batches (``batch``, default ``TRAINING_BATCH``); with
``epoch_length`` they are told ``begin_epoch(e)`` every that many requests,
where they commit scores and re-plan. Engine policies replay the whole trace in
one call unless ``batch`` is given.

Example::

    >>> import numpy as np
    >>> from spidercache.engine.policies import make_policy
    >>> out = replay(make_policy("lru", 2, 3), np.array([0, 1, 0, 2, 0]))
    >>> out.hits.tolist()
    [False, False, True, False, True]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

TRAINING_BATCH = 256  # a loader's batch: what training policies are asked at a time


@dataclass
class Replayed:
    hits: np.ndarray  # request served by its own resident value
    substituted: np.ndarray  # request served by a resident stand-in (training policies only)

    @property
    def requests(self) -> int:
        return int(self.hits.size)


def replay(
    policy: Any,
    ids: np.ndarray,
    batch: int | None = None,
    sizes: np.ndarray | None = None,
    epoch_length: int | None = None,
) -> Replayed:
    """``ids`` through ``policy`` (whole, or ``batch`` requests at a time)."""
    ids = np.asarray(ids, np.int64)
    if hasattr(policy, "lookup"):
        return _replay_training(policy, ids, int(batch or TRAINING_BATCH), epoch_length)
    if not batch or batch >= ids.size:
        hits = policy.access(ids) if sizes is None else policy.access(ids, sizes=sizes)
        return Replayed(np.asarray(hits, np.bool_), np.zeros(ids.size, np.bool_))
    hits = np.empty(ids.size, np.bool_)
    for s in range(0, ids.size, batch):
        part = slice(s, s + batch)
        hits[part] = (
            policy.access(ids[part]) if sizes is None else policy.access(ids[part], sizes=sizes[part])
        )
    return Replayed(hits, np.zeros(ids.size, np.bool_))


def _replay_training(policy: Any, ids: np.ndarray, batch: int, epoch_length: int | None) -> Replayed:
    hits = np.zeros(ids.size, np.bool_)
    sub = np.zeros(ids.size, np.bool_)
    begin = getattr(policy, "begin_epoch", None)
    for start in range(0, ids.size, batch):
        if begin is not None and epoch_length and start % int(epoch_length) < batch:
            begin(start // int(epoch_length))
        lk = policy.lookup(ids[start : start + batch])
        part = slice(start, start + lk.hit.size)
        sub[part] = lk.substituted
        hits[part] = lk.hit & ~lk.substituted
    return Replayed(hits, sub)
