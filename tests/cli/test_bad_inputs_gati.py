"""More `gati` bad inputs, kept by the rule of ``test_bad_inputs`` (one ``error:`` line, exit 2)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from test_bad_inputs import make_inputs, run_case

TRAIN = ("gati", "train-base", "--out", "{tmp}/b.pt", "--network", "small", "--epochs", "1")
SMALL = ("--train-samples", "4", "--head-samples", "2", "--val-samples", "2")

CASES: list[tuple[str, ...]] = [
    (*TRAIN, *SMALL, "--dataset", "{neg_npz}"),  # labels -1: no IndexError deep in training
    (*TRAIN, *SMALL, "--dataset", "{big_float_npz}"),  # float pixels beyond 0..255
    ("gati", "query", "{img}", "--address", ""),  # no gRPC C-core log lines before the error
]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("badgati")
    found = make_inputs(tmp)
    y = np.arange(10) % 2
    np.savez(tmp / "big_float.npz", x=np.full((10, 3, 16, 16), 300.0, np.float32), y=y)
    return {**found, "big_float_npz": str(tmp / "big_float.npz")}


def test_every_bad_gati_input_is_one_error_line(inputs):
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda case: run_case(case, inputs), CASES))
    failures = [f"{' '.join(case)}: {why}" for case, why in zip(CASES, results) if why]
    assert not failures, f"{len(failures)} of {len(CASES)} cases break the rule:\n" + "\n".join(failures)
