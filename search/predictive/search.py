"""The predictive search's state and its step, whatever the outcomes come from: the simulator and the replay
(benchmarks/sim_predictive.py) pass a function returning recorded or simulated dev outcomes; a sweep driver passes one
that reads its trials' outcome files. Numpy only.

    start   `init_share` of the cells (at least 2), drawn to cover every method, support and query level: one seed
            each at the full budget (dev scored at each fraction of `fractions` on the way, for the learning curve)
    step    refit the map model (map_model.fit) to every run's dev outcomes at its highest fraction; among "one more
            seed of cell c to fraction f" (f in `fractions`) and "continue c's short run to the full budget", take
            the `batch` of highest knowledge gradient per second (choose.best_actions), distinct cells
    stop    when the best value is below `min_value` points per full trial's seconds (or the budget is spent)
    answer  per target the finished cell of highest posterior mean, the cells that may still be best, and for every
            cell never run its predicted gain with an interval (choose.picks, choose.contenders, Posterior.interval)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

import numpy as np

from xlamaml.search.adaptive.rule import SEED_SD_POINTS, seed_variance
from xlamaml.search.predictive.choose import Action, best_actions, initial_cells
from xlamaml.search.predictive.map_model import (Curve, Design, Observation, Posterior, dev_observation, fit,
                                                 shared_item_var, shared_seed_var)
from xlamaml.search.predictive.side_info import cell_distances
from xlamaml.search.predictive_config import PredictiveConfig

# A run's share of dev items that differ from the baseline's, assumed where none was measured yet (the recorded maps
# measure 0.24-0.25; the simulator assumes 0.17).
DISAGREE_PRIOR = 0.2

# (cell, fraction, seeds) -> (targets, len(seeds), items) 0/1 dev outcomes of those seeds' runs at that fraction.
Outcomes = Callable[[int, float, Sequence[int]], np.ndarray]
# (fraction from, fraction to, dev reports) -> seconds of running a trial between them and scoring dev that often.
Seconds = Callable[[float, float, int], float]


@dataclass
class SearchState:
    """What the search has run: per cell index, its seeds (0, 1, ... in the order run) and the fraction each reached."""

    reached: dict[int, dict[int, float]] = field(default_factory=dict)

    def finished(self, n_cells: int) -> np.ndarray:
        """Return (cells,) whether each cell has a seed at the full budget."""
        return np.array([any(f >= 1 for f in self.reached.get(c, {}).values()) for c in range(n_cells)])

    def full_seeds(self, cell: int) -> list[int]:
        """Return the cell's seeds that reached the full budget."""
        return [s for s, f in self.reached.get(cell, {}).items() if f >= 1]

    def apply(self, act: Action) -> None:
        """Record an action's run: a new seed at its fraction, or the cell's short run continued; return None."""
        seeds = self.reached.setdefault(act.cell, {})
        if act.continues:
            seeds[min(s for s, f in seeds.items() if f < 1)] = 1.0
        else:
            seeds[len(seeds)] = act.fraction


def map_design(targets: Sequence[str], cells: Sequence[str], side: bool) -> Design:
    """Return the model's design, with URIEL+ distances as covariates where asked and known for every language."""
    covariates = None
    if side:
        try:
            covariates = cell_distances(targets, cells)
        except KeyError:  # a language the table lacks: no side information
            covariates = None
    return Design.build(targets, cells, covariates)


def first_cells(cells: Sequence[str], config: PredictiveConfig, seed: int) -> list[int]:
    """Return the cells the search starts with: `init_share` of them (at least 2) covering every level."""
    return initial_cells(cells, max(2, math.ceil(config.init_share * len(cells))), seed=seed)


def observations(targets: Sequence[str], cells: Sequence[str], judged: np.ndarray, state: SearchState,
                 outcomes: Outcomes, base: np.ndarray,
                 ) -> tuple[list[Observation], dict[str, float], dict[str, float], np.ndarray]:
    """Return (each run cell's dev observation at its highest fraction, per-target shared dev error, per-cell shared
    run error, per target the noise variance of one full run's estimate), points^2. `base` (targets, items)."""
    full = {c: state.full_seeds(c) for c in state.reached}
    arrays = {c: outcomes(c, 1.0, s) for c, s in full.items() if len(s) >= 2}
    seed_var = (1e4 * float(np.mean([seed_variance([a[t] for a in arrays.values()], 100.0)
                                     for t in range(len(targets))]))
                if arrays else SEED_SD_POINTS ** 2)
    # The part of it a run's targets share, from the cells with two or more seeds; half of it until there are any.
    base_mean = base.mean(axis=1)
    per_cell = [100 * (a[judged[:, c]].mean(axis=2) - base_mean[judged[:, c], None]) for c, a in arrays.items()]
    shared_run = shared_seed_var(per_cell)
    shared_run = min(seed_var, shared_run) if shared_run is not None else 0.5 * seed_var
    obs, shared, one_run = [], {}, np.zeros(len(targets))
    runs = {}
    for ti, t in enumerate(targets):
        per_target, disagree = [], []
        for c, seeds in state.reached.items():
            if not judged[ti, c]:
                continue
            f = max(seeds.values())
            at = [s for s, x in seeds.items() if x >= f]
            x = outcomes(c, f, at)[ti]
            obs.append(dev_observation(t, cells[c], x, base[ti], seed_var, fraction=f, shared_seed_var=shared_run))
            runs[cells[c]] = shared_run / len(at)
            per_target.append(x)
            disagree.append(float(np.mean(x != base[ti][None])))
        # A target no run is judged on yet (every cell run so far trained on it) has no shared item error to see.
        shared[t] = shared_item_var(per_target, base[ti]) if per_target else 0.0
        one_run[ti] = 1e4 * (np.mean(disagree) if disagree else DISAGREE_PRIOR) / base.shape[1] + seed_var
    return obs, shared, runs, one_run


def learning_curve(judged: np.ndarray, state: SearchState, outcomes: Outcomes, base: np.ndarray,
                   fractions: Sequence[float]) -> Curve:
    """Return the curve measured on the search's own full runs (dev at each fraction against dev at the full
    budget, the same seed): a_f the ratio of mean gains, tau_f^2 what the short run's error adds; the prior curve
    where fewer than 3 (target, cell) pairs were measured."""
    scale, extra = {}, {}
    for f in fractions:
        if f >= 1:
            continue
        ys, ys1 = [], []
        for c in state.reached:
            for s in state.full_seeds(c):
                short = outcomes(c, f, [s])[:, 0] - base
                long = outcomes(c, 1.0, [s])[:, 0] - base
                ys += list(100 * short.mean(axis=1)[judged[:, c]])
                ys1 += list(100 * long.mean(axis=1)[judged[:, c]])
        if len(ys) < 3:
            continue
        y, y1 = np.array(ys), np.array(ys1)
        a = float(np.clip(y.mean() / y1.mean(), 0.05, 1.5)) if abs(y1.mean()) > 1e-6 else 0.5
        # The short run's error beyond the full run's: the residual variance less what the items alone give twice.
        item = 1e4 * DISAGREE_PRIOR / base.shape[1]
        extra[f] = max(0.0, float(np.var(y - a * y1, ddof=1)) - item * (1 + a ** 2))
        scale[f] = a
    return Curve(scale, extra)


def refit(design: Design, judged: np.ndarray, state: SearchState, outcomes: Outcomes, base: np.ndarray,
          config: PredictiveConfig, start: dict[str, float] | None = None) -> tuple[Posterior, Curve, np.ndarray]:
    """Return (the posterior given every run's dev outcomes, the learning curve, one full run's noise per target);
    `start`: the last fit's variances (a warm refit of `refit_iterations` EM iterations)."""
    obs, shared, runs, one_run = observations(design.targets, design.cells, judged, state, outcomes, base)
    curve = learning_curve(judged, state, outcomes, base, config.fractions)
    post = fit(design, obs, curve, start=start, iterations=config.refit_iterations if start else 50,
               judged=judged, offset_var=shared, run_var=runs)
    return post, curve, one_run


def candidate_runs(state: SearchState, n_cells: int, max_seeds: int, fractions: Sequence[float],
                   seconds: Seconds, exclude: Collection[int] = ()) -> list[Action]:
    """Return every run the search may start now with its seconds: one more seed of a cell (while it has fewer than
    `max_seeds`) to each fraction, scoring dev at every fraction passed, and each cell's short run continued; none of
    the cells in `exclude` (a sweep's cells whose trials errored)."""
    out = []
    for c in range(n_cells):
        if c in exclude:
            continue
        seeds = state.reached.get(c, {})
        if len(seeds) < max_seeds:
            for f in fractions:
                out.append(Action(c, f, seconds(0.0, f, sum(1 for g in fractions if g <= f))))
        short = [s for s, f in seeds.items() if f < 1]
        if short:
            out.append(Action(c, 1.0, seconds(seeds[short[0]], 1.0, 1), continues=True))
    return out


def next_runs(post: Posterior, judged: np.ndarray, state: SearchState, curve: Curve, one_run: np.ndarray,
              max_seeds: int, seconds: Seconds, config: PredictiveConfig, trial_seconds: float,
              exclude: Collection[int] = ()) -> tuple[list[tuple[Action, float]], bool]:
    """Return (the batch of runs to start, best first, each with its value in points per second; whether the search
    stops: nothing is worth `min_value` points per full trial's seconds)."""
    runs = candidate_runs(state, len(post.cells), max_seeds, config.fractions, seconds, exclude)
    batch = best_actions(post, judged, runs, curve, one_run, config.batch, config.repeats)
    return batch, not batch or batch[0][1] * trial_seconds < config.min_value
