"""What the predictive search runs next and returns: the knowledge gradient, picks, contenders, the first cells; and the
prior rankers."""

from __future__ import annotations

import numpy as np
import pytest

from xlamaml.search.predictive.choose import (Action, best_actions, contenders, expected_max_gain, initial_cells,
                                              knowledge_gradient, picks)
from xlamaml.search.predictive.map_model import Curve, Design, Observation, cell_levels, fit
from xlamaml.search.predictive.prior import (english_scores, judged_mask, ndcg_at, other_target_scores, top_regret,
                                             uriel_scores)

LANGS = ["ar", "de", "hi", "sw"]
PAIRS = [f"x-maml:{a}" if a == b else f"xla-maml:{a}>{b}" for a in LANGS for b in LANGS]


def test_expected_max_gain_matches_monte_carlo():
    rng = np.random.default_rng(0)
    mean, slope = rng.normal(0, 1, 6), rng.normal(0, 1, 6)
    z = rng.normal(0, 1, 400_000)
    mc = (mean[None] + z[:, None] * slope[None]).max(axis=1).mean() - mean.max()
    assert expected_max_gain(mean, slope) == pytest.approx(mc, abs=5e-3)
    assert expected_max_gain(mean, np.zeros(6)) == pytest.approx(0.0, abs=1e-12)


def fitted(observed: dict[str, float]) -> tuple:
    """Return (posterior, judged) of the pairs map with one low-noise observation per given cell on every target."""
    mask = judged_mask(LANGS, PAIRS)
    obs = [Observation(t, c, v, 0.1) for c, v in observed.items() for i, t in enumerate(LANGS)
           if mask[i, PAIRS.index(c)]]
    return fit(Design.build(LANGS, PAIRS), obs, judged=mask), mask


def test_a_measured_cell_is_worth_less_than_an_unknown_one():
    post, mask = fitted({"xla-maml:ar>de": 2.0, "xla-maml:de>hi": 1.0, "xla-maml:hi>sw": 0.5})
    v = np.full(len(LANGS), 1.0)
    known = knowledge_gradient(post, mask, PAIRS.index("xla-maml:ar>de"), 1.0, v)
    unknown = knowledge_gradient(post, mask, PAIRS.index("xla-maml:sw>ar"), 1.0, v)
    assert unknown > known >= 0
    acts = [Action(PAIRS.index(c), 1.0, 10.0) for c in ("xla-maml:ar>de", "xla-maml:sw>ar", "xla-maml:hi>ar")]
    chosen = best_actions(post, mask, acts, Curve(), v, count=2, repeats=(1, 2))
    assert len(chosen) == 2 and chosen[0][0].cell != PAIRS.index("xla-maml:ar>de")
    assert chosen[0][1] >= chosen[1][1] > 0


def test_a_cheaper_run_of_equal_information_wins():
    post, mask = fitted({"xla-maml:ar>de": 2.0})
    v = np.full(len(LANGS), 1.0)
    c = PAIRS.index("xla-maml:sw>hi")
    chosen = best_actions(post, mask, [Action(c, 1.0, 10.0), Action(c, 1.0, 5.0)], Curve(), v, count=1)
    assert chosen[0][0].seconds == 5.0


def test_picks_are_finished_cells_and_contenders_hold_the_pick():
    post, mask = fitted({"xla-maml:ar>de": 3.0, "xla-maml:de>hi": 1.0})
    finished = np.zeros(len(PAIRS), dtype=bool)
    finished[PAIRS.index("xla-maml:de>hi")] = True
    chosen = picks(post, mask, finished)
    # ar>de looks better but never finished: the pick is de>hi wherever it is judged.
    assert set(chosen.values()) == {PAIRS.index("xla-maml:de>hi")}
    for t, p in chosen.items():
        cs = contenders(post, mask, p, t)
        assert p in cs and all(mask[t, c] for c in cs)


def test_initial_cells_cover_every_level():
    chosen = initial_cells(PAIRS, 5, seed=3)
    levels = [cell_levels(PAIRS[i]) for i in chosen]
    assert len(set(chosen)) == 5
    assert {lv["query"] for lv in levels} == set(LANGS)
    assert {lv["support"] for lv in levels} == set(LANGS)
    assert {lv["method"] for lv in levels} == {"x-maml", "xla-maml"}
    assert initial_cells(PAIRS, 5, seed=3) == chosen != initial_cells(PAIRS, 5, seed=4)


def test_prior_rankers():
    truth = np.array([[1.0, 3.0, 2.0, 0.0], [0.0, 1.0, 2.0, 3.0]])
    assert ndcg_at(truth[0], truth[0]) == pytest.approx(1.0)
    assert ndcg_at(truth[0], -truth[0]) < 0.5
    assert top_regret(truth[0], np.array([0, 0, 1, 0])) == pytest.approx(1.0)
    names = ["c0", "c1", "c2", "c3"]
    loto = other_target_scores({(t, c): truth[i, j] for i, t in enumerate(["ar", "de"]) for j, c in enumerate(names)},
                               ["ar", "de"], names)
    np.testing.assert_allclose(loto, truth[::-1])  # two targets: each is ranked by the other
    cells = ["xla-maml:en>de", "xla-maml:en>zh", "x-maml:en"]
    eng = english_scores(["ar", "de"], cells)
    assert eng[0].tolist() == [0, 0, 1] and np.isnan(eng[1, 0])  # en>de is not judged on de
    uriel = uriel_scores(["fr"], ["xla-maml:en>es", "xla-maml:en>zh"])
    assert uriel[0, 0] > uriel[0, 1]  # Spanish is closer to French than Chinese is
