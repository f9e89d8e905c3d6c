"""The predictive search (xlamaml.search.predictive.simulated_search: the steps a sweep would take) on a simulated or
replayed World (search/predictive/simulated.py, benchmarks/replay.py), charged the world's cost: every run's meta steps
and dev reports, and test for the picks only.

One sequential run per repetition, read off at each compute budget as it stood before the runs that would pass it
(like TPE in benchmarks/sim_methods.py), and once more where its own stopping rule ends it.
"""

from __future__ import annotations

from benchmarks.sim_methods import Run, run_grid
from xlamaml.search.predictive.choose import contenders, picks
from xlamaml.search.predictive.map_model import Posterior
from xlamaml.search.predictive.search import PredictiveConfig, SearchState, map_design, refit
from xlamaml.search.predictive.simulated import Cost, World
from xlamaml.search.predictive.simulated_search import simulated_search, test_seconds, world_outcomes


def _snapshot(world: World, state: SearchState, seconds: float, post: Posterior, cost: Cost, note: str) -> Run:
    """Return the Run as the search stands: its picks, contenders, and seconds with the picks' test scored."""
    judged = world.map.judged
    chosen = picks(post, judged, state.finished(len(world.map.cells)))
    run = Run(seconds + test_seconds(world, state, cost, chosen),
              {c: state.full_seeds(c) for c in state.reached if state.full_seeds(c)}, note)
    run.picks = chosen
    run.contenders = {t: contenders(post, judged, p, t) for t, p in chosen.items()}
    return run


def run_predictive(world: World, cost: Cost, budgets: list[float], grid_trial_s: float,
                   config: PredictiveConfig = PredictiveConfig()) -> tuple[list[Run], Run]:
    """Return (the search as it stood at each of `budgets` (ascending seconds), the search where its own stopping rule
    ended it, capped at the largest budget)."""
    gmap = world.map
    out: list[Run] = []
    own: Run | None = None
    for step in simulated_search(world, cost, config, grid_trial_s):
        state, post = step.state, step.post
        runs = sum(len(s) for s in state.reached.values())
        note = f"{len(state.reached)} cells, {runs} runs, {step.fits} fits"
        spend = sum(act.seconds for act, _ in step.batch)
        test_now = test_seconds(world, state, cost, picks(post, gmap.judged, state.finished(len(gmap.cells))))
        while len(out) < len(budgets) and (step.stop or step.seconds + spend + test_now > budgets[len(out)]):
            out.append(_snapshot(world, state, step.seconds, post, cost, note))
        if step.stop and own is None:
            own = _snapshot(world, state, step.seconds, post, cost, note + ", own stop")
        if len(out) == len(budgets):
            return out, own or _snapshot(world, state, step.seconds, post, cost, note + ", budget spent")
    raise AssertionError("simulated_search never ends by itself")


def grid_model_picks(world: World, cost: Cost, config: PredictiveConfig = PredictiveConfig()) -> Run:
    """Return the full grid with the model's picks: every cell and seed at the full budget, the posterior's best."""
    state = SearchState({c: {s: 1.0 for s in range(world.noise.seeds)} for c in range(len(world.map.cells))})
    post, _, _ = refit(map_design(world.map.targets, world.map.cells, config.side), world.map.judged, state,
                       world_outcomes(world, cost), world.base, config)
    run = _snapshot(world, state, run_grid(world, cost).seconds, post, cost,
                    "the model's picks on the grid's outcomes")
    run.seconds = run_grid(world, cost).seconds  # the grid scores test for every trial
    return run
