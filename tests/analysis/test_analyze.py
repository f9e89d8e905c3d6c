"""analyze: every analysis file from an experiment directory."""

import pandas as pd

from xlamaml.analysis.analyze import analyze
from tests.analysis.synthetic import BASELINE, config, done_trial, write_trial

FILES = {"results.csv", "table.md", "table.csv", "table.tex", "heatmap.png", "heatmap.svg", "best_pairs.csv",
         "best_per_target.csv"}


def test_analyze_writes_every_file(exp, tmp_path):
    paths = analyze(exp, tmp_path / "out")
    assert set(paths) == FILES
    assert all(p.parent == tmp_path / "out" and p.stat().st_size > 0 for p in paths.values())
    assert len(pd.read_csv(paths["results.csv"])) == 91
    assert "| xla-maml | hi | 73.00 ± 1.41 | 82.00 ± 1.41 | - |" in paths["table.md"].read_text()
    # Ranked on dev gain over the baseline (dev = test - 0.01 on both sides): en>hi's avg* gain 1 point, en>sw's 1/3.
    best = pd.read_csv(paths["best_pairs.csv"])
    assert list(best["assignment"])[0] == "xla-maml:en>hi" and best["ranked_on"].str.startswith("dev").all()


def test_heatmap_falls_back_to_x_maml_and_skips_without_baseline(tmp_path):
    for seed in (1, 2):
        done_trial(tmp_path / "a", f"x{seed}", config("x-maml:hi", seed), BASELINE[seed], {"hi"})
    paths = analyze(tmp_path / "a", tmp_path / "out_a")
    # No baseline: the tidy table and Table 3, but no deltas.
    assert set(paths) == {"results.csv", "table.md", "table.csv", "table.tex"}
    done_trial(tmp_path / "a", "b", config("baseline", 1), BASELINE[1], set())
    paths = analyze(tmp_path / "a", tmp_path / "out_b")
    assert "heatmap.png" in paths and "x-maml" in paths["heatmap.svg"].read_text()


def test_two_settings_get_two_heatmaps(exp, tmp_path):
    for name, assignment in (("fb", "baseline"), ("fx", "xla-maml:en>hi")):
        done_trial(exp, name, config(assignment, 1, few_shot={"enabled": True}), BASELINE[1], {"hi"})
    paths = analyze(exp, tmp_path / "out")
    assert {"heatmap.png", "heatmap-few-shot.png", "heatmap-few-shot.svg"} <= set(paths)
    assert "### zero-shot" in paths["table.md"].read_text()


def test_unfinished_sweep_gets_results_only(tmp_path):
    write_trial(tmp_path / "e", "t", config("baseline", 1), None)
    assert set(analyze(tmp_path / "e", tmp_path / "out")) == {"results.csv"}
