"""Heads compute what they were trained on; composition finds the known best answer."""

import numpy as np
import pytest
import torch

from spidercache.errors import UserError
from spidercache.inference.compose import assess, compose
from spidercache.inference.explore import Exploration, HeadRecord
from spidercache.inference.heads import (
    VARIANTS,
    Head,
    head_outputs,
    pool_activation,
    train_head,
    variants_for,
)


@pytest.mark.parametrize("variant", VARIANTS)
def test_head_runtime_input_equals_training_input(variant):
    torch.manual_seed(0)
    head = Head(variant, 16, 5).eval()
    act = torch.randn(3, 16, 14, 14)
    with torch.no_grad():
        assert torch.allclose(head(act), head.forward_stored(pool_activation(act, head.grid)), atol=1e-6)
    assert head(act).shape == (3, 5)


def test_wide_layers_offer_only_small_grids():
    assert variants_for(2048) == ["gap_linear", "pool2_mlp"]
    with pytest.raises(ValueError):
        Head("pool4_mlp", 2048, 10)
    assert "pool7_mlp" in variants_for(64) and "pool7_mlp" not in variants_for(256)
    with pytest.raises(ValueError):
        Head("pool7_mlp", 256, 10)
    assert Head("pool7_mlp", 64, 10).grid == 7 and Head("pool4_mlp", 64, 10).grid == 4


def test_head_learns_to_predict_the_base_output():
    torch.manual_seed(0)
    x = torch.randn(600, 8, 4, 4)
    # the "base model" answers by which channel has the largest mean activation
    base_logits = x.mean(dim=(2, 3))[:, :4] * 5
    head = train_head(Head("gap_linear", 8, 4), x, base_logits, None, epochs=15, batch_size=64, lr=5e-2)
    _, pred = head_outputs(head, x)
    assert (pred == base_logits.argmax(1).numpy()).mean() > 0.9


def synthetic_exploration(n=1000):
    """Three units of 10 ms; base correct on 90%.

    Head A (unit 0) is confident (0.99) and right on the first 60% of samples and
    unsure (0.6) elsewhere; head B (unit 1) is confident and WRONG on 20% of the
    samples (the ones A is unsure about), so any threshold letting B answer them
    costs accuracy. Best under a 1-point budget: A alone at a threshold in (0.6, 0.99].
    """
    labels = np.zeros(n, dtype=np.int64)
    base_pred = labels.copy()
    base_pred[-n // 10 :] = 1  # base wrong on the last 10%
    conf_a = np.where(np.arange(n) < 0.6 * n, 0.99, 0.6).astype(np.float32)
    pred_a = np.where(np.arange(n) < 0.6 * n, 0, 1)
    conf_b = np.where((np.arange(n) >= 0.6 * n) & (np.arange(n) < 0.8 * n), 0.999, 0.3).astype(np.float32)
    pred_b = np.where(conf_b > 0.5, 2, 0)

    def rec(unit, conf, pred, mem=1000):
        return HeadRecord(unit, f"u{unit}", "gap_linear", 4, {}, mem, {1: 0.1, 32: 0.5}, conf, pred)

    return Exploration(
        base_fingerprint="x",
        network="synthetic",
        input_shape=(1, 4, 4),
        num_classes=3,
        unit_names=["u0", "u1", "u2"],
        unit_channels=[4, 4, 4],
        unit_ms={1: [10.0, 10.0, 10.0], 32: [100.0, 100.0, 100.0]},
        finish_ms={1: 0.0, 32: 0.0},
        heads=[rec(0, conf_a, pred_a), rec(1, conf_b, pred_b)],
        val_labels=labels,
        val_base_pred=base_pred,
    )


def test_compose_finds_the_known_optimum_exactly():
    ex = synthetic_exploration()
    comp = compose(ex, epsilon=1.0, batch=1, z=0.0)
    assert comp.exact
    assert len(comp.choices) == 1
    head, threshold = comp.choices[0]
    assert head == 0 and 0.6 < threshold <= 0.99
    # 60% exit after unit 0 (10 ms + head), 40% run all three units and the head
    assert comp.expected_ms == pytest.approx(0.6 * 10.1 + 0.4 * 30.1)
    assert comp.val_accuracy == pytest.approx(90.0)
    assert comp.hit_rates == [pytest.approx(60.0)]


def test_greedy_search_agrees_with_exhaustive_search_here():
    ex = synthetic_exploration()
    exact = compose(ex, epsilon=1.0, z=0.0)
    greedy = compose(ex, epsilon=1.0, z=0.0, max_exact=0)
    assert not greedy.exact
    assert greedy.expected_ms == pytest.approx(exact.expected_ms)


def test_budget_limits_are_respected():
    ex = synthetic_exploration()
    # A large budget lets head B answer too (it is cheaper although wrong)
    loose = compose(ex, epsilon=25.0, z=0.0)
    assert {h for h, _ in loose.choices} == {0, 1}
    assert loose.loss_bound <= 25.0
    # No memory for any head: nothing is chosen and latency is the base model's
    none = compose(ex, epsilon=25.0, z=0.0, memory_budget=10)
    assert none.choices == [] and none.expected_ms == pytest.approx(none.base_expected_ms)
    # The confidence bound makes the search more careful, never less
    careful = compose(ex, epsilon=1.0, z=3.0)
    assert careful.loss_bound <= 1.0


def _with_errors_held_out(n: int = 200, seed: int = 0):
    """The synthetic exploration with a base right everywhere, and head B confident and right
    wherever the search looks (the images ``compose(holdout=0.5, seed=seed)`` chooses on) but
    wrong on 8 of the held-out images that reach it (past head A's 60 %)."""
    ex = synthetic_exploration(n)
    ex.val_base_pred[:] = ex.val_labels
    held_out = np.random.default_rng(seed).permutation(n)[: n // 2]
    b = ex.heads[1]
    b.val_conf[:] = 0.999
    b.val_pred[:] = ex.val_labels
    b.val_pred[[i for i in held_out if i >= 0.6 * n][:8]] = 2
    return ex


def test_a_held_out_check_refuses_what_only_looked_safe_where_it_was_chosen():
    ex = _with_errors_held_out()
    unchecked = compose(ex, epsilon=5.0, z=0.0, folds=0)
    assert 1 in {h for h, _ in unchecked.choices}  # B answers at unit 1: 4 % wrong on the whole split
    checked = compose(ex, epsilon=5.0, z=0.0, holdout=0.5)
    assert checked.checked_on == 100
    # B looks free on the images chosen on, so every lowered budget takes it again: no heads at all
    assert checked.choices == [] and checked.loss_bound == 0.0 and checked.select_epsilon is None
    assert compose(ex, epsilon=9.0, z=0.0, holdout=0.5).loss_bound == pytest.approx(8.0)  # within 9


def test_a_held_out_check_keeps_a_choice_that_holds_there():
    ex = synthetic_exploration()
    checked = compose(ex, epsilon=1.0, z=0.0, holdout=0.5)
    assert [h for h, _ in checked.choices] == [0] and checked.select_epsilon == 1.0
    assert checked.hit_rates == [pytest.approx(60.0)]  # reported on the whole validation split


@pytest.mark.parametrize("holdout", [1.0, -0.5, 0.999])
def test_a_holdout_that_leaves_a_side_empty_is_one_clear_error(holdout):
    with pytest.raises(UserError, match="--holdout"):
        compose(synthetic_exploration(), epsilon=1.0, holdout=holdout)


def _noisy_exploration(n: int = 600, seed: int = 3):
    """Three units; two heads whose confidence says little about being right (each right on about
    93 % of images at any confidence): a threshold search can only fit the noise of the split."""
    ex = synthetic_exploration(n)
    rng = np.random.default_rng(seed)
    ex.val_base_pred[:] = np.where(rng.random(n) < 0.95, ex.val_labels, 1)
    for h in ex.heads:
        h.val_conf[:] = rng.uniform(0.5, 1.0, n).astype(np.float32)
        h.val_pred[:] = np.where(rng.random(n) < 0.93, ex.val_labels, 2)
    return ex


def test_the_optimism_correction_is_the_documented_estimate_and_lowers_the_budget_by_it():
    from spidercache.inference.compose import split_of

    ex = _noisy_exploration()
    plain = compose(ex, epsilon=2.0, z=0.0, folds=0)
    corrected = compose(ex, epsilon=2.0, z=0.0, folds=4, seed=7)
    # by hand: 4 parts of a seeded permutation; search on 3, loss left out minus loss chosen on
    parts = np.array_split(np.random.default_rng(7).permutation(len(ex.val_labels)), 4)
    gaps = []
    for k in range(4):
        rest = np.concatenate(parts[:k] + parts[k + 1 :])
        comp = compose(split_of(ex, rest), epsilon=2.0, z=0.0, folds=0)
        loss = []
        for idx in (parts[k], rest):
            sub = split_of(ex, idx)
            b, g, _ = assess(ex, comp, [h.val_conf for h in sub.heads], [h.val_pred for h in sub.heads],
                             sub.val_labels, sub.val_base_pred)  # fmt: skip
            loss.append(b - g)
        gaps.append(loss[0] - loss[1])
    assert corrected.optimism == pytest.approx(max(0.0, float(np.mean(gaps))))
    assert corrected.optimism > 0.5  # noise is all there is to fit here
    assert corrected.select_epsilon == pytest.approx(2.0 - corrected.optimism) and corrected.epsilon == 2.0
    again = compose(ex, epsilon=corrected.select_epsilon, z=0.0, folds=0)
    assert corrected.choices == again.choices and corrected.loss_bound <= corrected.select_epsilon + 1e-9
    assert plain.optimism is None and corrected.expected_ms >= plain.expected_ms


def test_no_correction_where_the_folds_would_be_too_small():
    comp = compose(synthetic_exploration(6), epsilon=1.0, folds=4)
    assert comp.optimism is None and comp.select_epsilon is None


@pytest.mark.parametrize("folds", [1, -2])
def test_a_fold_count_of_one_or_below_zero_is_one_clear_error(folds):
    with pytest.raises(UserError, match="--folds"):
        compose(synthetic_exploration(), epsilon=1.0, folds=folds)
