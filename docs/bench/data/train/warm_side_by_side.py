"""One (version, workers, dataset) cell: warm cache vs TensorDataset, alternating epochs, medians.

Usage (docs/bench/train.md, "Warm cache against a TensorDataset"), once per version of src/:
    PYTHONPATH=SRC python warm_side_by_side.py LABEL WORKERS jpeg|synth REPEAT [JPEG_TRAIN_DIR]
"""

import json
import os
import statistics
import sys
import time

import torch

from spidercache.bench.loader import Synthetic
from spidercache.data.imagefolder import ImageFolder
from spidercache.data.loader import CachedLoader

version, workers, which, repeat = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
root = sys.argv[5] if len(sys.argv) > 5 else "/tmp/x/jpeg20000/train"
ds = ImageFolder(root, size=64) if which == "jpeg" else Synthetic(20000, (3, 64, 64))
kw = dict(num_workers=workers, persistent_workers=workers > 0)
loader = CachedLoader(ds, 256, shuffle=True, policy="minio", working_set=1.0, seed=0, **kw)
xs, ys = [], []
for x, y in loader:
    xs.append(x)
    ys.append(y)
torch.manual_seed(0)
plain = torch.utils.data.DataLoader(
    torch.utils.data.TensorDataset(torch.cat(xs), torch.cat(ys)), batch_size=256, shuffle=True, **kw
)
t = {"warm cache": [], "TensorDataset": []}
loads = []
for _r in range(repeat):
    for case, it in (("warm cache", loader), ("TensorDataset", plain)):
        t0 = time.perf_counter()
        n = sum(len(y) for _, y in it)
        t[case].append(time.perf_counter() - t0)
    loads.append(os.getloadavg()[0])
    assert loader.stats()["epoch"]["hits"] == len(ds)
m = {k: statistics.median(v) for k, v in t.items()}
print(
    json.dumps(
        {
            "version": version,
            "workers": workers,
            "data": which,
            "warm_median_s": round(m["warm cache"], 4),
            "tensor_median_s": round(m["TensorDataset"], 4),
            "ratio": round(m["warm cache"] / m["TensorDataset"], 3),
            "load": [round(min(loads), 1), round(max(loads), 1)],
            "warm_s": [round(v, 3) for v in t["warm cache"]],
            "tensor_s": [round(v, 3) for v in t["TensorDataset"]],
        }
    ),
    flush=True,
)
loader.close()
