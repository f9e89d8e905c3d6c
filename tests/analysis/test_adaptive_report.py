"""analyze of an adaptive sweep: stopped trials, picks judged on dev among the survivors, stops, compute, heatmaps."""

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from xlamaml.analysis import adaptive_compute, adaptive_heatmaps
from xlamaml.analysis.adaptive_compute import compute
from xlamaml.analysis.adaptive_heatmaps import aux_matrix, pairs_matrix
from xlamaml.analysis.adaptive_load import load_adaptive, trained_on
from xlamaml.analysis.adaptive_picks import picks
from xlamaml.analysis.adaptive_stops import stops
from xlamaml.analysis.analyze import Options, analyze
from xlamaml.analysis.results import load_results
from xlamaml.experiment.records import trial_folder
from tests.analysis.synthetic import config, metrics, write_trial
from xlamaml.trainables.tasks.outcomes import write_outcomes

TARGETS = ("de", "hi")
DEV, TEST = 100, 50
# Dev gains in items flipped from wrong to right (positive) or right to wrong (negative), per target.
A, B, C, D = "x-maml:sw", "xla-maml:en>sw", "x-maml:en", "x-maml:hi"
S = "xla-maml:en>ar"  # stopped after rung 0
SURVIVORS = {A: {"de": 20, "hi": 10}, B: {"de": 19, "hi": 30}, C: {"de": 0, "hi": 0}, D: {"de": 5, "hi": 40}}
TEST_GAIN = {A: {"de": 10, "hi": 5}, B: {"de": 8, "hi": 15}, C: {"de": 0, "hi": 0}, D: {"de": 1, "hi": 20}}
STOPPED_DEV = {"de": -4, "hi": 2}  # of its 20 dev items
REASON = "not among the 4 kept: best rank 3 (hi)"


def base_items(n: int) -> np.ndarray:
    """The baseline: right on even items (0.5 accuracy)."""
    return (np.arange(n) % 2 == 0).astype(float)


def flipped(n: int, gain: int) -> np.ndarray:
    """The baseline's outcomes with `gain` wrong items made right (or -gain right items made wrong), first ones."""
    out = base_items(n)
    idx = np.flatnonzero(out == (0.0 if gain > 0 else 1.0))[:abs(gain)]
    out[idx] = 1.0 - out[idx]
    return out


def trial(exp: Path, cell: str, seed: int, dev: dict, test: dict | None, steps: int, rung: int) -> None:
    folder = trial_folder(cell, seed)
    aux = set() if cell == "baseline" else {cell.split(":")[1].split(">")[-1]}
    line = {"training_iteration": 1, "trial_id": folder, "rung/index": rung, "done": True,
            **metrics("dev", {t: float(v.mean()) for t, v in dev.items()}, aux)}
    if cell != "baseline":
        line.update({"meta/steps": steps, "meta/seconds": steps / 10})
    if test is None:
        line["rung/paused"] = True
    else:
        line.update(metrics("test", {t: float(v.mean()) for t, v in test.items()}, aux))
    path = write_trial(exp, folder, config(cell, seed, eval={"target_langs": list(TARGETS)}), [line])
    for split, values in (("dev", dev), ("test", test or {})):
        for lang, v in values.items():
            write_outcomes(path / "predictions" / f"{split}-{lang}.items.tsv", [str(i) for i in range(len(v))],
                           {"acc": list(v)})


def record() -> dict:
    cells = [A, B, C, D, S]
    return {"cells": cells, "baseline": [{"assignment": "baseline", "seed": 1}, {"assignment": "baseline", "seed": 2}],
            "rungs": [{"index": 0, "steps": 10, "dev_items": 20, "seeds": [1], "cells": 5, "fraction": 0.5},
                      {"index": 1, "steps": 20, "dev_items": DEV, "seeds": [1, 2], "cells": 4, "fraction": 1.0}],
            "metric": "acc",
            "decisions": [{"rung": 0, "kept": [A, B, C, D], "stopped": {S: REASON},
                           "ranks": {A: {"de": 1, "hi": 2}, B: {"de": 2, "hi": 1}, C: {"de": 4, "hi": 4},
                                     D: {"de": 3}, S: {"de": 5, "hi": 3}},
                           "estimates": {}, "excluded": {"de": [], "hi": [D]}}],
            "spent": [{"rung": 0, "trials": 7, "meta_steps": 50, "dev_items": 200, "test_items": 200,
                       "trial_seconds": 10.0, "wall_seconds": 5.0},
                      {"rung": 1, "trials": 8, "meta_steps": 120, "dev_items": 1600, "test_items": 800,
                       "trial_seconds": 30.0, "wall_seconds": 9.0}]}


@pytest.fixture
def adaptive_exp(tmp_path: Path) -> Path:
    exp = tmp_path / "adaptive"
    for seed in (1, 2):
        trial(exp, "baseline", seed, {t: base_items(DEV) for t in TARGETS}, {t: base_items(TEST) for t in TARGETS},
              0, 0)
        for cell, gains in SURVIVORS.items():
            trial(exp, cell, seed, {t: flipped(DEV, g) for t, g in gains.items()},
                  {t: flipped(TEST, g) for t, g in TEST_GAIN[cell].items()}, 20, 1)
    trial(exp, S, 1, {t: flipped(20, g) for t, g in STOPPED_DEV.items()}, None, 10, 0)
    (exp / "xlamaml_adaptive.json").write_text(json.dumps(record()))
    return exp


OPTS = Options(resamples=2000)


def grid(_exp):
    return SimpleNamespace(trials=10, meta_steps=200, dev_items=5000, test_items=1000, evaluated_items=6000,
                           estimated=())


def test_stopped_trial_has_status_stopped(adaptive_exp):
    df = load_results(adaptive_exp)
    status = df.drop_duplicates("trial_dir").set_index("assignment")["status"]
    assert status[S] == "stopped" and (status.drop(S) == "done").all()
    # Without the record the same trial is merely incomplete.
    (adaptive_exp / "xlamaml_adaptive.json").unlink()
    assert set(load_results(adaptive_exp).query("assignment == @S")["status"]) == {"incomplete"}


def test_picks_are_the_best_survivors_on_dev(adaptive_exp):
    ad = load_adaptive(adaptive_exp, load_results(adaptive_exp))
    assert ad.survivors == [A, B, C, D] and ad.stopped == {S: (0, REASON)}
    rows, _ = picks(ad, OPTS)
    rows = rows.set_index("target")
    # de: A (+20 points on dev); hi: D is excluded (trained on hi), so B (+30), not D (+40).
    assert rows.loc["de", "pick"] == A and rows.loc["hi", "pick"] == B
    assert rows.loc["de", "dev_gain"] == pytest.approx(20.0) and rows.loc["hi", "dev_gain"] == pytest.approx(30.0)
    assert rows.loc["de", "dev_ci_low"] > 0 and rows.loc["de", "dev_items"] == DEV and rows.loc["de", "dev_seeds"] == 2
    assert rows.loc["de", "test_gain"] == pytest.approx(20.0) and rows.loc["hi", "test_gain"] == pytest.approx(30.0)
    assert rows.loc["de", "test_ci_low"] > 0 and (rows["p_adjusted"] >= rows["p_value"]).all()
    assert (rows["correction"] == "holm").all() and (rows["family_size"] == 2).all()
    # B is one item behind A on de: not distinguishable; C (no gain) is.
    assert rows.loc["de", "indistinguishable"].split(";") == [A, B] and rows.loc["de", "indistinguishable_count"] == 2
    assert rows.loc["hi", "indistinguishable"] == B and rows.loc["de", "candidates"] == 4
    assert rows.loc["hi", "candidates"] == 3
    assert S not in set(rows["pick"]) and S not in ";".join(rows["indistinguishable"])


def test_stops_list_rung_reason_last_dev_gain_and_rank(adaptive_exp):
    ad = load_adaptive(adaptive_exp, load_results(adaptive_exp))
    rows = stops(ad)
    assert list(rows["cell"]) == [S]
    row = rows.iloc[0]
    assert row["stopped_after_rung"] == 0 and row["reason"] == REASON and row["rung_dev_items"] == 20
    assert row["best_rank"] == 3 and row["best_rank_target"] == "hi"
    # Against the baseline on the same first 20 items: -4 and +2 of 20 items.
    assert row["dev_gain_de"] == pytest.approx(-20.0) and row["dev_gain_hi"] == pytest.approx(10.0)


def test_compute_shares_from_the_record(adaptive_exp):
    ad = load_adaptive(adaptive_exp, load_results(adaptive_exp))
    frame, notes = compute(ad, grid)
    rows = frame.set_index("quantity")
    assert rows.loc["meta_steps", "adaptive"] == 170 and rows.loc["meta_steps", "share"] == pytest.approx(170 / 200)
    assert rows.loc["evaluated_items", "adaptive"] == 2800
    assert rows.loc["evaluated_items", "share"] == pytest.approx(2800 / 6000)
    assert rows.loc["trials", "adaptive"] == 11  # 2 baseline, 5 cells x seed 1, 4 survivors x seed 2
    # Rates: meta seconds = steps / 10 in every last report: 0.1 s a step; the other 40 - 17 s over 2800 items.
    per_item = (40.0 - 17.0) / 2800
    assert rows.loc["trial_seconds", "grid"] == pytest.approx(200 * 0.1 + 6000 * per_item)
    assert rows.loc["trial_seconds", "grid_source"].startswith("estimated")
    assert not notes


def test_heatmaps_show_stopped_cells_hatched(adaptive_exp, tmp_path):
    df = load_results(adaptive_exp)
    ad = load_adaptive(adaptive_exp, df)
    matrix, mask, note = aux_matrix(df, "xla-maml", ad)
    # en>sw finished (test gains), en>ar stopped (its last dev gains vs the baseline on the same items).
    assert list(matrix.index) == ["ar", "sw"] and mask.loc["ar"].all() and not mask.loc["sw"].any()
    assert matrix.loc["ar", "de"] == pytest.approx(-0.2) and matrix.loc["sw", "hi"] == pytest.approx(0.3)
    assert "stopped after rung 0" in note
    pairs, pmask, _ = pairs_matrix(df, ad)
    assert pmask.loc["en", "ar"] and not pmask.loc["en", "sw"]
    assert pairs.loc["en", "ar"] == pytest.approx((-0.2 + 0.1) / 2)  # avg_excl_aux over de and hi


def test_analyze_writes_the_adaptive_files(adaptive_exp, tmp_path, monkeypatch):
    monkeypatch.setattr(adaptive_compute, "_grid_counts", grid)
    drawn = []
    real = adaptive_heatmaps.aux_matrix
    monkeypatch.setattr(adaptive_heatmaps, "aux_matrix", lambda *a: drawn.append(real(*a)) or drawn[-1])
    paths = analyze(adaptive_exp, tmp_path / "out", OPTS)
    assert {"adaptive_picks.csv", "adaptive_stops.csv", "adaptive_compute.csv", "adaptive.md", "heatmap.png",
            "heatmap.svg"} <= set(paths)
    assert drawn and drawn[0][1].to_numpy().any()  # the heatmap was drawn with a stopped mask
    svg = paths["heatmap.svg"].read_text()
    assert "stopped after rung 0" in svg and "<pattern" in svg
    md = paths["adaptive.md"].read_text()
    for heading in ("## Picks per target", "## Stopped cells", "## Compute"):
        assert heading in md
    assert REASON in md
    # A stopped cell is never in the test outputs.
    for name in ("significance.csv", "best_pairs.csv", "best_per_target.csv", "table.csv"):
        if name in paths:
            assert "en>ar" not in paths[name].read_text() and "en-ar" not in paths[name].read_text(), name
    assert set(pd.read_csv(paths["adaptive_picks.csv"])["pick"]) == {A, B}


def test_grid_experiment_gets_no_adaptive_files(exp, tmp_path):
    assert not any(name.startswith("adaptive") for name in analyze(exp, tmp_path / "out"))


def test_dev_targets_record_then_decisions_then_sweep(adaptive_exp):
    path = adaptive_exp / "xlamaml_adaptive.json"
    rec = record()
    path.write_text(json.dumps({**rec, "dev_langs": ["hi"]}))
    assert load_adaptive(adaptive_exp, load_results(adaptive_exp)).targets == ["hi"]  # the record's own
    path.write_text(json.dumps(rec))
    assert load_adaptive(adaptive_exp, load_results(adaptive_exp)).targets == ["de", "hi"]  # the decisions' excluded
    for d in rec["decisions"]:
        d.pop("excluded")
    path.write_text(json.dumps(rec))
    (adaptive_exp / "xlamaml_sweep.json").write_text(json.dumps(
        {"run": config(None, 1, eval={"target_langs": ["hi", "de"], "dev_langs": ["de"]}), "sweep": {}}))
    ad = load_adaptive(adaptive_exp, load_results(adaptive_exp))
    assert ad.targets == ["de"]  # the sweep's eval.dev_langs
    assert ad.excluded == {"de": set()}


def test_trained_on_never_counts_english():
    assert trained_on(D, "hi") and trained_on(B, "sw") and not trained_on(B, "de")
    assert not trained_on(C, "en") and not trained_on(B, "en") and not trained_on("not a cell", "hi")
