"""An interrupted base training goes on from its last epoch and ends bit-identical to an uninterrupted one."""

import pytest
import torch
from gati_synthetic import make_images

from spidercache.inference.resume import partial_path
from spidercache.inference.training import train_base_model


class Interrupted(Exception):
    pass


def _train(x, y, val, *, resume=None, stop_at_step=None, lines=None, lr=0.05, epochs=5):
    """``small`` on the synthetic images; ``stop_at_step`` raises there, as a kill would."""

    def progress(step, _total, _loss):
        if stop_at_step is not None and step == stop_at_step:
            raise Interrupted

    torch.manual_seed(0)
    kw = {"val_images": val[0], "val_labels": val[1]} if val else {}
    return train_base_model(
        "small",
        x,
        y,
        num_classes=4,
        epochs=epochs,
        batch_size=64,
        lr=lr,
        progress=progress,
        resume=resume,
        say=(lines if lines is not None else []).append,
        **kw,
    )


def _same_weights(a, b) -> bool:
    sa, sb = a.model.state_dict(), b.model.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture(scope="module")
def data():
    return make_images(256, seed=21), make_images(128, seed=22)


@pytest.mark.parametrize("plateau", [True, False], ids=["until-convergence", "one-cycle"])
def test_a_killed_run_resumes_after_its_last_epoch_bit_identical(tmp_path, data, plateau):
    (x, y), val = data
    val = val if plateau else None
    whole = _train(x, y, val)
    state = tmp_path / "base.pt.partial.pt"
    with pytest.raises(Interrupted):
        _train(x, y, val, resume=state, stop_at_step=10)  # 4 steps an epoch: killed in epoch 3
    lines: list[str] = []
    resumed = _train(x, y, val, resume=state, lines=lines)
    assert lines == [f"resuming from {state} after epoch 2"]
    assert resumed.meta["resumed_after_epoch"] == 2 and "resumed_after_epoch" not in whole.meta
    assert _same_weights(whole, resumed)
    assert resumed.meta["epochs"] == whole.meta["epochs"]
    if plateau:
        assert resumed.meta["val_history"] == whole.meta["val_history"]
        assert resumed.meta["converged"] == whole.meta["converged"]


def test_a_finished_state_gives_the_result_without_training_again(tmp_path, data):
    (x, y), val = data
    state = tmp_path / "s.partial.pt"
    first = _train(x, y, val, resume=state)
    steps: list[int] = []
    torch.manual_seed(0)
    again = train_base_model(
        "small", x, y, 4, epochs=5, batch_size=64, val_images=val[0], val_labels=val[1],
        progress=lambda s, _t, _l: steps.append(s), resume=state,
    )  # fmt: skip
    assert steps == [] and _same_weights(first, again)
    assert again.meta["val_history"] == first.meta["val_history"]


def test_a_state_of_another_run_or_a_broken_file_is_ignored_and_said(tmp_path, data):
    (x, y), val = data
    state = tmp_path / "s.partial.pt"
    with pytest.raises(Interrupted):
        _train(x, y, val, resume=state, stop_at_step=6)
    lines: list[str] = []
    other_lr = _train(x, y, val, resume=state, lr=0.02, lines=lines)
    assert lines == [f"ignoring {state}: written by a run with other data or settings; starting over"]
    assert "resumed_after_epoch" not in other_lr.meta
    assert _same_weights(other_lr, _train(x, y, val, lr=0.02))
    lines.clear()
    _train(x[:128], y[:128], val, resume=state, lr=0.02, lines=lines)  # other data, same settings
    assert lines and lines[0].startswith(f"ignoring {state}: written by a run with other data")
    state.write_bytes(b"not a torch file")
    lines.clear()
    _train(x, y, val, resume=state, lines=lines, epochs=1)
    assert lines == [f"ignoring {state}: not a training state (UnpicklingError)"]


def test_the_state_file_sits_beside_the_checkpoint(tmp_path):
    assert partial_path(tmp_path / "r18.pt") == tmp_path / "r18.pt.partial.pt"


def test_a_state_that_cannot_be_written_costs_the_resume_not_the_training(tmp_path, data):
    (x, y), val = data
    (tmp_path / "file").write_text("a file, not a folder")
    lines: list[str] = []
    base = _train(x, y, val, resume=tmp_path / "file" / "s.partial.pt", lines=lines, epochs=3)
    assert _same_weights(base, _train(x, y, val, epochs=3))
    assert len(lines) == 1 and lines[0].startswith(f"cannot save the training state to {tmp_path}/file/")
