"""Best assignments overall and per target, with deltas against the baseline (picks ranked on test)."""

import pandas as pd
import pytest

from xlamaml.analysis.picks import best_pairs_dev, best_per_target_dev
from xlamaml.analysis.stats import COLUMNS as SIG_COLUMNS

BASE_EXCL = {"hi": (0.81 + 0.71 + 0.51) / 3, "sw": (0.81 + 0.61 + 0.71) / 3}
NO_SIG = pd.DataFrame(columns=list(SIG_COLUMNS))  # the synthetic trials keep no per-item outcomes


def best_pairs(df: pd.DataFrame) -> pd.DataFrame:
    """best_pairs.csv ranked on test."""
    frame, _ = best_pairs_dev(df, NO_SIG, rank_on="test")
    return frame


def best_per_target(df: pd.DataFrame) -> pd.DataFrame:
    """best_per_target.csv chosen on test."""
    frame, _ = best_per_target_dev(df, NO_SIG, rank_on="test")
    return frame


def test_best_pairs_order_and_deltas(df):
    best = best_pairs(df)
    assert list(best["assignment"]) == ["xla-maml:en>sw", "xla-maml:en>hi", "x-maml:hi"]
    assert list(best["value"]) == pytest.approx([(0.80 + 0.63 + 0.71) / 3, (0.82 + 0.73 + 0.51) / 3,
                                                 (0.81 + 0.71 + 0.50) / 3])
    assert list(best["baseline"]) == pytest.approx([BASE_EXCL["sw"], BASE_EXCL["hi"], BASE_EXCL["hi"]])
    assert list(best["delta"]) == pytest.approx([0.01 / 3, 0.01, -0.01 / 3])
    assert list(best["runs"]) == [1, 2, 2] and list(best["support"]) == ["en", "en", "hi"]
    assert list(best_pairs(df).head(2)["assignment"]) == ["xla-maml:en>sw", "xla-maml:en>hi"]


def test_best_per_target_skips_its_own_aux(df):
    best = best_per_target(df).set_index("target")
    assert list(best.index) == ["de", "en", "hi", "sw"]
    assert best.loc["hi", "assignment"] == "xla-maml:en>sw"  # en>hi is best on hi but trained on it
    assert best.loc["hi", ["value", "baseline", "delta"]].tolist() == pytest.approx([0.63, 0.61, 0.02])
    assert best.loc["sw", "assignment"] == "xla-maml:en>hi" and best.loc["sw", "delta"] == pytest.approx(0.0)
    assert best.loc["de", "delta"] == pytest.approx(0.02)


def test_no_baseline(df):
    # Picks never raise for a missing baseline: analyze still writes the other files, and the note says why.
    frame, notes = best_pairs_dev(df[df["method"] != "baseline"], NO_SIG, rank_on="test")
    assert frame is None and notes == ["best_pairs.csv: no finished variant with a baseline reports test avg_excl_aux"]
