"""The README runs as written (issue 14): every ``sh`` and ``python`` block is executed from a
scratch directory, and every link in it points inside the repository.

``text`` blocks are the long or server-needing examples; the README gives their duration.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```(sh|python)\n(.*?)```", README, re.S)


def _env() -> dict:
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_readme_has_runnable_blocks():
    assert sum(kind == "sh" for kind, _ in BLOCKS) >= 2 and sum(kind == "python" for kind, _ in BLOCKS) >= 2


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_block_runs(index, tmp_path):
    kind, code = BLOCKS[index]
    cmd = ["bash", "-euo", "pipefail", "-c", code] if kind == "sh" else [sys.executable, "-c", code]
    proc = subprocess.run(cmd, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"README block {index} ({kind}) failed:\n{code}\n{proc.stderr[-3000:]}"
    assert "Traceback" not in proc.stderr


def test_readme_links_stay_inside_the_repository():
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README):
        assert "://" not in target, target
        assert (ROOT / target).resolve().is_relative_to(ROOT) and (ROOT / target).exists(), target
