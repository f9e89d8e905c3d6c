"""The predictive search on a simulated or replayed World (benchmarks/simulation.py, benchmarks/replay.py): the map
model (xlamaml.search.predictive.map_model) fitted to every dev outcome paid for, the next run chosen by the knowledge
gradient per second (xlamaml.search.predictive.choose), picks by the model's posterior among the cells finished at
the full budget, test scored for the picks only.

One sequential run per repetition, read off at each compute budget as it stood before the run that would pass it
(like TPE in benchmarks/sim_methods.py), and once more where its own stopping rule ends it.

    start   `init_share` of the cells (at least 2), chosen to cover every method, support and query level: one seed
            each at the full budget (dev scored at each fraction of `fractions` on the way, for the learning curve)
    loop    refit; among "one more seed of cell c to fraction f" (f in `fractions`) and "continue c's short run to
            the full budget", run the `batch` of highest knowledge gradient per second (distinct cells)
    stop    when the best value is below `min_value` points per grid trial's seconds, or the budget is spent
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from benchmarks.sim_methods import Run, run_grid
from benchmarks.simulation import Cost, World
from xlamaml.search.adaptive.rule import SEED_SD_POINTS, seed_variance
from xlamaml.search.predictive.choose import Action, best_actions, contenders, initial_cells, picks
from xlamaml.search.predictive.map_model import (Curve, Design, Observation, Posterior, dev_observation, fit,
                                                 shared_item_var, shared_seed_var)
from xlamaml.search.predictive.side_info import cell_distances


@dataclass(frozen=True)
class PredictiveConfig:
    """The predictive search's knobs (see the module docstring)."""

    init_share: float = 0.2
    fractions: tuple[float, ...] = (0.25, 1.0)
    min_value: float = 0.01  # points of expected gain per grid trial's seconds
    refit_iterations: int = 3  # EM iterations of a warm refit (the variances move little between refits)
    batch: int = 2  # runs chosen per refit (the trials a sweep runs at once)
    side: bool = True  # URIEL+ distances of the target to the cell's languages as covariates
    repeats: tuple[int, ...] = (1, 2, 4)  # KG(*): a run valued as the best per-run share of m such runs


@dataclass
class _State:
    """What the search has paid for: per cell, its seeds and the fraction each reached."""

    reached: dict[int, dict[int, float]] = field(default_factory=dict)  # cell -> seed -> fraction
    seconds: float = 0.0


def _steps(f: float, total: int) -> int:
    """Return the meta steps of fraction f of `total` (at least 1)."""
    return max(1, round(f * total))


def observations(world: World, state: _State, cost: Cost
                 ) -> tuple[list[Observation], dict[str, float], dict[str, float], np.ndarray]:
    """Return (each run cell's dev observation at its highest fraction, per-target shared dev error, per-cell shared
    run error (fit's run_var), per target the noise variance of one full run's estimate), points^2."""
    gmap, total = world.map, cost.total_steps
    full = {c: [s for s, f in seeds.items() if f >= 1] for c, seeds in state.reached.items()}
    arrays = {c: world.outcomes(c, total, total)[:, s] for c, s in full.items() if len(s) >= 2}
    seed_var = (1e4 * float(np.mean([seed_variance([a[t] for a in arrays.values()], 1.0)
                                     for t in range(len(gmap.targets))]))
                if arrays else SEED_SD_POINTS ** 2)
    # The part of it a run's targets share, from the cells with two or more seeds; half of it until there are any.
    base = world.base.mean(axis=1)
    per_cell = [100 * (a[gmap.judged[:, c]].mean(axis=2) - base[gmap.judged[:, c], None]) for c, a in arrays.items()]
    shared_run = shared_seed_var(per_cell)
    shared_run = min(seed_var, shared_run) if shared_run is not None else 0.5 * seed_var
    obs, shared, one_run = [], {}, np.zeros(len(gmap.targets))
    runs = {}
    for ti, t in enumerate(gmap.targets):
        per_cell, disagree = [], []
        for c, seeds in state.reached.items():
            if not gmap.judged[ti, c]:
                continue
            f = max(seeds.values())
            at = [s for s, x in seeds.items() if x >= f]
            x = world.outcomes(c, _steps(f, total), total)[ti, at]
            obs.append(dev_observation(t, gmap.cells[c], x, world.base[ti], seed_var, fraction=f,
                                       shared_seed_var=shared_run))
            runs[gmap.cells[c]] = shared_run / len(at)
            per_cell.append(x)
            disagree.append(float(np.mean(x != world.base[ti][None])))
        shared[t] = shared_item_var(per_cell, world.base[ti])
        n = world.base.shape[1]
        one_run[ti] = 1e4 * (np.mean(disagree) if disagree else 0.2) / n + seed_var
    return obs, shared, runs, one_run


def learning_curve(world: World, state: _State, cost: Cost, fractions: tuple[float, ...]) -> Curve:
    """Return the curve measured on the search's own full runs (dev at each fraction against dev at the full
    budget, the same seed): a_f the ratio of mean gains, tau_f^2 what the short run's error adds; the prior curve
    where fewer than 3 (target, cell) pairs were measured."""
    total = cost.total_steps
    scale, extra = {}, {}
    for f in fractions:
        if f >= 1:
            continue
        ys, ys1 = [], []
        for c, seeds in state.reached.items():
            for s, reached in seeds.items():
                if reached < 1:
                    continue
                short = world.outcomes(c, _steps(f, total), total)[:, s] - world.base
                long = world.outcomes(c, total, total)[:, s] - world.base
                judged = world.map.judged[:, c]
                ys += list(100 * short.mean(axis=1)[judged])
                ys1 += list(100 * long.mean(axis=1)[judged])
        if len(ys) < 3:
            continue
        y, y1 = np.array(ys), np.array(ys1)
        a = float(np.clip(y.mean() / y1.mean(), 0.05, 1.5)) if abs(y1.mean()) > 1e-6 else 0.5
        # The short run's error beyond the full run's: the residual variance less what the items alone give twice.
        item = 1e4 * 0.2 / world.base.shape[1]
        extra[f] = max(0.0, float(np.var(y - a * y1, ddof=1)) - item * (1 + a ** 2))
        scale[f] = a
    return Curve(scale, extra)


def _actions(world: World, state: _State, cost: Cost, fractions: tuple[float, ...]) -> list[Action]:
    """Return every run the search may start now, with its seconds (meta steps and dev at each fraction passed)."""
    n_t, total = len(world.map.targets), cost.total_steps
    dev_s = cost.evaluate(n_t * world.noise.dev_items)
    out = []
    for c in range(len(world.map.cells)):
        seeds = state.reached.get(c, {})
        if len(seeds) < world.noise.seeds:
            for f in fractions:
                reports = sum(1 for g in fractions if g <= f)
                out.append(Action(c, f, cost.train(_steps(f, total)) + reports * dev_s))
        short = [s for s, f in seeds.items() if f < 1]
        if short:
            f0 = seeds[short[0]]
            out.append(Action(c, 1.0, cost.train(total - _steps(f0, total)) + dev_s, continues=True))
    return out


def _apply(world: World, state: _State, act: Action) -> None:
    """Record the action's run in `state`; return None."""
    seeds = state.reached.setdefault(act.cell, {})
    if act.continues:
        seeds[min(s for s, f in seeds.items() if f < 1)] = 1.0
    else:
        seeds[len(seeds)] = act.fraction
    state.seconds += act.seconds


def _finished(world: World, state: _State) -> np.ndarray:
    """Return (cells,) whether each cell has a seed at the full budget."""
    return np.array([any(f >= 1 for f in state.reached.get(c, {}).values()) for c in range(len(world.map.cells))])


def _test_seconds(world: World, state: _State, cost: Cost, chosen: dict[int, int]) -> float:
    """Return the seconds of scoring test for the picks: every finished seed of every picked cell, every target."""
    runs = sum(sum(f >= 1 for f in state.reached[c].values()) for c in set(chosen.values()))
    return runs * cost.evaluate(len(world.map.targets) * world.noise.test_items)


def _snapshot(world: World, state: _State, post: Posterior, cost: Cost, note: str) -> Run:
    """Return the Run as the search stands: its picks, contenders, and seconds with the picks' test scored."""
    judged = world.map.judged
    chosen = picks(post, judged, _finished(world, state))
    run = Run(state.seconds + _test_seconds(world, state, cost, chosen),
              {c: [s for s, f in seeds.items() if f >= 1] for c, seeds in state.reached.items()
               if any(f >= 1 for f in seeds.values())}, note)
    run.picks = chosen
    run.contenders = {t: contenders(post, judged, p, t) for t, p in chosen.items()}
    return run


def _design(world: World, side: bool) -> Design:
    """Return the model's design for the world's map, with URIEL+ distances as covariates where asked and known."""
    gmap = world.map
    covariates = None
    if side:
        try:
            covariates = cell_distances(gmap.targets, gmap.cells)
        except KeyError:  # a language the table lacks: no side information
            covariates = None
    return Design.build(gmap.targets, gmap.cells, covariates)


def fit_world(world: World, state: _State, cost: Cost, design: Design, config: PredictiveConfig,
              start: dict[str, float] | None = None) -> tuple[Posterior, Curve, np.ndarray]:
    """Return (the posterior given everything paid for, the learning curve, one full run's noise per target)."""
    obs, shared, runs, one_run = observations(world, state, cost)
    curve = learning_curve(world, state, cost, config.fractions)
    post = fit(design, obs, curve, start=start, iterations=config.refit_iterations if start else 50,
               judged=world.map.judged, offset_var=shared, run_var=runs)
    return post, curve, one_run


def run_predictive(world: World, cost: Cost, budgets: list[float], grid_trial_s: float,
                   config: PredictiveConfig = PredictiveConfig()) -> tuple[list[Run], Run]:
    """Return (the search as it stood at each of `budgets` (ascending seconds), the search where its own stopping rule
    ended it, capped at the largest budget)."""
    gmap = world.map
    design = _design(world, config.side)
    state = _State()
    n0 = max(2, math.ceil(config.init_share * len(gmap.cells)))
    dev_s = cost.evaluate(len(gmap.targets) * world.noise.dev_items)
    for c in initial_cells(gmap.cells, n0, seed=world.rep):
        state.reached[c] = {0: 1.0}
        state.seconds += cost.train(cost.total_steps) + len(config.fractions) * dev_s
    out: list[Run] = []
    variances: dict[str, float] | None = None
    own: Run | None = None
    fits = 0
    while True:
        post, curve, one_run = fit_world(world, state, cost, design, config, variances)
        fits += 1
        variances = post.variances
        batch = best_actions(post, gmap.judged, _actions(world, state, cost, config.fractions), curve, one_run,
                             config.batch, config.repeats)
        runs = sum(len(s) for s in state.reached.values())
        note = f"{len(state.reached)} cells, {runs} runs, {fits} fits"
        stop = not batch or batch[0][1] * grid_trial_s < config.min_value
        spend = sum(act.seconds for act, _ in batch)
        test_now = _test_seconds(world, state, cost, picks(post, gmap.judged, _finished(world, state)))
        while len(out) < len(budgets) and (stop or state.seconds + spend + test_now > budgets[len(out)]):
            out.append(_snapshot(world, state, post, cost, note))
        if stop and own is None:
            own = _snapshot(world, state, post, cost, note + ", own stop")
        if len(out) == len(budgets):
            return out, own or _snapshot(world, state, post, cost, note + ", budget spent")
        for act, _ in batch:
            _apply(world, state, act)


def grid_model_picks(world: World, cost: Cost, config: PredictiveConfig = PredictiveConfig()) -> Run:
    """Return the full grid with the model's picks: every cell and seed at the full budget, the posterior's best."""
    state = _State({c: {s: 1.0 for s in range(world.noise.seeds)} for c in range(len(world.map.cells))})
    state.seconds = run_grid(world, cost).seconds
    post, _, _ = fit_world(world, state, cost, _design(world, config.side), config)
    run = _snapshot(world, state, post, cost, "the model's picks on the grid's outcomes")
    run.seconds = state.seconds  # the grid scores test for every trial
    return run
