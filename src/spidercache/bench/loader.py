"""``bench loader``: the data path alone over a real JPEG ImageFolder served by a local HTTP server.

``jpeg_folder`` writes Fashion-MNIST images as JPEG files (upscaled to
``file_px``) into ``root/train/<class>/`` (and a small ``root/test``);
``http_server`` serves the tree with Python's ``http.server`` in its own
process on loopback; ``data_path`` iterates a ``CachedLoader`` over
``ImageFolder(url)`` (each miss: one HTTP GET, a JPEG decode, a resize to
``size``) with no model step, and returns one row per epoch. ``warm_vs_tensor``
compares a warm cache with a plain DataLoader over an in-memory
``TensorDataset`` of the same tensors. ``run`` does the issue's comparisons
and returns all rows.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch


def jpeg_folder(root: str | os.PathLike, n: int, file_px: int = 64, n_test: int = 500, seed: int = 0) -> Path:
    """``n`` training and ``n_test`` test JPEGs from Fashion-MNIST (kept if already written)."""
    from PIL import Image

    from ..data.datasets import FashionMNIST

    root = Path(root)
    done = root / f".done-{n}-{n_test}-{file_px}"
    if done.exists():
        return root
    stale = list(root.glob(".done-*"))  # a tree of another count or size: written by us, so ours to clear
    if stale:
        shutil.rmtree(root / "train", ignore_errors=True)
        shutil.rmtree(root / "test", ignore_errors=True)
        for marker in stale:
            marker.unlink()
    for split, count, train in (("train", n, True), ("test", n_test, False)):
        ds = FashionMNIST(train=train)
        ids = np.random.default_rng(seed).permutation(len(ds))[:count]
        for k, i in enumerate(ids.tolist()):
            d = root / split / str(int(ds.targets[i]))
            d.mkdir(parents=True, exist_ok=True)
            img = Image.fromarray(ds.data[i, 0]).convert("RGB").resize((file_px, file_px), Image.BILINEAR)
            img.save(d / f"{k:06d}.jpg", quality=90)
    done.touch()
    return root


@contextlib.contextmanager
def http_server(root: str | os.PathLike):
    """``http://127.0.0.1:PORT`` serving ``root`` from a separate ``python -m http.server`` process."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(root)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def _stand_in_embedding(x: np.ndarray) -> np.ndarray:
    """A batch of images (N x C x H x W) subsampled to at most 8 x 8 per channel, in [0, 1] (cheap)."""
    n, c, h, w = x.shape
    return x[:, :, :: max(1, h // 8), :: max(1, w // 8)].reshape(n, -1).astype(np.float32) / 255.0


def data_path(
    dataset,
    policy: str,
    working_set: float | None,
    epochs: int,
    workers: int = 2,
    batch_size: int = 256,
    seed: int = 0,
    label: str = "",
    **loader_kw,
) -> list[dict]:
    """Epoch seconds of a CachedLoader over ``dataset`` with no model step.

    The policy gets what a model would give it from a fixed stand-in: the
    embedding is the image subsampled to 8 x 8 per channel, the loss its
    distance to its class's mean embedding so far (so importance and
    homophily have something real-looking to work on).
    """
    from ..data.loader import CachedLoader

    loader = CachedLoader(
        dataset,
        batch_size,
        shuffle=True,
        num_workers=workers,
        policy=policy,
        working_set=working_set,
        seed=seed,
        persistent_workers=workers > 0,
        **loader_kw,
    )
    sums = np.zeros((0, 0))
    rows = []
    try:
        for epoch in range(epochs):
            t0 = time.perf_counter()
            n = 0
            for x, y in loader:
                n += len(y)
                emb, yy = _stand_in_embedding(x.numpy()), y.numpy()
                if sums.shape[0] <= yy.max():
                    grown = np.zeros((int(yy.max()) + 1, emb.shape[1] + 1))
                    grown[: sums.shape[0], : sums.shape[1]] = sums
                    sums = grown
                onehot = np.zeros((len(yy), sums.shape[0]))
                onehot[np.arange(len(yy)), yy] = 1.0
                sums += onehot.T @ np.hstack([emb, np.ones((len(yy), 1))])
                means = sums[yy, :-1] / sums[yy, -1:]
                loader.update(np.linalg.norm(emb - means, axis=1), embeddings=emb)
            st = loader.stats()["epoch"]
            rows.append(
                {
                    "bench": "loader",
                    "case": label or policy,
                    "policy": policy,
                    "working_set": working_set,
                    "epoch": epoch,
                    "samples": n,
                    "epoch_seconds": time.perf_counter() - t0,
                    "hits": st["hits"],
                    "substitutions": st["substitutions"],
                    "source_reads": st["source_reads"],
                    "lost_hits": st["lost_hits"],
                    "cached_bytes": st["cached_bytes"],
                    "workers": workers,
                    "load": os.getloadavg()[0],
                }
            )
    finally:
        loader.close()
    return rows


def warm_vs_tensor(
    dataset, batch_size: int = 256, repeat: int = 5, workers: int = 0, seed: int = 0
) -> list[dict]:
    """A warm cache (everything cached) against DataLoader(TensorDataset) of the same tensors.

    Both loaders shuffle, use ``workers`` DataLoader workers (persistent) and
    the same batch size; their epochs alternate, ``repeat`` times each.
    """
    from ..data.loader import CachedLoader

    kw = dict(num_workers=workers, persistent_workers=workers > 0)
    loader = CachedLoader(dataset, batch_size, shuffle=True, policy="minio", working_set=1.0, seed=seed, **kw)
    xs, ys = [], []
    for x, y in loader:  # fills the cache; keeps the tensors for the plain loader
        xs.append(x)
        ys.append(y)
    torch.manual_seed(seed)
    plain = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.cat(xs), torch.cat(ys)),
        batch_size=batch_size,
        shuffle=True,
        **kw,
    )
    rows = []
    for r in range(repeat):
        for case, it in (("warm cache", loader), ("TensorDataset", plain)):
            t0 = time.perf_counter()
            n = sum(len(y) for _, y in it)
            rows.append(
                {
                    "bench": "loader",
                    "case": case,
                    "workers": workers,
                    "repeat": r,
                    "samples": n,
                    "epoch_seconds": time.perf_counter() - t0,
                    "load": os.getloadavg()[0],
                }
            )
        assert loader.stats()["epoch"]["hits"] == len(dataset)
    loader.close()
    return rows


def run(
    root: str = ".spidercache/bench-jpeg",
    n: int = 20000,
    file_px: int = 64,
    size: int = 64,
    epochs: int = 3,
    workers: int = 2,
    batch_size: int = 256,
    cases: str = "none,ws1,spider,warm",
) -> list[dict]:
    """The issue's data-path comparisons over ``n`` JPEG files read through their URL.

    ``warm``: a warm cache against a TensorDataset loader, with 0 workers and with ``workers``.
    """
    from ..checks import at_least
    from ..data.imagefolder import ImageFolder
    from .runner import Rows, check_choices

    at_least(1, flag=True, n=n, file_px=file_px, size=size, epochs=epochs, batch_size=batch_size)
    at_least(0, flag=True, workers=workers)
    check_choices("--cases", cases, ["none", "ws1", "spider", "lru", "warm"])

    jpeg_folder(root, n, file_px)
    rows: list[dict] = []
    with http_server(root) as url:
        ds = ImageFolder(f"{url}/train", size=size)
        for case in cases.split(","):
            if case == "warm":
                for w in sorted({0, workers}):
                    rows += warm_vs_tensor(ds, batch_size, workers=w)
                continue
            policy, ws = {
                "none": ("none", None),
                "ws1": ("minio", 1.0),
                "spider": ("spider", 0.1),
                "lru": ("lru", 0.1),
            }[case]
            rows += data_path(ds, policy, ws, epochs, workers, batch_size, label=case)
    return Rows(rows, {"summary": summary(rows)})  # the ratios, printed under the table


def summary(rows: list[dict]) -> dict:
    """Mean epoch seconds after the first, per case, and the ratios the issue asks for (warm: medians)."""
    later: dict[str, list[float]] = {}
    for r in rows:
        if r.get("epoch", 1) > 0 and "repeat" not in r:
            later.setdefault(r["case"], []).append(r["epoch_seconds"])
    mean = {k: float(np.mean(v)) for k, v in later.items()}
    out = {"epoch_seconds_after_first": mean}
    if "none" in mean:
        out["speedup_vs_none"] = {k: mean["none"] / v for k, v in mean.items()}
    for w in sorted({r["workers"] for r in rows if r["case"] == "warm cache"}):
        med = {
            c: float(np.median([r["epoch_seconds"] for r in rows if r["case"] == c and r["workers"] == w]))
            for c in ("warm cache", "TensorDataset")
        }
        out[f"warm_over_tensor_{w}_workers"] = med["warm cache"] / med["TensorDataset"]
    return out


class Synthetic(torch.utils.data.Dataset):
    """``n`` samples of ``shape`` uint8, each generated from its id (nothing on disk, nothing kept)."""

    def __init__(self, n: int, shape: tuple[int, ...] = (3, 224, 224)) -> None:
        self.n, self.shape = int(n), tuple(shape)
        self.targets = np.arange(self.n) % 10

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        rng = np.random.Generator(np.random.PCG64(int(i)))
        return torch.from_numpy(rng.integers(0, 256, self.shape, dtype=np.uint8)), int(self.targets[i])


def _pss_bytes(root_pid: int) -> int:
    """Sum of PSS over ``root_pid`` and all its descendants (shared pages counted once)."""
    pids, total = [root_pid], 0
    k = 0
    while k < len(pids):
        with contextlib.suppress(OSError):
            for t in os.listdir(f"/proc/{pids[k]}/task"):
                with open(f"/proc/{pids[k]}/task/{t}/children") as f:
                    pids += [int(c) for c in f.read().split()]
        k += 1
    for p in pids:
        with contextlib.suppress(OSError), open(f"/proc/{p}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
                    break
    return total


def bounded_memory(
    n: int = 28000,
    shape: tuple[int, ...] = (3, 224, 224),
    working_set: float = 0.05,
    workers: int = 2,
    batch_size: int = 64,
    epochs: int = 1,
    policy: str = "lru",
) -> list[dict]:
    """Peak summed PSS of the whole job while a CachedLoader runs over a synthetic dataset."""
    import threading

    from ..data.loader import CachedLoader

    ds = Synthetic(n, shape)
    base = _pss_bytes(os.getpid())
    loader = CachedLoader(
        ds,
        batch_size,
        shuffle=True,
        num_workers=workers,
        policy=policy,
        working_set=working_set,
        persistent_workers=True,
    )
    peak, stop = [0], threading.Event()

    def watch() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _pss_bytes(os.getpid()))
            time.sleep(0.2)

    th = threading.Thread(target=watch, daemon=True)
    th.start()
    t0 = time.perf_counter()
    try:
        for _ in range(epochs):
            for _ in loader:
                pass
    finally:
        stop.set()
        th.join()
    st = loader.stats()["total"]
    row = {
        "bench": "loader",
        "case": "bounded memory",
        "samples": n,
        "sample_bytes": int(np.prod(shape)),
        "dataset_bytes": n * int(np.prod(shape)),
        "working_set": working_set,
        "workers": workers,
        "cache_budget_bytes": loader.sizing.budget,
        "cached_bytes": st["cached_bytes"],
        "pss_before_bytes": base,
        "peak_pss_bytes": peak[0],
        "seconds": time.perf_counter() - t0,
        "hits": st["hits"],
        "requests": st["requests"],
        "load": os.getloadavg()[0],
    }
    loader.close()
    return [row]
