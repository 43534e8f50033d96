"""The one lazy policy table: every row builds, with nothing imported first."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from spidercache.engine.policies import registry
from spidercache.errors import UserError

SRC = str(Path(__file__).resolve().parents[2] / "src")


def test_table_is_sorted_and_every_row_resolves():
    assert list(registry.POLICIES) == sorted(registry.POLICIES)
    for name in registry.POLICIES:
        cls = registry.policy_class(name)
        assert cls.name == name.removeprefix(registry.TRAINING)


def test_names_are_forgiving_and_unknown_is_a_user_error():
    assert registry.canonical_name("S3-FIFO") == "s3fifo"
    assert registry.canonical_name("belady") == "opt"
    assert registry.canonical_name("train-spider-noh") == "train-spider-noh"
    with pytest.raises(UserError, match="unknown policy 'nope'"):
        registry.make_policy("nope", 3)


def test_training_policy_through_make_policy():
    labels = np.arange(50) % 5
    p = registry.make_policy("train-lru", 10, 50, labels=labels, seed=3)
    assert p.capacity == 10 and p.n == 50 and p.seed == 3
    assert p.labels is not None and p.labels.tolist() == labels.tolist()


def test_learned_builds_in_a_fresh_process_with_no_other_import():
    code = (
        "import sys, numpy as np\n"
        "from spidercache.engine.policies import make_policy\n"
        "from spidercache.embedding.models import ModelConfig, build_model\n"
        "assert 'spidercache.embedding.policy' not in sys.modules\n"
        "m = build_model(ModelConfig(model='cache', hidden_size=8))\n"
        "p = make_policy('learned', 4, 16, model=m)\n"
        "h = p.access(np.array([1, 2, 3, 1, 5, 6, 7, 1], np.int64))\n"
        "assert h.shape == (8,) and p.size <= 4\n"
        "print('ok', type(p).__name__)\n"
    )
    env = dict(os.environ, PYTHONPATH=SRC)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok Learned"
