"""Base training under bfloat16 autocast: it learns, it is recorded, and it never resumes an fp32 state."""

import pytest
import torch
from gati_synthetic import make_images

from spidercache.errors import UserError
from spidercache.inference.basemodel import evaluate
from spidercache.inference.training import check_precision, train_base_model


def _train(x, y, precision, **kw):
    torch.manual_seed(0)
    return train_base_model("small", x, y, num_classes=4, epochs=3, batch_size=64, precision=precision, **kw)


def test_bf16_learns_as_well_as_fp32_and_serves_in_float32():
    (x, y), (vx, vy) = make_images(512, seed=31), make_images(256, seed=32)
    full, mixed = _train(x, y, "fp32"), _train(x, y, "bf16")
    assert mixed.meta["precision"] == "bf16" and full.meta["precision"] == "fp32"
    assert all(p.dtype == torch.float32 for p in mixed.model.parameters())
    acc_full, acc_mixed = evaluate(full, vx, vy), evaluate(mixed, vx, vy)
    assert acc_mixed > 90 and abs(acc_mixed - acc_full) < 5, (acc_mixed, acc_full)
    # the arithmetic differs, so the weights do: bf16 really ran
    assert not torch.equal(full.model.state_dict()["fc.weight"], mixed.model.state_dict()["fc.weight"])


def test_an_fp32_state_is_not_resumed_by_a_bf16_run(tmp_path):
    (x, y), val = make_images(128, seed=33), make_images(64, seed=34)
    state = tmp_path / "b.pt.partial.pt"
    _train(x, y, "fp32", val_images=val[0], val_labels=val[1], resume=state)
    lines: list[str] = []
    _train(x, y, "bf16", val_images=val[0], val_labels=val[1], resume=state, say=lines.append)
    assert lines == [f"ignoring {state}: written by a run with other data or settings; starting over"]


def test_an_unknown_precision_is_one_clear_error():
    with pytest.raises(UserError, match="--precision must be one of fp32, bf16, got 'fp16'"):
        check_precision("fp16")
    with pytest.raises(UserError):
        _train(*make_images(64, seed=35), "fp8")
