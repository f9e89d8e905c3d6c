"""The predictive search (xlamaml.search.predictive.search: the steps a sweep would take) on a simulated or replayed
World (benchmarks/simulation.py, benchmarks/replay.py), charged the world's cost: every run's meta steps and dev
reports, and test for the picks only.

One sequential run per repetition, read off at each compute budget as it stood before the runs that would pass it
(like TPE in benchmarks/sim_methods.py), and once more where its own stopping rule ends it.
"""

from __future__ import annotations

from dataclasses import dataclass, field


from benchmarks.sim_methods import Run, run_grid
from benchmarks.simulation import Cost, World
from xlamaml.search.predictive.choose import contenders, picks
from xlamaml.search.predictive.map_model import Posterior
from xlamaml.search.predictive.search import (Outcomes, PredictiveConfig, SearchState, Seconds, first_cells,
                                              map_design, next_runs, refit)


@dataclass
class _Paid:
    """The search's state and the seconds it has spent."""

    state: SearchState = field(default_factory=SearchState)
    seconds: float = 0.0


def _steps(f: float, total: int) -> int:
    """Return the meta steps of fraction f of `total` (at least 1)."""
    return max(1, round(f * total))


def world_outcomes(world: World, cost: Cost) -> Outcomes:
    """Return the search's view of the world: (cell, fraction, seeds) -> (targets, seeds, items) dev outcomes."""
    total = cost.total_steps
    return lambda c, f, seeds: world.outcomes(c, _steps(f, total), total)[:, list(seeds)]


def world_seconds(world: World, cost: Cost) -> Seconds:
    """Return the seconds of running a trial from one fraction to another and scoring dev `reports` times."""
    total, dev_s = cost.total_steps, cost.evaluate(len(world.map.targets) * world.noise.dev_items)
    return lambda frm, to, reports: cost.train(_steps(to, total) - (_steps(frm, total) if frm > 0 else 0)) + (
        reports * dev_s)


def _test_seconds(world: World, state: SearchState, cost: Cost, chosen: dict[int, int]) -> float:
    """Return the seconds of scoring test for the picks: every finished seed of every picked cell, every target."""
    runs = sum(len(state.full_seeds(c)) for c in set(chosen.values()))
    return runs * cost.evaluate(len(world.map.targets) * world.noise.test_items)


def _snapshot(world: World, paid: _Paid, post: Posterior, cost: Cost, note: str) -> Run:
    """Return the Run as the search stands: its picks, contenders, and seconds with the picks' test scored."""
    judged, state = world.map.judged, paid.state
    chosen = picks(post, judged, state.finished(len(world.map.cells)))
    run = Run(paid.seconds + _test_seconds(world, state, cost, chosen),
              {c: state.full_seeds(c) for c in state.reached if state.full_seeds(c)}, note)
    run.picks = chosen
    run.contenders = {t: contenders(post, judged, p, t) for t, p in chosen.items()}
    return run


def run_predictive(world: World, cost: Cost, budgets: list[float], grid_trial_s: float,
                   config: PredictiveConfig = PredictiveConfig()) -> tuple[list[Run], Run]:
    """Return (the search as it stood at each of `budgets` (ascending seconds), the search where its own stopping rule
    ended it, capped at the largest budget)."""
    gmap = world.map
    design = map_design(gmap.targets, gmap.cells, config.side)
    outcomes, seconds = world_outcomes(world, cost), world_seconds(world, cost)
    paid = _Paid()
    for c in first_cells(gmap.cells, config, seed=world.rep):
        paid.state.reached[c] = {0: 1.0}
        paid.seconds += seconds(0.0, 1.0, len(config.fractions))
    out: list[Run] = []
    variances: dict[str, float] | None = None
    own: Run | None = None
    fits = 0
    while True:
        post, curve, one_run = refit(design, gmap.judged, paid.state, outcomes, world.base, config, variances)
        fits += 1
        variances = post.variances
        batch, stop = next_runs(post, gmap.judged, paid.state, curve, one_run, world.noise.seeds, seconds, config,
                                grid_trial_s)
        runs = sum(len(s) for s in paid.state.reached.values())
        note = f"{len(paid.state.reached)} cells, {runs} runs, {fits} fits"
        spend = sum(act.seconds for act, _ in batch)
        test_now = _test_seconds(world, paid.state, cost,
                                 picks(post, gmap.judged, paid.state.finished(len(gmap.cells))))
        while len(out) < len(budgets) and (stop or paid.seconds + spend + test_now > budgets[len(out)]):
            out.append(_snapshot(world, paid, post, cost, note))
        if stop and own is None:
            own = _snapshot(world, paid, post, cost, note + ", own stop")
        if len(out) == len(budgets):
            return out, own or _snapshot(world, paid, post, cost, note + ", budget spent")
        for act, _ in batch:
            paid.state.apply(act)
            paid.seconds += act.seconds


def grid_model_picks(world: World, cost: Cost, config: PredictiveConfig = PredictiveConfig()) -> Run:
    """Return the full grid with the model's picks: every cell and seed at the full budget, the posterior's best."""
    state = SearchState({c: {s: 1.0 for s in range(world.noise.seeds)} for c in range(len(world.map.cells))})
    paid = _Paid(state, run_grid(world, cost).seconds)
    post, _, _ = refit(map_design(world.map.targets, world.map.cells, config.side), world.map.judged, state,
                       world_outcomes(world, cost), world.base, config)
    run = _snapshot(world, paid, post, cost, "the model's picks on the grid's outcomes")
    run.seconds = paid.seconds  # the grid scores test for every trial
    return run
