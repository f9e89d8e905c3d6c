"""The adaptive sweep's decision rule (`search.adaptive_rule.decide`) on small synthetic dev outcomes."""

import numpy as np

from xlamaml.search.adaptive.rule import Decision, decide


def outcomes(rate: float, items: int = 400, seeds: int = 1, seed: int = 0) -> np.ndarray:
    """Return (seeds, items) 0/1 outcomes with exactly the given accuracy per seed, in a deterministic order."""
    rng = np.random.default_rng(seed)
    row = (np.arange(items) < round(rate * items)).astype(np.int8)
    return np.stack([rng.permutation(row) for _ in range(seeds)])


def grid(rates: dict[str, dict[str, float]], seeds: int = 1) -> dict[str, dict[str, np.ndarray]]:
    """Return scores[target][cell] for accuracies rates[target][cell]."""
    return {t: {c: outcomes(r, seeds=seeds, seed=7 * i + j) for j, (c, r) in enumerate(cells.items())}
            for i, (t, cells) in enumerate(rates.items())}


RATES = {
    "de": {"a": 0.70, "b": 0.66, "c": 0.60, "bad": 0.30},
    "hi": {"a": 0.65, "b": 0.55, "c": 0.72, "bad": 0.31},
    "sw": {"a": 0.68, "b": 0.64, "c": 0.58, "bad": 0.29},
}


def test_dominated_cell_is_stopped_at_the_first_decision():
    d = decide(grid(RATES), keep=3, bound=2.0)
    assert "bad" in d.stopped and "bad" not in d.kept
    assert "best rank 4 of 4" in d.stopped["bad"] and "\n" not in d.stopped["bad"]
    # With a bound it is stopped even when the quota would keep it.
    d = decide(grid(RATES), keep=4, bound=2.0)
    assert "bad" in d.stopped and d.stopped["bad"].startswith("below every target's top 1")


def test_cell_best_for_a_single_target_survives():
    d = decide(grid(RATES), keep=2)
    # c is last but one on de and sw, best on hi only: the round-robin keeps it before b (2nd on two targets).
    assert d.kept == ["a", "c"]
    assert decide(grid(RATES), keep=2, bound=1.0).kept == ["a", "c"]


def test_excluded_cells_are_not_ranked_on_that_target():
    d = decide(grid(RATES), keep=2, excluded={"hi": ["c"]})
    assert "hi" not in d.ranks["c"] and "hi" not in d.estimates["c"]
    assert d.ranks["a"]["hi"] == 1 and d.kept == ["a", "b"]
    # Excluded on every target: no rank, kept only if room remains.
    scores = grid(RATES)
    everywhere = {t: ["bad"] for t in scores}
    assert "bad" not in decide(scores, keep=3, excluded=everywhere).ranks
    assert decide(scores, keep=3, excluded=everywhere).kept[-1] != "bad"
    assert decide(scores, keep=4, excluded=everywhere).kept[-1] == "bad"


def test_keep_count_is_exact_and_output_deterministic():
    rng = np.random.default_rng(1)
    rates = {t: {f"cell{j:02d}": float(rng.uniform(0.5, 0.7)) for j in range(30)} for t in ("de", "hi", "sw", "zh")}
    scores = grid(rates, seeds=2)
    for keep in (1, 5, 13, 30, 40):
        d = decide(scores, keep=keep)
        assert len(d.kept) == min(keep, 30) == len(set(d.kept))
        assert set(d.kept) | set(d.stopped) == set(rates["de"]) and not set(d.kept) & set(d.stopped)
    first = decide(scores, keep=9, bound=1.5)
    again = decide({t: dict(reversed(list(cells.items()))) for t, cells in scores.items()}, keep=9, bound=1.5)
    assert isinstance(first, Decision) and first == again


def test_ties_break_by_cell_name():
    same = outcomes(0.6)
    d = decide({"de": {"z": same, "m": same, "a": same}}, keep=2)
    assert d.kept == ["a", "m"] and d.ranks == {"a": {"de": 1}, "m": {"de": 2}, "z": {"de": 3}}
