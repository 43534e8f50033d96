"""Training a base until validation accuracy stops improving; the best epoch's weights are the ones kept."""

import torch
from gati_synthetic import make_images

from spidercache.inference.basemodel import evaluate
from spidercache.inference.training import _Plateau, train_base_model


def test_stops_on_a_plateau_and_keeps_the_best_epoch():
    torch.manual_seed(0)
    x, y = make_images(256, seed=11)
    vx, vy = make_images(128, seed=12)
    seen = []
    base = train_base_model(
        "small",
        x,
        y,
        num_classes=4,
        epochs=12,
        batch_size=64,
        lr=0.05,
        val_images=vx,
        val_labels=vy,
        patience=2,
        on_epoch=seen.append,
    )
    meta = base.meta
    assert (
        [h["epoch"] for h in meta["val_history"]]
        == list(range(1, len(seen) + 1))
        == [h["epoch"] for h in seen]
    )
    best = max(h["val_accuracy"] for h in meta["val_history"])
    assert meta["val_accuracy"] == best and evaluate(base, vx, vy) == best  # the best epoch's weights
    if meta["converged"]:  # stopped by itself: the last two epochs gained at most 0.1 point each
        assert meta["epochs"] <= 12 and len(seen) >= 3
        assert all(h["val_accuracy"] <= best for h in seen[-2:])
        assert seen[-1]["lr"] < seen[0]["lr"]  # the rate was cut on the way
    else:
        assert meta["epochs"] == 12
    fixed = train_base_model("small", x, y, num_classes=4, epochs=2, batch_size=64)
    assert fixed.meta["epochs"] == 2 and "converged" not in fixed.meta  # fixed schedule: nothing to claim


def test_train_base_says_when_one_epoch_could_not_converge():
    from spidercache.inference.build import train_base
    from spidercache.inference.datasets import ImageSplits

    torch.manual_seed(0)
    x, y = make_images(192, seed=13)
    data = ImageSplits(x, y, x[:16], y[:16], [str(i) for i in range(4)], "synthetic")
    lines: list[str] = []
    base = train_base(
        data, "small", epochs=1, train_samples=96, head_samples=32, val_samples=64, say=lines.append
    )
    assert base.meta["converged"] is False and base.meta["epochs"] == 1
    said = [m for m in lines if m.startswith("NOT converged")]
    assert said == [
        "NOT converged: training did not stop by itself within 1 epoch(s) "
        f"(best validation {base.meta['val_accuracy']:.2f}% at epoch 1)"
    ]


def test_a_gain_of_exactly_min_delta_is_a_stall_whichever_way_it_rounds():
    # of 5,000 images: 93.60000000000001 - 93.5 rounds above 0.1 and 93.42 - 93.32000000000001
    # below (ResNet-50's and ResNet-34's last epochs on the full split): both are stalls
    model = torch.nn.Linear(2, 2)
    for before, after in [(4675 / 5000 * 100, 4680 / 5000 * 100), (4666 / 5000 * 100, 4671 / 5000 * 100)]:
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        stop = _Plateau(patience=2)
        stop.update({"val_accuracy": 80.0}, model, opt)
        stop.update({"val_accuracy": before}, model, opt)
        assert not stop.update({"val_accuracy": before - 1.0}, model, opt)  # a first stall
        assert stop.update({"val_accuracy": after}, model, opt)  # the second stops training
        assert stop.best == after  # and the best weights are still that epoch's
