"""Figure 2: delta matrices against the baseline, marked aux cells, PNG and SVG files."""

import json

import pytest

from xlamaml.analysis.aggregate import MissingBaselineError
from xlamaml.analysis.heatmap import delta_matrix, marked_cells, plot_heatmap, support_query_matrix
from xlamaml.analysis.results import load_results
from tests.analysis.synthetic import BASELINE, XLA_HI, config, done_trial, report, write_trial

# Means over seeds, by hand: baseline en .81 hi .61 de .71 sw .51; xla-maml en>hi en .82 hi .65 de .73 sw .51;
# en>sw (one seed) en .80 hi .63 de .71 sw .58; x-maml hi en .81 hi .65 de .71 sw .50.
XLA = {"hi": {"de": 0.02, "en": 0.01, "hi": 0.04, "sw": 0.00}, "sw": {"de": 0.00, "en": -0.01, "hi": 0.02, "sw": 0.07}}


def test_delta_matrix_is_mean_over_seeds_minus_baseline(df):
    m = delta_matrix(df)
    assert list(m.index) == ["hi", "sw"] and list(m.columns) == ["de", "en", "hi", "sw"]  # paper (XNLI) order
    assert (m.index.name, m.columns.name) == ("auxiliary language", "target language")
    for aux, row in XLA.items():
        for target, delta in row.items():
            assert m.loc[aux, target] == pytest.approx(delta, abs=1e-12), (aux, target)
    assert m.attrs["scale"] == 100.0 and m.attrs["metric"] == "acc"


def test_other_method_and_split(df):
    m = delta_matrix(df, method="x-maml")
    assert list(m.index) == ["hi"]
    assert m.loc["hi"].to_dict() == pytest.approx({"de": 0.0, "en": 0.0, "hi": 0.04, "sw": -0.01})
    dev = delta_matrix(df, split="dev")
    assert dev.loc["hi", "hi"] == pytest.approx(0.04)  # dev numbers are test - 0.01 for both sides


def test_marked_cells_are_target_equals_aux(df):
    marked = marked_cells(delta_matrix(df))
    assert marked.to_numpy().sum() == 2 and marked.loc["hi", "hi"] and marked.loc["sw", "sw"]


def test_plot_writes_png_and_svg(df, tmp_path):
    paths = plot_heatmap(delta_matrix(df), tmp_path / "figs" / "heatmap")
    assert [p.name for p in paths] == ["heatmap.png", "heatmap.svg"]
    assert all(p.stat().st_size > 1000 for p in paths)
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = paths[1].read_text()
    # Percentage points, one decimal; the two aux cells are hatched (an SVG pattern).
    for text in ("4.0", "7.0", "-1.0", "2.0", "auxiliary language", "target language"):
        assert f">{text}<" in svg, text
    assert "<pattern" in svg
    plain = plot_heatmap(delta_matrix(df), tmp_path / "plain", title="no marks", aux_marked=False)
    assert "<pattern" not in plain[1].read_text() and ">no marks<" in plain[1].read_text()


def test_support_query_matrix(df, tmp_path):
    m = support_query_matrix(df)
    assert list(m.index) == ["en"] and list(m.columns) == ["hi", "sw"]
    # avg_excl_aux is compared with the baseline over the same targets (all but the aux language).
    assert m.loc["en", "hi"] == pytest.approx((0.82 + 0.73 + 0.51) / 3 - (0.81 + 0.71 + 0.51) / 3)
    assert m.loc["en", "sw"] == pytest.approx((0.80 + 0.63 + 0.71) / 3 - (0.81 + 0.61 + 0.71) / 3)
    assert not marked_cells(m).to_numpy().any()
    on_hi = support_query_matrix(df, target="hi")
    assert on_hi.loc["en"].to_dict() == pytest.approx({"hi": 0.04, "sw": 0.02})
    assert marked_cells(on_hi).loc["en"].to_dict() == {"hi": True, "sw": False}
    assert all(p.stat().st_size > 0 for p in plot_heatmap(on_hi, tmp_path / "sq"))


def test_variants_sharing_a_row_are_chosen_on_dev_not_test(exp):
    # A second en>hi with another learning rate: better on test, worse on dev. Dev decides.
    better_test = {k: v + 0.05 for k, v in XLA_HI[1].items()}
    worse_dev = {k: v - 0.2 for k, v in XLA_HI[1].items()}
    write_trial(exp, "T_xla_hi_lr", config("xla-maml:en>hi", 1, inner_lr=1e-4),
                [report(1, "lr", worse_dev, {"hi"}, better_test)])
    assert delta_matrix(load_results(exp)).loc["hi", "hi"] == pytest.approx(0.04)
    better_dev = {k: v + 0.2 for k, v in XLA_HI[1].items()}
    (exp / "T_xla_hi_lr" / "result.json").write_text(json.dumps(report(1, "lr", better_dev, {"hi"}, better_test)))
    assert delta_matrix(load_results(exp)).loc["hi", "hi"] == pytest.approx(0.71 - 0.61)


def test_no_baseline_is_a_clear_error(df):
    with pytest.raises(MissingBaselineError, match="no finished baseline trial"):
        delta_matrix(df[df["method"] != "baseline"])
    with pytest.raises(ValueError, match="no finished xla-maml trial"):
        delta_matrix(df[df["method"] != "xla-maml"])


def test_mixed_settings_must_be_split(exp):
    few = {k: v + 0.03 for k, v in BASELINE[1].items()}
    done_trial(exp, "T_base_few", config("baseline", 1, few_shot={"enabled": True}), few, set())
    df = load_results(exp)
    with pytest.raises(ValueError, match=r"mix 2 settings \(few-shot; zero-shot\)"):
        delta_matrix(df)
    assert delta_matrix(df[~df["few_shot"]]).loc["hi", "hi"] == pytest.approx(0.04)
