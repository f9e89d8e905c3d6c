"""search/predictive/simulated.py: the synthetic maps judge pairs by Assignment.trained_on, one pandas Spearman, tau."""

import numpy as np

from xlamaml.search.predictive.simulated import (LANGS, calibrate_tau, mean_spearman, spearman, spearman_rows, synthetic_aux,
                                   synthetic_pairs)
from xlamaml.trainables.assignment import parse_assignment


def test_pairs_map_never_excludes_english():
    gmap = synthetic_pairs()
    assert gmap.gains.shape == (15, 225)
    en = gmap.targets.index("en")
    for j, cell in enumerate(gmap.cells):
        for i, target in enumerate(gmap.targets):
            assert gmap.judged[i, j] == (not parse_assignment(cell).trained_on(target))
        if "en" in cell:
            assert gmap.judged[en, j], cell
    # 14 x-maml:X (X != en) lose X, the 182 pairs without en lose 2 targets, the 28 with en lose 1.
    assert gmap.judged.sum() == 15 * 225 - (14 + 2 * 182 + 28)


def test_aux_map_excludes_only_the_auxiliary_language():
    gmap = synthetic_aux()
    assert len(gmap.cells) == len(LANGS) - 1
    assert gmap.judged.sum() == 15 * 14 - 14
    assert gmap.judged[gmap.targets.index("en")].all()


def test_one_spearman_average_ranks_and_masks():
    x = np.array([[1.0, 2.0, 3.0, 4.0], [1.0, 1.0, 2.0, 3.0]])
    y = np.array([[4.0, 3.0, 2.0, 1.0], [1.0, 2.0, 3.0, 4.0]])
    rows = spearman_rows(x, y)
    assert rows[0] == -1 and abs(rows[1] - 0.9487) < 1e-3
    assert spearman(x[1], y[1]) == rows[1]
    mask = np.array([[True, True, True, False], [True, True, False, False]])  # the second row: 2 entries
    assert spearman_rows(x, y, mask)[0] == -1
    assert mean_spearman(x, y, mask) == -1  # rows with two entries or fewer are left out
    assert np.isnan(spearman(np.array([1.0, 1.0, 1.0]), np.array([1.0, 2.0, 3.0])))


def test_calibrate_tau_reaches_the_rank_correlation():
    tau, corr = calibrate_tau(synthetic_aux(), 0.7)
    assert tau > 0 and abs(corr - 0.7) < 0.01
