"""The memory side of ``spidercache bench server``: what the server process holds
against its budget while clients write past it, spill, or open many sessions,
and one cached epoch against slow storage.

Each function starts its own server (as users do, a daemon) and returns one row.
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np

from ..server.memory import rss_breakdown
from .server import MB, _time
from .server_launch import _start_cache_server


class _Peak:
    """Samples a process's RSS parts every 50 ms until stopped; keeps the peaks."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = dict(rss_breakdown(pid))
        self.baseline = self.peak["VmRSS"]
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        now = rss_breakdown(self.pid)
        now["private"] = (
            now["RssAnon"] + now["RssShmem"]
        )  # RSS without file-backed pages (libraries, LMDB maps)
        for k, v in now.items():
            self.peak[k] = max(self.peak.get(k, 0), v)

    def _run(self) -> None:
        while not self._done.wait(0.05):
            try:
                self._sample()
            except OSError:
                return

    def stop(self) -> dict:
        self._done.set()
        self._thread.join()
        try:
            self._sample()
        except OSError:
            pass
        return self.peak


def bench_memory(log, budget_mb: int = 1024, value_bytes: int = 3072) -> dict:
    """Peak server RSS while a writer puts 2x the budget (no spill: the rest is refused)."""
    from ..server.admin import AdminClient
    from ..server.client import DatasetCache

    server = _start_cache_server(memory=f"{budget_mb}M", no_spill=True)
    sampler = _Peak(server.pid)
    baseline = sampler.baseline
    try:
        with AdminClient("127.0.0.1", server.port) as admin:
            sid = admin.new_session()["session_id"]
        client = DatasetCache(sid, port=server.port, pipeline="rss", use_shm=False)
        per = 1024
        block = np.random.default_rng(0).integers(0, 256, size=(per, value_bytes), dtype=np.uint8)
        vals = [block[i].tobytes() for i in range(per)]
        n_total = 2 * budget_mb * MB // value_bytes
        stored = 0
        for start in range(0, n_total, per):
            stored += int(client.put_many(np.arange(start, start + per), vals).sum())
        with AdminClient("127.0.0.1", server.port) as admin:
            st = admin.status()
        client.close()
    finally:
        peak = [sampler.stop()["VmRSS"]]
        server.stop()
    budget = budget_mb * MB
    row = dict(
        transport="grpc",
        api="rss",
        value_bytes=value_bytes,
        budget_bytes=budget,
        written_bytes=n_total * value_bytes,
        stored_items=stored,
        memory_used=st["memory_used"],
        baseline_rss_bytes=baseline,
        peak_rss_bytes=peak[0],
        peak_rss_over_budget=round(peak[0] / budget, 3),
    )
    log(
        f"rss: budget {budget_mb} MB, wrote {n_total * value_bytes / MB:,.0f} MB, stored {stored} items, "
        f"server RSS baseline {baseline / MB:,.0f} MB, peak {peak[0] / MB:,.0f} MB = "
        f"{peak[0] / budget:.3f}x budget"
    )
    return row


def bench_epoch(log, n: int = 600, value_bytes: int = 784, read_ms: float = 5.0, batch: int = 64) -> dict:
    """One epoch of 784 B samples: through 5 ms storage (epoch 1 fills the cache)
    against the next epoch through the server. A plain loop, not the training-data path."""
    from ..server.admin import AdminClient
    from ..server.client import DatasetCache

    server = _start_cache_server(memory="64M", no_spill=True)
    try:
        with AdminClient("127.0.0.1", server.port) as admin:
            sid = admin.new_session()["session_id"]
        block = np.random.default_rng(2).integers(0, 256, size=(n, value_bytes), dtype=np.uint8)

        def storage_read(i: int) -> bytes:
            time.sleep(read_ms / 1000)  # the slow storage: one read per sample
            return block[i].tobytes()

        cache = DatasetCache(sid, port=server.port, pipeline="fashion-mnist-like")
        order = np.random.default_rng(3).permutation(n)

        def epoch() -> int:
            hits = 0
            for start in range(0, n, batch):
                ids = order[start : start + batch]
                got = cache.get_many(ids)
                miss = [k for k, v in enumerate(got) if v is None]
                hits += len(ids) - len(miss)
                if miss:
                    loaded = [storage_read(int(ids[k])) for k in miss]
                    cache.put_many(ids[miss], loaded)
                    for k, v in zip(miss, loaded):
                        got[k] = v
                for i, v in zip(ids.tolist(), got):
                    assert v == block[i].tobytes()
            return hits

        t_cold = _time(lambda: epoch())
        hits_box = [0]
        t_warm = _time(lambda: hits_box.__setitem__(0, epoch()))
        cache.close()
    finally:
        server.stop()
    row = dict(
        transport="shm",
        api="epoch",
        value_bytes=value_bytes,
        items=n,
        storage_read_ms=read_ms,
        storage_epoch_seconds=round(t_cold, 3),
        cached_epoch_seconds=round(t_warm, 4),
        cached_hits=hits_box[0],
        speedup=round(t_cold / t_warm, 1),
    )
    log(
        f"epoch: {n} samples of {value_bytes} B, 5 ms storage {t_cold:.2f} s, cached through the server "
        f"{t_warm:.3f} s ({hits_box[0]} hits) = {t_cold / t_warm:,.1f}x faster"
    )
    return row


def bench_spill_rss(log, budget_mb: int = 300, value_bytes: int = 3072) -> dict:
    """A spilling session written to 2x the budget: the process's private memory
    (anonymous + shared slots) against the budget, and the pages of the spill
    files' LMDB maps (page cache the kernel can drop) apart."""
    from ..server.admin import AdminClient
    from ..server.client import DatasetCache

    spill = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"spidercache-bench-spill-{os.getpid()}")
    server = _start_cache_server(memory=f"{budget_mb}M", spill_dir=spill)
    sampler = _Peak(server.pid)
    try:
        with AdminClient("127.0.0.1", server.port) as admin:
            sid = admin.new_session(spill=True)["session_id"]
        client = DatasetCache(sid, port=server.port, pipeline="spill", use_shm=False)
        per = 1024
        block = np.random.default_rng(4).integers(0, 256, size=(per, value_bytes), dtype=np.uint8)
        vals = [block[i].tobytes() for i in range(per)]
        n_total = 2 * budget_mb * MB // value_bytes
        stored = 0
        for start in range(0, n_total, per):
            stored += int(client.put_many(np.arange(start, start + per), vals).sum())
        got = client.get_many(np.arange(0, n_total, 997))  # reads from memory and from disk
        assert all(v == vals[i % per] for i, v in zip(range(0, n_total, 997), got))
        with AdminClient("127.0.0.1", server.port) as admin:
            st = admin.status()
        client.close()
    finally:
        peak = sampler.stop()
        server.stop()
    budget = budget_mb * MB
    row = dict(
        transport="grpc",
        api="spill-rss",
        value_bytes=value_bytes,
        budget_bytes=budget,
        written_bytes=n_total * value_bytes,
        stored_items=stored,
        spilled_bytes=st["spilled_bytes"],
        peak_rss_bytes=peak["VmRSS"],
        peak_private_bytes=peak.get("private", 0),
        peak_spill_file_pages_bytes=peak["RssFile"],
        peak_private_over_budget=round(peak.get("private", 0) / budget, 3),
        peak_rss_over_budget=round(peak["VmRSS"] / budget, 3),
    )
    log(
        f"spill-rss: budget {budget_mb} MB, wrote {n_total * value_bytes / MB:,.0f} MB "
        f"({st['spilled_bytes'] / MB:,.0f} MB "
        f"spilled); peak private (anon+shmem) {row['peak_private_bytes'] / MB:,.0f} MB = "
        f"{row['peak_private_over_budget']:.3f}x budget; file-backed pages {peak['RssFile'] / MB:,.0f} MB; "
        f"VmRSS {peak['VmRSS'] / MB:,.0f} MB = {row['peak_rss_over_budget']:.3f}x"
    )
    return row


def bench_sessions(log, budget_mb: int = 256, n: int = 3000, value_bytes: int = 100) -> dict:
    """``n`` sessions with one small value each (the server caps them with --max-sessions)."""
    from ..errors import UserError
    from ..server.admin import AdminClient
    from ..server.client import DatasetCache

    server = _start_cache_server(memory=f"{budget_mb}M", no_spill=True, max_sessions=n)
    sampler = _Peak(server.pid)
    made = refused = 0
    reason = ""
    try:
        with AdminClient("127.0.0.1", server.port) as admin:
            for _ in range(n):
                try:
                    sid = admin.new_session(1 << 20)["session_id"]
                except UserError as exc:
                    refused, reason = refused + 1, str(exc)
                    break
                cache = DatasetCache(sid, port=server.port, pipeline="s", use_shm=False, num_connections=1)
                cache.put_many([0], [b"x" * value_bytes])
                cache.close()
                made += 1
            st = admin.status()
        files = len([f for f in os.listdir("/dev/shm") if f.startswith(f"spidercache-{server.port}-")])
    finally:
        peak = sampler.stop()
        server.stop()
    budget = budget_mb * MB
    row = dict(
        transport="grpc",
        api="sessions",
        value_bytes=value_bytes,
        budget_bytes=budget,
        sessions=made,
        refused=refused,
        refused_reason=reason,
        memory_used=st["memory_used"],
        shm_files=files,
        peak_rss_bytes=peak["VmRSS"],
        peak_rss_over_budget=round(peak["VmRSS"] / budget, 3),
        rss_per_session_bytes=round((peak["VmRSS"] - sampler.baseline) / max(1, made)),
    )
    log(
        f"sessions: {made} made on a {budget_mb} MB server "
        f"({'refused: ' + reason if refused else 'none refused'}); "
        f"status {st['memory_used'] / MB:,.1f} MB used, {files} files in /dev/shm, peak RSS "
        f"{peak['VmRSS'] / MB:,.0f} MB "
        f"= {row['peak_rss_over_budget']:.3f}x budget, {row['rss_per_session_bytes'] / 1024:,.0f} KB RSS "
        "per session"
    )
    return row


def bench_put_burst(
    log, budget_mb: int = 256, clients: int = 16, batch_mb: int = 60, rounds: int = 5
) -> dict:
    """``clients`` writers at once, each putting batches of ``batch_mb`` 1 MB values
    (far past the budget): the server's peak RSS against its budget."""
    from ..server.admin import AdminClient
    from ..server.client import DatasetCache

    server = _start_cache_server(memory=f"{budget_mb}M", no_spill=True)
    sampler = _Peak(server.pid)
    errors: list[str] = []
    try:
        with AdminClient("127.0.0.1", server.port) as admin:
            sid = admin.new_session()["session_id"]
            cap = admin.status()["max_message_bytes"]
        value = b"z" * MB

        def writer(k: int) -> None:
            cache = DatasetCache(
                sid,
                port=server.port,
                pipeline="burst",
                use_shm=False,
                num_connections=1,
                max_message_bytes=256 * MB,
            )
            try:
                for r in range(rounds):
                    cache.put_many(np.arange(batch_mb) + 1000 * k + 100_000 * r, [value] * batch_mb)
            except Exception as exc:  # reported in the row: a writer must not fail
                errors.append(f"{type(exc).__name__}: {exc}")
            cache.close()

        threads = [threading.Thread(target=writer, args=(k,)) for k in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        peak = sampler.stop()
        server.stop()
    budget = budget_mb * MB
    row = dict(
        transport="grpc",
        api="put-burst",
        value_bytes=MB,
        budget_bytes=budget,
        clients=clients,
        batch_bytes=batch_mb * MB,
        max_message_bytes=cap,
        writer_errors=len(errors),
        peak_rss_bytes=peak["VmRSS"],
        peak_rss_over_budget=round(peak["VmRSS"] / budget, 3),
    )
    log(
        f"put-burst: {clients} writers x {rounds} batches of {batch_mb} MB into a {budget_mb} MB server "
        f"(message cap {cap / MB:.0f} MB): peak RSS {peak['VmRSS'] / MB:,.0f} MB = "
        f"{row['peak_rss_over_budget']:.3f}x budget, {len(errors)} writer errors"
    )
    return row
