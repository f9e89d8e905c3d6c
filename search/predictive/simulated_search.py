"""The predictive search (search.py) run on a simulated or replayed World (simulated.py; benchmarks/replay.py), charged
the world's cost: every run's meta steps and dev reports, and test for the picks only. The benchmarks read it off at
each compute budget (benchmarks/sim_predictive.py); `xlamaml plan` runs it to its own stop on a prior map, several
times, for the compute a predictive sweep is expected to spend (`expected_compute`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from xlamaml.search.predictive.choose import Action, picks
from xlamaml.search.predictive.map_model import Curve, Posterior
from xlamaml.search.predictive.search import (Outcomes, PredictiveConfig, SearchState, Seconds, first_cells,
                                              map_design, next_runs, refit)
from xlamaml.search.predictive.simulated import Cost, GainMap, Noise, World


def _steps(f: float, total: int) -> int:
    """Return the meta steps of fraction f of `total` (at least 1)."""
    return max(1, round(f * total))


def world_outcomes(world: Any, cost: Cost) -> Outcomes:
    """Return the search's view of the world: (cell, fraction, seeds) -> (targets, seeds, items) dev outcomes."""
    total = cost.total_steps
    return lambda c, f, seeds: world.outcomes(c, _steps(f, total), total)[:, list(seeds)]


def world_seconds(world: Any, cost: Cost) -> Seconds:
    """Return the seconds of running a trial from one fraction to another and scoring dev `reports` times."""
    total, dev_s = cost.total_steps, cost.evaluate(len(world.map.targets) * world.noise.dev_items)
    return lambda frm, to, reports: cost.train(_steps(to, total) - (_steps(frm, total) if frm > 0 else 0)) + (
        reports * dev_s)


def test_seconds(world: Any, state: SearchState, cost: Cost, chosen: dict[int, int]) -> float:
    """Return the seconds of scoring test for the picks: every finished seed of every picked cell, every target."""
    runs = sum(len(state.full_seeds(c)) for c in set(chosen.values()))
    return runs * cost.evaluate(len(world.map.targets) * world.noise.test_items)


@dataclass
class Step:
    """The search after a refit: what it ran (`state`, mutated as the search goes on), the seconds spent, the fit,
    the runs it would start next (each with its value) and whether it stops; `fits` refits so far."""

    state: SearchState
    seconds: float
    post: Posterior
    curve: Curve
    batch: list[tuple[Action, float]]
    stop: bool
    fits: int


def simulated_search(world: Any, cost: Cost, config: PredictiveConfig, grid_trial_s: float) -> Iterator[Step]:
    """Yield the search after each refit, on `world` (its first design run first); the batch it yields is run (and
    charged) when the next step is asked for. Never ends by itself: the caller stops at `Step.stop` or a budget."""
    gmap = world.map
    design = map_design(gmap.targets, gmap.cells, config.side)
    outcomes, seconds = world_outcomes(world, cost), world_seconds(world, cost)
    state, spent = SearchState(), 0.0
    for c in first_cells(gmap.cells, config, seed=world.rep):
        state.reached[c] = {0: 1.0}
        spent += seconds(0.0, 1.0, len(config.fractions))
    variances: dict[str, float] | None = None
    fits = 0
    while True:
        post, curve, one_run = refit(design, gmap.judged, state, outcomes, world.base, config, variances)
        fits += 1
        variances = post.variances
        batch, stop = next_runs(post, gmap.judged, state, curve, one_run, world.noise.seeds, seconds, config,
                                grid_trial_s)
        yield Step(state, spent, post, curve, batch, stop, fits)
        for act, _ in batch:
            state.apply(act)
            spent += act.seconds


@dataclass
class Expected:
    """A predictive sweep's compute at its own stop, over simulated repetitions: each one's share of the grid's
    compute, runs and refits."""

    shares: list[float]
    runs: list[int]
    fits: list[int]


def trial_seconds(cost: Cost, n_targets: int, noise: Noise) -> float:
    """Return the seconds of one grid trial: all meta steps, dev once, test once."""
    return cost.train(cost.total_steps) + cost.evaluate(n_targets * (noise.dev_items + noise.test_items))


def expected_compute(gmap: GainMap, noise: Noise, cost: Cost, config: PredictiveConfig, reps: int,
                     tau_at: float) -> Expected:
    """Return the compute of a predictive sweep at its own stop (or at `config.max_share` of the grid's), on `reps`
    worlds drawn around the prior map `gmap` (each with its own items, seed noise and low-budget error)."""
    shares, runs, fits = [], [], []
    for rep in range(reps):
        world = World(gmap, noise, tau_at, rep)
        trial_s = trial_seconds(cost, len(gmap.targets), noise)
        grid = trial_s * len(gmap.cells) * noise.seeds
        for step in simulated_search(world, cost, config, trial_s):
            spend = sum(a.seconds for a, _ in step.batch)
            if step.stop or step.seconds + spend > config.max_share * grid:
                chosen = picks(step.post, gmap.judged, step.state.finished(len(gmap.cells)))
                shares.append((step.seconds + test_seconds(world, step.state, cost, chosen)) / grid)
                runs.append(sum(len(s) for s in step.state.reached.values()))
                fits.append(step.fits)
                break
    return Expected(shares, runs, fits)
