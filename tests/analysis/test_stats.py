"""Paired bootstrap statistics on cases whose answer is known, and agreement with a plain bootstrap."""

import numpy as np
import pytest

from xlamaml.analysis.corrections import adjust
from xlamaml.analysis.outcomes import load_outcomes
from xlamaml.analysis.results import load_results
from xlamaml.analysis.stats import Cell, Part, bootstrap, significance
from tests.analysis.synthetic import items_trial

UIDS = tuple(str(i) for i in range(200))


def cell(*diffs: np.ndarray, uids=UIDS) -> Cell:
    """A cell averaging one part per array of differences (seeds, items)."""
    return Cell({"target": "x"}, tuple(Part(f"l{i}", uids, np.atleast_2d(d).astype(float)) for i, d in enumerate(diffs)))


def plain_bootstrap(diffs: np.ndarray, resamples: int, seed: int) -> tuple[float, float]:
    """The textbook two-level bootstrap, one resample at a time: seeds, then items; the 95% percentile interval."""
    rng = np.random.default_rng(seed)
    seeds, items = diffs.shape
    out = []
    for _ in range(resamples):
        s = rng.integers(0, seeds, seeds)
        i = rng.integers(0, items, items)
        out.append(diffs[s][:, i].mean())
    return tuple(np.quantile(out, [0.025, 0.975]))


def test_identical_predictions_give_zero_and_p_one():
    result = bootstrap([cell(np.zeros((3, 200)))], resamples=2000)
    assert result.delta[0] == 0.0 and result.p_value[0] == 1.0
    assert result.ci_low[0] == result.ci_high[0] == 0.0


def test_a_strictly_better_system_gets_a_small_p():
    better = np.zeros(200)
    better[:40] = 1.0  # right on 40 items the baseline gets wrong, never worse
    result = bootstrap([cell(better)], resamples=2000)
    assert result.delta[0] == pytest.approx(0.2)
    assert result.p_value[0] == pytest.approx(2 / 2001) and result.ci_low[0] > 0.1


def test_agrees_with_a_plain_two_level_bootstrap():
    rng = np.random.default_rng(5)
    diffs = rng.choice([-1.0, 0.0, 1.0], p=[0.15, 0.7, 0.15], size=(3, 200)) + np.array([[0.0], [0.1], [0.2]])
    fast = bootstrap([cell(diffs)], resamples=4000, seed=1)
    lo, hi = plain_bootstrap(diffs, 4000, seed=2)
    assert fast.delta[0] == pytest.approx(diffs.mean())
    # Two independent Monte Carlo runs: the bounds agree to well within the interval's own width / 10.
    assert fast.ci_low[0] == pytest.approx(lo, abs=0.012) and fast.ci_high[0] == pytest.approx(hi, abs=0.012)


def test_averages_resample_items_jointly_across_languages():
    rng = np.random.default_rng(0)
    d = rng.choice([-1.0, 0.0, 1.0], size=200)
    # Two languages whose differences cancel item by item: their average is 0 in every joint resample.
    result = bootstrap([cell(d), cell(d, -d)], resamples=2000)
    assert result.ci_high[0] - result.ci_low[0] > 0.1
    assert result.ci_low[1] == result.ci_high[1] == 0.0 and result.p_value[1] == 1.0


def test_items_shared_in_part_only():
    # MLQA-like: question ids shared by some languages only; each language still scores its own items.
    a = Part("de", tuple(f"q{i}" for i in range(100)), np.ones((1, 100)))
    b = Part("hi", tuple(f"q{i}" for i in range(50, 150)), np.zeros((1, 100)))
    result = bootstrap([Cell({"target": "avg"}, (a, b))], resamples=500)
    assert result.delta[0] == pytest.approx(0.5) and result.ci_low[0] == result.ci_high[0] == pytest.approx(0.5)
    assert Cell({"target": "avg"}, (a, b)).n_items == 150


def test_holm_and_benjamini_hochberg():
    p = np.array([0.01, 0.04, 0.03, 0.005, np.nan])
    assert adjust(p, "holm")[:4] == pytest.approx([0.03, 0.06, 0.06, 0.02]) and np.isnan(adjust(p, "holm")[4])
    assert adjust(p, "bh")[:4] == pytest.approx([0.02, 0.04, 0.04, 0.02])
    assert adjust(np.array([0.5, 0.9]), "holm") == pytest.approx([1.0, 1.0])
    with pytest.raises(ValueError, match="correction 'bonf': expected one of holm, bh"):
        adjust(p, "bonf")


def test_significance_rows_from_an_experiment(tmp_path):
    exp = tmp_path / "exp"
    base = {"en": [1, 0] * 50, "de": [0, 1] * 50, "hi": [1, 1, 0, 0] * 25}
    better = {lang: [1] * 100 for lang in base}
    for seed in (1, 2):
        items_trial(exp, f"b{seed}", "baseline", seed, base, set())
        items_trial(exp, f"x{seed}", "xla-maml:en>hi", seed, better, {"hi"})
        items_trial(exp, f"s{seed}", "xla-maml:en>de", seed, base, {"de"})
    df = load_results(exp)
    sig, notes = significance(df, load_outcomes(df)[0], resamples=1000)
    assert notes == []
    rows = sig.set_index(["assignment", "target"])
    assert set(rows.loc["xla-maml:en>hi"].index) == {"en", "de", "avg", "avg_excl_aux"}  # not its own aux
    assert rows.loc[("xla-maml:en>hi", "avg_excl_aux"), "delta"] == pytest.approx(0.5)
    assert rows.loc[("xla-maml:en>hi", "avg_excl_aux"), "significant"]
    same = rows.loc["xla-maml:en>de"]
    assert (same["delta"] == 0).all() and (same["p_value"] == 1).all() and not same["significant"].any()
    assert set(sig["n_seeds"]) == {2} and set(sig["n_items"]) == {100} and set(sig["family_size"]) == {8}
