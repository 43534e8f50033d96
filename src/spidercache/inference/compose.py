"""Composition: which heads to keep, at which thresholds, under an accuracy and a memory budget.

The problem. Each candidate layer (unit) ``l`` may get at most one head ``h``
with a threshold ``t``. A request runs units in order; at a unit with a head it
pays the head's cost and exits when the head's max-softmax ``>= t``; a request
no head takes pays the whole network. We minimise the expected latency of a
batch of size ``B`` subject to

* accuracy loss ``<= epsilon`` points against the base model, measured on the
  VALIDATION split (the test split is never looked at): the loss is the mean of
  ``d_i = base_correct_i - gati_correct_i`` plus ``z`` standard errors of that
  mean (an upper confidence bound, so that a threshold that only just fits the
  validation split is not taken: that is what overfitting the split looks like);
* total head memory ``<= memory_budget`` bytes.

The cost model. Unit ``i`` on ``m`` samples costs ``a_i + b_i m`` (fitted
from the timings at batch 1 and 32). With ``r_i`` the fraction of validation
samples still running at unit ``i``, a batch of ``B`` costs
``sum_i (1 - (1 - r_i)^B) a_i + b_i B r_i`` (independent exits assumed); at
``B = 1`` that is exactly ``sum_i r_i c_i``.

The search. Thresholds come from a fixed grid. When the number of complete
assignments (product over layers of 1 + variants x thresholds) is at most
``max_exact`` they are all enumerated: the answer is then EXACT for the grid
and the cost model. Otherwise (ResNet-18 has about 10^17) a best-improvement
coordinate descent is run: from "no heads", repeatedly change the one layer's
choice (add, remove, other variant, other threshold) that lowers the expected
latency most while staying feasible, until no change helps; it is repeated
from every feasible single-head start among the best few and the best result
is kept. That is a local optimum, NOT guaranteed exact; on small problems where
both run, tests check it against the exhaustive answer.

Held-out check (``holdout``). A bound measured on the images the thresholds were
chosen on is optimistic: among thousands of assignments the search keeps one
whose loss on those images happens to be low (the winner's curse). Measured on
the converged ResNet-34 (docs/bench/gati.md): choosing on half of the validation
split with z = 1, the other half lost 0.8-1.2 points more than the half chosen on,
about what the test split lost. With ``holdout`` h, thresholds are chosen on a
fixed random (1 - h) of the validation images and the bound is measured on the
other h, which the search never saw; while it is over ``epsilon``, the search's
own budget is lowered by the excess and the choice made again (at most
``rounds`` times, then no heads). ``loss_bound`` is then the held-out bound.

Optimism correction (``folds``, on by default). The held-out check needs a held-out half
large enough to vouch for the budget alone (it kept no heads at epsilon <= 1 on 2,500 images).
The correction estimates how much the search's choice flatters the images it chose on and
lowers the budget by that much: the validation images are cut into ``folds`` parts; for each,
the search runs on the others, and the loss on the left-out part minus the loss on the others
is its optimism; the mean (never below 0) comes off ``epsilon`` and the final search runs on
all the images with what is left (``select_epsilon``; the estimate is ``optimism``): Efron's
and Harrell's optimism estimate, applied to the threshold search. On validation halves of the
three converged full-data bases (choose on one half, judge on the other, 3 splits; the test
split never read), the judged half lost 0.21-0.71 points at epsilon 0.5 / 1 where the plain
search lost 0.61-1.21, for 20-60 % less expected speedup (docs/bench/gati.md).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field, replace
from functools import partial

import numpy as np

from ..errors import UserError
from .explore import Exploration

FOLDS = 4  # set a priori (not tuned): 4 searches on 3/4 of the validation images each
THRESHOLDS = (
    0.5,
    0.6,
    0.7,
    0.8,
    0.85,
    0.9,
    0.93,
    0.95,
    0.97,
    0.98,
    0.99,
    0.995,
    0.998,
    0.999,
    0.9995,
    0.9999,
)


@dataclass
class Composition:
    batch: int
    epsilon: float
    choices: list[tuple[int, float]]  # (head index into exploration.heads, threshold), by unit order
    expected_ms: float
    base_expected_ms: float
    val_base_accuracy: float
    val_accuracy: float
    loss_bound: float
    memory_bytes: int
    exact: bool
    hit_rates: list[float] = field(default_factory=list)  # percent of requests answered by each chosen head
    checked_on: int = 0  # held-out validation images loss_bound was measured on (0: the ones chosen on)
    select_epsilon: float | None = None  # the search's budget after the held-out check or correction
    optimism: float | None = None  # the correction's optimism estimate, points (None: not run)

    def describe(self, exploration: Exploration) -> list[str]:
        return [f"{exploration.heads[h].name}@{t:g}" for h, t in self.choices]


class _Problem:
    """Validation arrays and costs, precomputed for fast evaluation of assignments."""

    def __init__(self, ex: Exploration, batch: int, z: float) -> None:
        self.ex, self.batch, self.z = ex, batch, z
        self.n_units = len(ex.unit_names)
        labels = ex.val_labels
        self.n = len(labels)
        self.base_correct = (ex.val_base_pred == labels).astype(np.int8)
        self.head_correct = [(h.val_pred == labels).astype(np.int8) for h in ex.heads]
        self.conf = [h.val_conf for h in ex.heads]
        self.unit_ab = [self._fit(ex.unit_ms, i) for i in range(self.n_units)]
        self.finish_ab = self._fit({b: [ex.finish_ms[b]] for b in ex.finish_ms}, 0)
        self.head_ab = [self._fit({b: [h.latency_ms[b]] for b in h.latency_ms}, 0) for h in ex.heads]
        self.by_unit: dict[int, list[int]] = {}
        for k, h in enumerate(ex.heads):
            self.by_unit.setdefault(h.unit, []).append(k)

    @staticmethod
    def _fit(table: dict[int, list[float]], i: int) -> tuple[float, float]:
        """(a, b) of cost = a + b m from the smallest and largest measured batch."""
        sizes = sorted(table)
        lo, hi = sizes[0], sizes[-1]
        c_lo, c_hi = table[lo][i], table[hi][i]
        if hi == lo:
            return c_lo, 0.0
        b = max(0.0, (c_hi - c_lo) / (hi - lo))
        return max(0.0, c_lo - b * lo), b

    def _cost(self, ab: tuple[float, float], r: float) -> float:
        a, b = ab
        return (1.0 - (1.0 - r) ** self.batch) * a + b * self.batch * r

    def base_cost(self) -> float:
        return sum(self._cost(ab, 1.0) for ab in self.unit_ab) + self._cost(self.finish_ab, 1.0)

    def evaluate(self, choices: dict[int, tuple[int, float]]):
        """(expected ms, loss bound in points, gati accuracy %, hit rates %) of an assignment."""
        remaining = np.ones(self.n, dtype=bool)
        correct = self.base_correct.copy()
        cost = 0.0
        hit_rates = []
        for i in range(self.n_units):
            r = remaining.mean()
            cost += self._cost(self.unit_ab[i], r)
            choice = choices.get(i)
            if choice is None or r == 0:
                continue
            h, t = choice
            cost += self._cost(self.head_ab[h], r)
            hits = remaining & (self.conf[h] >= t)
            correct[hits] = self.head_correct[h][hits]
            remaining &= ~hits
            hit_rates.append(float(hits.mean() * 100))
        cost += self._cost(self.finish_ab, remaining.mean())
        d = self.base_correct.astype(np.float64) - correct
        bound = (
            100.0 * (d.mean() + self.z * d.std(ddof=1) / math.sqrt(self.n))
            if self.n > 1
            else 100.0 * d.mean()
        )
        return cost, bound, float(correct.mean() * 100), hit_rates

    def memory(self, choices: dict[int, tuple[int, float]]) -> int:
        return sum(self.ex.heads[h].memory_bytes for h, _ in choices.values())


def compose(
    ex: Exploration,
    epsilon: float = 1.0,
    batch: int = 1,
    memory_budget: int | None = None,
    z: float = 1.0,
    thresholds: tuple[float, ...] = THRESHOLDS,
    max_exact: int = 20000,
    restarts: int = 4,
    holdout: float = 0.0,
    rounds: int = 4,
    seed: int = 0,
    folds: int = FOLDS,
) -> Composition:
    """Choose heads and thresholds; see the module docstring for the algorithm.

    ``holdout`` > 0: chosen on the other validation images and bounded on these (``rounds``
    tries, ``seed`` fixes the split). Else ``folds`` >= 2: the budget is lowered by the
    search's estimated optimism (``folds`` = 0: the plain search).
    """
    search = partial(compose, batch=batch, memory_budget=memory_budget, z=z, thresholds=thresholds)
    search = partial(search, max_exact=max_exact, restarts=restarts, folds=0)
    if holdout:
        return _checked(ex, epsilon, batch, z, (holdout, rounds, seed), search)
    if check_folds(folds) and len(ex.val_labels) >= 2 * folds:
        optimism = _optimism(ex, epsilon, batch, folds, seed, search)
        select = max(epsilon - optimism, 0.0)
        return replace(search(ex, epsilon=select), epsilon=epsilon, select_epsilon=select, optimism=optimism)
    prob = _Problem(ex, batch, z)
    budget = float("inf") if memory_budget is None else memory_budget

    def feasible(choices) -> tuple[bool, float]:
        if prob.memory(choices) > budget:
            return False, float("inf")
        cost, bound, _, _ = prob.evaluate(choices)
        return bound <= epsilon + 1e-12, cost

    options = {u: [None] + [(h, t) for h in hs for t in thresholds] for u, hs in prob.by_unit.items()}
    n_assignments = math.prod(len(o) for o in options.values())
    exact = n_assignments <= max_exact
    best: dict[int, tuple[int, float]] = {}
    best_cost = prob.base_cost()
    if exact:
        units = sorted(options)
        for combo in itertools.product(*(options[u] for u in units)):
            choices = {u: c for u, c in zip(units, combo) if c is not None}
            ok, cost = feasible(choices)
            if ok and cost < best_cost - 1e-12:
                best, best_cost = choices, cost
    else:
        best, best_cost = _local_search(options, feasible, best_cost, restarts)
    return _composition(prob, best, epsilon, exact)


def _composition(
    prob: _Problem,
    choices: dict,
    epsilon: float,
    exact: bool,
    held_out_bound: float | None = None,
    checked_on: int = 0,
    select_epsilon: float | None = None,
) -> Composition:
    """``choices`` ({unit: (head, threshold)}) as a Composition, priced and scored on ``prob``.

    With a held-out check (``checked_on`` images), its bound replaces ``prob``'s own.
    """
    cost, bound, acc, hit_rates = prob.evaluate(choices)
    return Composition(
        batch=prob.batch,
        epsilon=epsilon,
        choices=[choices[u] for u in sorted(choices)],
        expected_ms=cost,
        base_expected_ms=prob.base_cost(),
        val_base_accuracy=float(prob.base_correct.mean() * 100),
        val_accuracy=acc,
        loss_bound=bound if held_out_bound is None else held_out_bound,
        memory_bytes=prob.memory(choices),
        exact=exact,
        hit_rates=hit_rates,
        checked_on=checked_on,
        select_epsilon=select_epsilon,
    )


def check_folds(folds: int) -> int:
    """``folds`` if it is 0 (no correction) or at least 2, else a UserError."""
    if folds < 0 or folds == 1:
        raise UserError(f"--folds must be 0 (no optimism correction) or at least 2, got {folds}")
    return folds


def _optimism(ex: Exploration, epsilon: float, batch: int, folds: int, seed: int, search) -> float:
    """Mean over ``folds`` of (loss on the left-out part - loss on the parts chosen on), >= 0."""
    parts = np.array_split(np.random.default_rng(seed).permutation(len(ex.val_labels)), folds)
    gaps = []
    for k, left_out in enumerate(parts):
        rest = split_of(ex, np.concatenate(parts[:k] + parts[k + 1 :]))
        comp = search(rest, epsilon=epsilon)
        chosen = {ex.heads[h].unit: (h, t) for h, t in comp.choices}
        loss = [_Problem(sub, batch, 0.0).evaluate(chosen)[1] for sub in (split_of(ex, left_out), rest)]
        gaps.append(loss[0] - loss[1])
    return max(0.0, float(np.mean(gaps)))


def check_holdout(holdout: float) -> float:
    """``holdout`` if it is a share in [0, 1) (0: no held-out check), else a UserError."""
    if not 0 <= holdout < 1:
        raise UserError(f"--holdout must be in [0, 1), got {holdout:g}")
    return holdout


def _checked(ex: Exploration, epsilon: float, batch: int, z: float, how: tuple, search) -> Composition:
    """``search(exploration, epsilon=)`` on part of the validation split, its bound on the rest.

    ``how``: (holdout share, rounds, seed).
    """
    holdout, rounds, seed = how
    n = len(ex.val_labels)
    n_check = int(round(n * check_holdout(holdout)))
    if not 2 <= n_check <= n - 2:
        raise UserError(f"--holdout {holdout:g} leaves too few of the {n} validation images on one side")
    order = np.random.default_rng(seed).permutation(n)
    select, check = split_of(ex, order[n_check:]), split_of(ex, order[:n_check])
    held_out = _Problem(check, batch, z)
    target, choices, bound, exact = epsilon, {}, 0.0, True  # no heads lose nothing
    for _ in range(rounds):
        comp = search(select, epsilon=target)
        trial = {ex.heads[h].unit: (h, t) for h, t in comp.choices}
        trial_bound, exact = held_out.evaluate(trial)[1], comp.exact
        if trial_bound <= epsilon + 1e-12:
            choices, bound = trial, trial_bound
            break
        target -= trial_bound - epsilon
        if target < 0:
            break
    select_epsilon = max(target, 0.0) if choices else None
    return _composition(
        _Problem(ex, batch, 0.0),
        choices,
        epsilon,
        exact,
        held_out_bound=bound,
        checked_on=n_check,
        select_epsilon=select_epsilon,
    )


def split_of(ex: Exploration, idx: np.ndarray) -> Exploration:
    """``ex`` with only the validation images ``idx``."""
    heads = [replace(h, val_conf=h.val_conf[idx], val_pred=h.val_pred[idx]) for h in ex.heads]
    return replace(ex, heads=heads, val_labels=ex.val_labels[idx], val_base_pred=ex.val_base_pred[idx])


def _descend(options: dict, feasible, start: dict, start_cost: float) -> tuple[dict, float]:
    """Steepest descent over single-unit changes from ``start``, staying feasible."""
    current, current_cost = dict(start), start_cost
    while True:
        move, move_cost = None, current_cost
        for u, opts in options.items():
            for opt in opts:
                if current.get(u) == opt:
                    continue
                trial = dict(current)
                if opt is None:
                    trial.pop(u, None)
                else:
                    trial[u] = opt
                ok, cost = feasible(trial)
                if ok and cost < move_cost - 1e-12:
                    move, move_cost = trial, cost
        if move is None:
            return current, current_cost
        current, current_cost = move, move_cost


def _local_search(options: dict, feasible, base_cost: float, restarts: int) -> tuple[dict, float]:
    """When the assignments are too many to enumerate: descents from nothing and from the
    ``restarts`` cheapest feasible single heads; the best found."""
    singles = []
    for u, opts in options.items():
        for opt in opts[1:]:
            ok, cost = feasible({u: opt})
            if ok:
                singles.append((cost, {u: opt}))
    singles.sort(key=lambda s: s[0])
    best: dict = {}
    best_cost = base_cost
    for start_choices, start_cost in [({}, base_cost)] + [(s, c) for c, s in singles[:restarts]]:
        found, cost = _descend(options, feasible, start_choices, start_cost)
        if cost < best_cost - 1e-12:
            best, best_cost = found, cost
    return best, best_cost


def assess(
    ex: Exploration,
    comp: Composition,
    conf: list[np.ndarray],
    pred: list[np.ndarray],
    labels: np.ndarray,
    base_pred: np.ndarray,
) -> tuple[float, float, list[float]]:
    """(base accuracy %, GATI accuracy %, hit rates %) of ``comp`` on another split.

    ``conf[k]``/``pred[k]`` are head ``k``'s outputs on that split. The exit
    rule is the runtime's (first chosen head whose confidence reaches its
    threshold), so this equals running the runtime; the benchmark checks that
    on one configuration.
    """
    from dataclasses import replace

    heads = [replace(h, val_conf=c, val_pred=p) for h, c, p in zip(ex.heads, conf, pred)]
    other = replace(ex, heads=heads, val_labels=np.asarray(labels), val_base_pred=np.asarray(base_pred))
    prob = _Problem(other, comp.batch, 0.0)
    choices = {ex.heads[h].unit: (h, t) for h, t in comp.choices}
    _, _, acc, hit_rates = prob.evaluate(choices)
    return float(prob.base_correct.mean() * 100), acc, hit_rates
