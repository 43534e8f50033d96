"""The server process's allocator settings and its memory overhead.

Two measured problems, one file:

* **Big replies.** glibc serves every allocation above 32 MB (the largest
  mmap threshold it allows) with a fresh ``mmap`` and unmaps it on free, so
  every 38 MB reply (256 values of 150 KB) paid ~9,500 page faults, and zeroed
  pages, on each of its copies. With mmap off (``M_MMAP_MAX=0``) and one arena
  the freed buffer is reused warm by the next call; measured on the 2-core box
  this took batched 150 KB gets from 0.33x to ~0.7x Redis MGET.
* **RSS within the budget.** One arena (``M_ARENA_MAX=1``) instead of one per
  worker thread stops eight threads each keeping their own few MB of freed
  request buffers, and ``release_free_memory`` (``malloc_trim``) on the
  server's 0.5 s heartbeat hands freed heap pages back to the OS between bursts.

These settings touch only the server process (the daemon, or ``server start
--foreground``), never a client's.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger("spidercache.server")

# mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_MAX = -4
M_ARENA_MAX = -8

_libc = None


def _load_libc():
    global _libc
    if _libc is None:
        try:
            lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            lib.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
            lib.malloc_trim.argtypes = [ctypes.c_size_t]
            _libc = lib
        except (OSError, AttributeError):  # not glibc: keep the defaults
            _libc = False
    return _libc


def tune_allocator() -> bool:
    """Apply the settings above; False where the C library is not glibc."""
    libc = _load_libc()
    if not libc:
        return False
    ok = all(
        [
            libc.mallopt(M_ARENA_MAX, 1),
            libc.mallopt(M_MMAP_MAX, 0),
            # freed memory stays in the heap between heartbeats (reused warm);
            # release_free_memory returns it to the OS
            libc.mallopt(M_TRIM_THRESHOLD, 1 << 30),
            libc.mallopt(M_TOP_PAD, 16 << 20),
        ]
    )
    if not ok:
        log.warning("mallopt refused a setting; the allocator keeps some defaults")
    return True


def release_free_memory() -> None:
    """Give the heap's free pages back to the OS (glibc ``malloc_trim``)."""
    libc = _load_libc()
    if libc:
        libc.malloc_trim(0)


def rss_breakdown(pid: int | str = "self") -> dict[str, int]:
    """A process's resident set in bytes: ``VmRSS`` and its parts ``RssAnon``
    (private memory), ``RssShmem`` (shared-memory slots) and ``RssFile`` (pages
    of mapped files: the shared libraries, ~28 MB for the server, and the LMDB
    maps of spill files; page cache the kernel can drop)."""
    out = dict.fromkeys(("VmRSS", "RssAnon", "RssShmem", "RssFile"), 0)
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key = line.split(":", 1)[0]
            if key in out:
                out[key] = int(line.split()[1]) * 1024
    return out


def rss_bytes(pid: int | str = "self") -> int:
    """A process's resident set (VmRSS)."""
    return rss_breakdown(pid)["VmRSS"]


# Request and reply buffers beyond the process's footprint at start, measured
# while a writer put 2 GB of 3 KB values (3 MB messages) into a 1 GB server:
# anonymous memory grew by ~53 MB over its idle size.
IO_ALLOWANCE = 48 << 20


def reserve_for_process(memory_bytes: int) -> int:
    """Bytes of the total budget ``-m`` kept for the server process itself: its
    resident size now (Python, gRPC, numpy: ~60 MB) plus ``IO_ALLOWANCE``. At
    most half the budget, so a small server still caches something (its RSS
    then exceeds ``-m``; the log says so)."""
    want = rss_bytes() + IO_ALLOWANCE
    if want > memory_bytes // 2:
        log.warning(
            "a memory budget of %d MB is below twice the server's own footprint (%d MB): "
            "half of it goes to data, and the process may use more than the budget",
            memory_bytes >> 20,
            want >> 20,
        )
        return memory_bytes // 2
    return want
