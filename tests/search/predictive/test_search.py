"""The predictive search's steps on outcomes given as a function (what a sweep driver would pass): state, candidate
runs, and a whole search that finds the cells a map makes best."""

from __future__ import annotations

import numpy as np

from xlamaml.search.predictive.choose import Action, picks
from xlamaml.search.predictive.prior import judged_mask
from xlamaml.search.predictive.search import (PredictiveConfig, SearchState, candidate_runs, first_cells, map_design,
                                              next_runs, refit)

LANGS = ["ar", "de", "hi", "sw", "zh"]
CELLS = [f"xla-maml:en>{a}" for a in LANGS]


def test_state_records_new_seeds_and_continued_runs():
    state = SearchState()
    state.apply(Action(1, 0.25, 5.0))
    state.apply(Action(1, 1.0, 9.0))
    assert state.reached == {1: {0: 0.25, 1: 1.0}}
    state.apply(Action(1, 1.0, 4.0, continues=True))
    assert state.reached == {1: {0: 1.0, 1: 1.0}} and state.full_seeds(1) == [0, 1]
    assert state.finished(3).tolist() == [False, True, False]


def test_candidate_runs_offer_new_seeds_and_continuations_with_their_seconds():
    state = SearchState({0: {0: 0.25}, 1: {0: 1.0, 1: 1.0}})
    acts = candidate_runs(state, 3, 2, (0.25, 1.0), lambda frm, to, reports: 100 * (to - frm) + reports)
    by = {(a.cell, a.fraction, a.continues): a.seconds for a in acts}
    assert by == {(0, 0.25, False): 26.0, (0, 1.0, False): 102.0, (0, 1.0, True): 76.0,  # cell 1: every seed ran
                  (2, 0.25, False): 26.0, (2, 1.0, False): 102.0}


def test_a_search_on_a_map_with_a_clear_best_finds_it_and_stops():
    rng = np.random.default_rng(0)
    judged = judged_mask(LANGS, CELLS)
    gain = np.array([0.0, 6.0, 1.0, 0.5, 0.0])  # en>de lifts every target by 6 points
    items = 400
    base = (rng.random((len(LANGS), items)) < 0.5).astype(int)
    runs = {}

    def outcomes(cell: int, fraction: float, seeds: list[int]) -> np.ndarray:
        """Return (targets, seeds, items) outcomes: each item flips up with the cell's gain (fixed per run)."""
        out = []
        for s in seeds:
            key = (cell, s, fraction)
            if key not in runs:
                r = np.random.default_rng([cell, s, int(fraction * 100)])
                up = r.random((len(LANGS), items)) < gain[cell] / 100 / 0.5 * fraction
                runs[key] = np.where(base == 1, 1, up.astype(int))
            out.append(runs[key])
        return np.stack(out, axis=1)

    config = PredictiveConfig()
    design = map_design(LANGS, CELLS, side=True)
    state = SearchState({c: {0: 1.0} for c in first_cells(CELLS, config, seed=0)})
    seconds = lambda frm, to, reports: 100 * (to - frm) + reports  # noqa: E731
    variances = None
    for _ in range(40):
        post, curve, one_run = refit(design, judged, state, outcomes, base, config, variances)
        variances = post.variances
        batch, stop = next_runs(post, judged, state, curve, one_run, 3, seconds, config, trial_seconds=101)
        if stop:
            break
        for act, _ in batch:
            state.apply(act)
    assert stop, "the search never stopped"
    chosen = picks(post, judged, state.finished(len(CELLS)))
    # en>de is judged on every target but de: it is their pick; de's own pick is another cell.
    assert {LANGS[t]: CELLS[c] for t, c in chosen.items() if LANGS[t] != "de"} == {
        t: "xla-maml:en>de" for t in LANGS if t != "de"}
    assert sum(len(s) for s in state.reached.values()) < 3 * len(CELLS)  # fewer runs than the grid


def test_a_target_no_run_is_judged_on_yet_is_fitted_without_its_shared_item_error():
    """The smoke preset's two cells both trained on hi: hi has no observation at all (it crashed the fit once)."""
    from xlamaml.search.predictive.search import observations

    cells, targets = ["x-maml:hi", "xla-maml:en>hi"], ["en", "de", "hi"]
    judged = np.array([[True, True], [True, True], [False, False]])
    rng = np.random.default_rng(0)
    base = rng.integers(0, 2, (3, 40))
    state = SearchState({0: {0: 1.0}, 1: {0: 1.0}})
    obs, shared, runs, one_run = observations(targets, cells, judged, state,
                                              lambda c, f, s: rng.integers(0, 2, (3, len(s), 40)), base)
    assert shared["hi"] == 0.0 and len(obs) == 4 and np.isfinite(one_run).all()
    post, _, _ = refit(map_design(targets, cells, True), judged, state,
                       lambda c, f, s: rng.integers(0, 2, (3, len(s), 40)), base, PredictiveConfig())
    assert np.isfinite(post.mean[judged]).all() and np.isfinite(post.sd[judged]).all()  # NaN where not judged
