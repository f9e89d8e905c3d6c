"""One rule for "was this cell trained on this target's data?" (Assignment.trained_on): the adaptive rule, the picks,
the averages, the heatmap marks and the tables agree, English included (never counted: every cell and the baseline
were fine-tuned on English in the English stage)."""

from xlamaml.analysis.langs import excluded_from_avg, trained_on
from xlamaml.analysis.outcomes import load_outcomes
from xlamaml.analysis.picks import best_per_target_dev
from xlamaml.analysis.results import load_results
from xlamaml.analysis.stats import significance
from xlamaml.search.adaptive.driver import excluded
from xlamaml.search.space import AssignmentSpec, assignments
from xlamaml.trainables.assignment import parse_assignment
from xlamaml.trainables.languages import XNLI_LANGS
from tests.analysis.synthetic import make_experiment

LANGS = list(XNLI_LANGS)


def all_cells() -> list[str]:
    """Return the cells of every assignment kind over the XNLI languages (English among them)."""
    out = []
    for kind in ("pairs", "en-aux", "two-aux"):
        out += [c for c in assignments(AssignmentSpec(kind=kind, langs=LANGS)) if c != "baseline"]
    return list(dict.fromkeys(out))


def test_the_adaptive_rule_the_labels_and_the_averages_ask_one_rule():
    cells = all_cells()
    judged_out = excluded(cells, LANGS)
    for cell in cells:
        a = parse_assignment(cell)
        for lang in LANGS:
            rule = a.trained_on(lang)
            assert (cell in judged_out[lang]) == rule == trained_on(a.aux, lang) == (lang in excluded_from_avg(a.aux))
    assert "xla-maml:en>de" not in judged_out["en"] and "x-maml:en" not in judged_out["en"]
    assert "xla-maml:en>de" in judged_out["de"] and "xla-maml:de>en" in judged_out["de"]


def test_best_per_target_picks_what_the_adaptive_rule_would_judge(tmp_path):
    df = load_results(make_experiment(tmp_path / "exp"))
    sig, _ = significance(df, load_outcomes(df)[0], resamples=200)
    for rank_on in ("dev", "test"):
        picks, _ = best_per_target_dev(df, sig, rank_on=rank_on)
        for _, row in picks.iterrows():
            assert excluded([row["assignment"]], [row["target"]])[row["target"]] == []
        by_target = picks.set_index("target")["assignment"]
        # English: an en -> X cell is judged there, as by the adaptive rule; hi: en -> hi is not.
        assert by_target["en"] == "xla-maml:en>hi" and by_target["hi"] != "xla-maml:en>hi"
