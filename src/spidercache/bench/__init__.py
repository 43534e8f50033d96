"""Benchmarks: one module per benchmark, each a function that returns rows.

``BENCHMARKS`` names them as lazy ``"module:function"`` strings (one line each,
sorted); nothing is imported until a benchmark is asked for, and nothing
registers itself by import. ``spidercache bench`` lists them and
``spidercache bench NAME [options]`` runs one through ``bench/runner.py``,
which builds the options from the function's signature.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any, Callable

from ..errors import UserError

BENCHMARKS: dict[str, str] = {
    "embed": "spidercache.bench.embed:run",
    "epochs": "spidercache.bench.epochs:run",
    "gati": "spidercache.bench.gati:run",
    "kernels": "spidercache.bench.kernels:run",
    "loader": "spidercache.bench.loader:run",
    "server": "spidercache.bench.server:run",
    "sim": "spidercache.bench.sim:run",
    "spider": "spidercache.bench.spider:run",
    "train": "spidercache.bench.train:run",
    "weights": "spidercache.bench.weights:run",
}


def available(name: str) -> bool:
    """Whether the benchmark's module is in this build (without importing it)."""
    module_name = BENCHMARKS[name].split(":")[0]
    return importlib.util.find_spec(module_name) is not None


def load(name: str) -> Callable[..., Any]:
    """The function of benchmark ``name``; ``UserError`` for an unknown or missing one."""
    if name not in BENCHMARKS:
        raise UserError(f"unknown benchmark {name!r}; choose from {', '.join(sorted(BENCHMARKS))}")
    module_name, attr = BENCHMARKS[name].split(":")
    if not available(name):
        raise UserError(f"benchmark {name!r} is not in this build: module {module_name} is missing")
    return getattr(importlib.import_module(module_name), attr)
