"""The ETA line of the long GATI commands, on a fake clock."""

from spidercache.inference import progress
from spidercache.inference.progress import Eta


def _run(monkeypatch, calls):
    clock = iter(t for t, _ in [(0.0, None)] + calls)
    monkeypatch.setattr(progress.time, "perf_counter", lambda: next(clock))
    lines: list[str] = []
    eta = Eta(lines.append, "step", every=0.0)
    for _, (done, total) in calls:
        eta(done, total)
    return lines


def test_eta_scales_elapsed_by_the_work_left(monkeypatch):
    lines = _run(monkeypatch, [(10.0, (1, 10)), (50.0, (5, 10))])
    assert lines[0] == "step 1/10 (10%), elapsed 0:10, ETA 1:30"
    assert lines[1] == "step 5/10 (50%), elapsed 0:50, ETA 0:50"


def test_a_resumed_run_leaves_the_earlier_runs_steps_out_of_the_rate(monkeypatch):
    # resumed after 1,760 of 7,040 steps: 2 steps in 4 s here leave 5,278 steps at 2 s each
    lines = _run(monkeypatch, [(2.0, (1761, 7040)), (4.0, (1762, 7040))])
    assert lines[0].endswith("elapsed 0:02, ETA 2:55:58")
    assert lines[1].endswith("elapsed 0:04, ETA 2:55:56")
