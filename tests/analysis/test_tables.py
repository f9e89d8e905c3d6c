"""Table 3: rows (method, aux), mean ± std over seeds in percent, '-' for aux cells; Markdown, LaTeX, CSV."""

import math

import numpy as np
import pandas as pd
import pytest

from xlamaml.analysis.aggregate import NoResultsError
from xlamaml.analysis.results import load_results
from xlamaml.analysis.tables import csv_frame, format_cells, paper_table, to_csv, to_latex, to_markdown
from tests.analysis.synthetic import BASELINE, config, done_trial, write_trial


def sample_std(*values):
    return float(np.std(values, ddof=1))


def test_rows_columns_and_order(df):
    t = paper_table(df)
    assert list(t.index) == [("baseline", ""), ("x-maml", "hi"), ("xla-maml", "hi"), ("xla-maml", "sw")]
    assert list(dict.fromkeys(t.columns.get_level_values("lang"))) == ["de", "en", "hi", "sw", "avg", "avg_excl_aux"]
    assert list(dict.fromkeys(t.columns.get_level_values("stat"))) == ["mean", "std", "n"]


def test_averages_equal_hand_computed_numbers(df):
    t = paper_table(df)
    s1, s2 = (0.81 + 0.66 + 0.72 + 0.50) / 4, (0.83 + 0.64 + 0.74 + 0.52) / 4
    assert t.loc[("xla-maml", "hi"), ("avg", "mean")] == pytest.approx((s1 + s2) / 2)
    assert t.loc[("xla-maml", "hi"), ("avg", "std")] == pytest.approx(sample_std(s1, s2))
    e1, e2 = (0.81 + 0.72 + 0.50) / 3, (0.83 + 0.74 + 0.52) / 3  # without hi, the aux language
    assert t.loc[("xla-maml", "hi"), ("avg_excl_aux", "mean")] == pytest.approx((e1 + e2) / 2)
    assert t.loc[("baseline", ""), ("avg", "mean")] == pytest.approx(0.66)
    assert t.loc[("xla-maml", "hi"), ("de", "mean")] == pytest.approx(0.73)
    assert t.loc[("xla-maml", "hi"), ("de", "n")] == 2
    sw = t.loc[("xla-maml", "sw")]
    assert sw[("avg_excl_aux", "mean")] == pytest.approx((0.80 + 0.63 + 0.71) / 3) and math.isnan(sw[("de", "std")])


def test_aux_cells_are_dashes(df):
    t = paper_table(df)
    assert math.isnan(t.loc[("xla-maml", "hi"), ("hi", "mean")]) and math.isnan(t.loc[("x-maml", "hi"), ("hi", "mean")])
    cells = format_cells(t)
    assert cells.loc[("xla-maml", "hi"), "hi"] == "-" and cells.loc[("xla-maml", "sw"), "sw"] == "-"
    assert cells.loc[("baseline", ""), "hi"] == "61.00 ± 1.41"
    assert cells.loc[("xla-maml", "sw"), "hi"] == "63.00"  # one seed: no spread to show
    spread = 100 * sample_std(0.81 + 0.72 + 0.50, 0.83 + 0.74 + 0.52) / 3
    assert cells.loc[("xla-maml", "hi"), "avg_excl_aux"] == f"68.67 ± {spread:.2f}"
    assert cells.loc[("xla-maml", "hi"), "runs"] == "2"


def test_markdown(df):
    md = to_markdown(paper_table(df))
    lines = md.splitlines()
    assert lines[0] == "| method | aux | de | en | hi | sw | avg | avg\\* | runs |"
    assert lines[1] == "|---|---|---:|---:|---:|---:|---:|---:|---:|"
    hi = "| xla-maml | hi | 73.00 ± 1.41 | 82.00 ± 1.41 | - | 51.00 ± 1.41 | 67.75 ± 0.71 | 68.67 ± 1.41 | 2 |"
    assert hi in lines
    assert "| xla-maml | sw | 71.00 | 80.00 | 63.00 | - | 68.00 | 71.33 | 1 |" in lines
    assert lines[-1].startswith("test acc (%): mean ± std over seeds")


def test_latex(df):
    tex = to_latex(paper_table(df))
    assert tex.startswith("\\begin{tabular}{llrrrrrrr}\n\\toprule\n")
    assert "method & aux & de & en & hi & sw & avg & avg$^*$ & runs \\\\" in tex
    assert "xla-maml & hi & 73.00 $\\pm$ 1.41 & 82.00 $\\pm$ 1.41 & - &" in tex
    assert tex.rstrip().endswith("\\end{tabular}") and "±" not in tex


def test_csv(df, tmp_path):
    path = to_csv(paper_table(df), tmp_path / "t" / "table.csv")
    back = pd.read_csv(path, keep_default_na=False, na_values=[""])
    assert list(back.columns[:5]) == ["method", "aux", "runs", "de", "de_std"]
    row = back[(back["method"] == "xla-maml") & (back["aux"] == "hi")].iloc[0]
    assert row["de"] == pytest.approx(73.0) and row["avg_excl_aux"] == pytest.approx(68.6667, abs=1e-4)
    assert math.isnan(row["hi"]) and row["runs"] == 2


def test_two_settings_print_as_blocks(exp):
    few = {k: v + 0.03 for k, v in BASELINE[1].items()}
    done_trial(exp, "T_base_few", config("baseline", 1, few_shot={"enabled": True}), few, set())
    df = load_results(exp)
    with pytest.raises(ValueError, match="mix 2 settings"):
        paper_table(df)
    tables = {"zero-shot": paper_table(df[~df["few_shot"]]), "few-shot": paper_table(df[df["few_shot"]])}
    md = to_markdown(tables)
    assert md.index("### zero-shot") < md.index("### few-shot")
    assert "| baseline |  | 73.00 | 83.00 | 63.00 | 53.00 | 68.00 | 68.00 | 1 |" in md
    assert "\\multicolumn{9}{l}{\\textit{few-shot}}" in to_latex(tables)
    assert list(csv_frame(tables)["setting"]) == ["zero-shot"] * 4 + ["few-shot"]


def test_percent_metrics_are_not_scaled(tmp_path):
    # QA F1 reported in percent already.
    for seed in (1, 2):
        done_trial(tmp_path, f"b{seed}", config("baseline", seed, task="mlqa"), {"en": 70.0 + seed, "hi": 40.0}, set())
    md = to_markdown(paper_table(load_results(tmp_path)))
    assert "| baseline |  | 71.50 ± 0.71 | 40.00 ± 0.00 |" in md and "test f1" not in md


def test_no_finished_trials(tmp_path):
    write_trial(tmp_path, "t", config("baseline", 1), None)
    with pytest.raises(NoResultsError, match="no finished trial reports test/<lang>/acc"):
        paper_table(load_results(tmp_path))
