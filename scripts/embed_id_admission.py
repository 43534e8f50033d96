"""How much can an admission model that reads the row id buy? (docs/embedding.md, fifth round)

A miss on a row's first access is refused when its bucket (table mod 16, quarter-octave of the
row id) has a learned reuse rate below ``thr``; the rate is learned online, each first access
labelled H requests later (came back within H or not), bucket counts decayed by 0.9 every C
requests. Re-accesses are always admitted. Printed beside each policy: plain, and the oracle that
refuses exactly the rows seen once in the whole trace. Not a policy of the package: a first
access's id says something only where a generator or a pipeline gives one-off rows ids of their
own, which is not the case for hashed ids.

    spidercache embed family dlrm-a -o /tmp/dlrm-a.npy
    python scripts/embed_id_admission.py /tmp/dlrm-a.npy
"""

import sys

import numba as nb
import numpy as np

from spidercache.engine.ids import remap_trace
from spidercache.engine.policies import make_policy

N_ID_BUCKETS = 4 * 44  # quarter octaves of a 44-bit row id


@nb.njit(cache=True)
def _id_bucket(row):
    return 0 if row < 1 else min(int(np.log2(row + 1.0) * 4.0), N_ID_BUCKETS - 1)


@nb.njit(cache=True)
def first_access_reuse(ids, rows, tables, horizon, n, decay_every, decay):
    """P(a first access comes back within ``horizon``), from the first accesses already labelled."""
    pos = np.zeros(16 * N_ID_BUCKETS)
    tot = np.zeros(16 * N_ID_BUCKETS)
    seen = np.full(n, -1, np.int64)
    bucket = np.full(n, -1, np.int64)
    first_t = np.zeros(n, np.int64)
    back = np.zeros(n, np.bool_)
    p = np.ones(ids.size)
    queue = np.empty(ids.size, np.int64)
    head = tail = 0
    for k in range(ids.size):
        if k > 0 and k % decay_every == 0:
            pos *= decay
            tot *= decay
        while head < tail and first_t[ids[queue[head]]] < k - horizon:  # label final
            i = ids[queue[head]]
            tot[bucket[i]] += 1.0
            pos[bucket[i]] += back[i]
            head += 1
        i = ids[k]
        if seen[i] < 0:
            b = (tables[k] % 16) * N_ID_BUCKETS + _id_bucket(rows[k])
            p[k] = (pos[b] + 0.5) / (tot[b] + 1.0)
            bucket[i] = b
            first_t[i] = k
            queue[tail] = k
            tail += 1
        elif seen[i] == first_t[i] and k - first_t[i] <= horizon:
            back[i] = True
        seen[i] = k
    return p


def main(path: str, size: float = 0.1, thresholds=(0.1, 0.2, 0.3, 0.4)) -> None:
    keys = np.load(path)
    ids, n = remap_trace(keys)
    rows, tables = keys & ((1 << 40) - 1), keys >> 40
    cap = int(round(size * n))
    first = np.zeros(ids.size, bool)
    first[np.unique(ids, return_index=True)[1]] = True
    once = first & (np.bincount(ids, minlength=n)[ids] == 1)
    print(f"{path}: {n} distinct rows, {once.sum() / n:.3f} seen once; capacity {cap}")
    p = {h: first_access_reuse(ids, rows, tables, h * cap, n, cap, 0.9) for h in (1, 4)}
    for pol in ("lru", "arc", "s3fifo", "slrfu"):
        line = f"  {pol:7s} plain {make_policy(pol, cap, n).access(ids).mean():.4f}"
        line += f" oracle {make_policy(pol, cap, n).access(ids, ~once).mean():.4f}"
        for h in p:
            for t in thresholds:
                line += f" H{h}C/{t}: {make_policy(pol, cap, n).access(ids, ~first | (p[h] >= t)).mean():.4f}"
        print(line, flush=True)


if __name__ == "__main__":
    for f in sys.argv[1:]:
        main(f)
