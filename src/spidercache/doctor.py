"""What this machine has for Spider Cache: one line per part, so a user sees at once what is missing.

``check_environment()`` returns the checks; ``spidercache doctor`` prints them.
Each check imports or runs the real thing (a module, a server binary, a data
file) rather than guessing from names, and never fails itself: a part that is
missing or broken becomes a line that says so and how to get it.

Example::

    from spidercache.doctor import check_environment
    for c in check_environment():
        print(c.status, c.name, c.detail)
"""

from __future__ import annotations

import importlib
import os
import platform
import shutil
import subprocess
from dataclasses import asdict, dataclass
from typing import Callable

OK, MISSING, WARN = "ok", "missing", "warn"
FASHION_MNIST_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
FASHION_MNIST_ROOT = "/usr/share/datasets/fashion-mnist"


@dataclass
class Check:
    name: str
    status: str  # ok | missing | warn
    detail: str

    def as_dict(self) -> dict:
        return asdict(self)


def _python() -> Check:
    v = platform.python_version()
    ok = tuple(map(int, v.split(".")[:2])) >= (3, 10)
    return Check("python", OK if ok else MISSING, v if ok else f"{v}; Spider Cache needs Python >= 3.10")


def _torch() -> Check:
    try:
        torch = importlib.import_module("torch")
    except ImportError:
        return Check(
            "torch", MISSING, "not installed; `pip install torch==2.13.0` (the CPU wheel) or `make setup`"
        )
    cuda = getattr(torch.version, "cuda", None)
    build = f"CUDA {cuda}" if cuda else "CPU build"
    return Check("torch", OK, f"{torch.__version__} ({build})")


def _module(name: str, why: str) -> Callable[[], Check]:
    def check() -> Check:
        try:
            module = importlib.import_module(name)
        except Exception as exc:  # a broken install fails in many ways; say which
            return Check(name, MISSING, f"cannot import ({type(exc).__name__}: {exc}); needed for {why}")
        return Check(name, OK, str(getattr(module, "__version__", "installed")))

    return check


def _server_binary(binary: str, debian: str, why: str) -> Callable[[], Check]:
    def check() -> Check:
        path = shutil.which(binary) or next(
            (p for p in (f"/usr/bin/{binary}", f"/usr/sbin/{binary}") if os.access(p, os.X_OK)), None
        )
        if path is None:
            return Check(binary, MISSING, f"not found; `apt-get install {debian}` (needed for {why})")
        try:
            out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10)
            version = (
                (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else path
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return Check(binary, WARN, f"{path} does not run: {exc}")
        return Check(binary, OK, version)

    return check


def _fashion_mnist() -> Check:
    missing = [f for f in FASHION_MNIST_FILES if not os.path.isfile(os.path.join(FASHION_MNIST_ROOT, f))]
    if missing:
        return Check(
            "fashion-mnist",
            MISSING,
            f"{len(missing)} of 4 files missing under {FASHION_MNIST_ROOT}; "
            "`apt-get install dataset-fashion-mnist` (the embedded default dataset)",
        )
    return Check("fashion-mnist", OK, FASHION_MNIST_ROOT)


def _shared_memory() -> Check:
    try:
        st = os.statvfs("/dev/shm")
    except OSError as exc:
        return Check(
            "shared memory",
            MISSING,
            f"/dev/shm unavailable ({exc}); loader workers and the server's shared-memory path need it",
        )
    free = st.f_bavail * st.f_frsize
    gib = free / 2**30
    status = OK if free >= 2**30 else WARN
    hint = "" if status == OK else " (under 1 GiB: raise it, e.g. docker --shm-size)"
    return Check("shared memory", status, f"/dev/shm {gib:.1f} GiB free{hint}")


def _gpu() -> Check:
    try:
        torch = importlib.import_module("torch")
    except ImportError:
        return Check("gpu", WARN, "torch missing, GPU not checked")
    if torch.cuda.is_available():
        return Check("gpu", OK, f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}")
    return Check("gpu", WARN, "none visible to torch; everything runs on the CPU")


CHECKS: list[Callable[[], Check]] = [
    _python,
    _torch,
    _module("numba", "the policy kernels"),
    _module("hnswlib", "the spider policy's homophily index"),
    _module("grpc", "the cache server and GATI serving"),
    _module("redis", "Redis stores"),
    _module("pymemcache", "memcached stores and the weight cache"),
    _module("lmdb", "LMDB and spill stores"),
    _module("dask", "map/reduce"),
    _server_binary("redis-server", "redis-server", "Redis stores and the tests"),
    _server_binary("memcached", "memcached", "memcached stores and the tests"),
    _fashion_mnist,
    _shared_memory,
    _gpu,
]


def check_environment() -> list[Check]:
    """Run every check; missing parts are lines, not exceptions."""
    return [check() for check in CHECKS]
