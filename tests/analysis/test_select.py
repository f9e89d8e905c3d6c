"""Best assignments overall and per target, with deltas against the baseline."""

import pytest

from xlamaml.analysis.aggregate import MissingBaselineError
from xlamaml.analysis.select import best_pairs, best_per_target

BASE_EXCL = {"hi": (0.81 + 0.71 + 0.51) / 3, "sw": (0.81 + 0.61 + 0.71) / 3}


def test_best_pairs_order_and_deltas(df):
    best = best_pairs(df)
    assert list(best["assignment"]) == ["xla-maml:en>sw", "xla-maml:en>hi", "x-maml:hi"]
    assert list(best["value"]) == pytest.approx([(0.80 + 0.63 + 0.71) / 3, (0.82 + 0.73 + 0.51) / 3,
                                                 (0.81 + 0.71 + 0.50) / 3])
    assert list(best["baseline"]) == pytest.approx([BASE_EXCL["sw"], BASE_EXCL["hi"], BASE_EXCL["hi"]])
    assert list(best["delta"]) == pytest.approx([0.01 / 3, 0.01, -0.01 / 3])
    assert list(best["runs"]) == [1, 2, 2] and list(best["support"]) == ["en", "en", "hi"]
    assert list(best_pairs(df, top=2)["assignment"]) == ["xla-maml:en>sw", "xla-maml:en>hi"]


def test_best_per_target_skips_its_own_aux(df):
    best = best_per_target(df).set_index("target")
    assert list(best.index) == ["de", "en", "hi", "sw"]
    assert best.loc["hi", "assignment"] == "xla-maml:en>sw"  # en>hi is best on hi but trained on it
    assert best.loc["hi", ["value", "baseline", "delta"]].tolist() == pytest.approx([0.63, 0.61, 0.02])
    assert best.loc["sw", "assignment"] == "xla-maml:en>hi" and best.loc["sw", "delta"] == pytest.approx(0.0)
    assert best.loc["de", "delta"] == pytest.approx(0.02)


def test_no_baseline(df):
    with pytest.raises(MissingBaselineError, match="no finished baseline trial"):
        best_pairs(df[df["method"] != "baseline"])
