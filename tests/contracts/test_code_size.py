"""Files under 400 lines, functions under 80, in src/ (issue 13's figures).

Exceptions are listed by name with the reason: generated code, and the
hand-inlined numba policy kernels (one loop over a batch, inlined by hand so
that numba keeps the state in registers).
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "spidercache"
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 80
GENERATED = {
    "server/cache_pb2.py",
    "server/cache_pb2_grpc.py",
    "inference/gati_pb2.py",
    "inference/gati_pb2_grpc.py",
}
# hand-inlined policy kernels: "file:function"
KERNELS = {
    "engine/policies/arc.py:_arc_access",
    "engine/policies/lfu.py:_lfu_access",
    "engine/policies/s3fifo.py:_s3fifo_run",
    "engine/policies/_arc_sized.py:arc_access_sized",
    "engine/policies/_lfubuckets.py:_lfu_access_sized",
    "engine/policies/_slotbits.py:access_bits_sized",
    "engine/policies/_slotlist.py:access_sized",
    "engine/policies/lecar.py:_lecar_access",
    "engine/policies/twoq.py:_twoq_access_fast",
    "engine/policies/wtinylfu.py:_wtlfu_access",
    "embedding/oracle_sampled.py:_sampled_sim",  # the sampled oracle policy's simulation loop
}
# files of hand-inlined policy kernels (the issue allows them over 400 lines)
KERNEL_FILES = {"engine/policies/arc.py", "engine/policies/s3fifo.py"}


def _files() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if p.relative_to(SRC).as_posix() not in GENERATED)


def test_no_file_over_400_lines():
    long = {
        p.relative_to(SRC).as_posix(): n
        for p in _files()
        if (n := len(p.read_text().splitlines())) > MAX_FILE_LINES
        and p.relative_to(SRC).as_posix() not in KERNEL_FILES
    }
    assert not long, f"files over {MAX_FILE_LINES} lines: {long}"


def test_no_function_over_80_lines():
    long = {}
    for p in _files():
        rel = p.relative_to(SRC).as_posix()
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                name = f"{rel}:{node.name}"
                if n > MAX_FUNCTION_LINES and name not in KERNELS:
                    long[name] = n
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"
