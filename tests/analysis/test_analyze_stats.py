"""analyze with per-item outcomes: significance.csv, marks, picks on dev, the pairs map, power, and the gaps of
older or partial experiments (one line per cause, never a traceback)."""

import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from xlamaml.analysis.analyze import Options, analyze
from xlamaml.analysis.outcomes import load_outcomes
from xlamaml.analysis.results import load_results
from tests.analysis.synthetic import config, done_trial, items_trial

OLD_DEMO = Path(__file__).parent / "data" / "old_demo"
RESAMPLES = 2000


def plain_avg_bootstrap(exp: Path, variant: str, resamples: int, seed: int = 7) -> tuple[float, float, float]:
    """The old demo's avg* gain of `variant` over the baseline and its 95% interval, by the textbook paired bootstrap:
    one resample at a time, the same pair ids drawn for every language (XNLI is parallel)."""
    df = load_results(exp)
    outcomes, _ = load_outcomes(df)
    trial = lambda name: str(next(p for p in exp.iterdir() if p.name.startswith(name)))  # noqa: E731
    aux = variant.split("_")[-1].split("-")[-1]
    langs = [lang for lang in ("ar", "de", "en", "hi", "sw", "zh") if lang != aux]
    own = np.array([outcomes[(trial(variant), "test", lang)].values["acc"] for lang in langs])  # (langs, items)
    base = np.array([outcomes[(trial("baseline"), "test", lang)].values["acc"] for lang in langs])
    per_item = (own - base).mean(axis=0)  # avg*: the mean over languages, per pair id
    rng = np.random.default_rng(seed)
    deltas = [per_item[rng.integers(0, per_item.size, per_item.size)].mean() for _ in range(resamples)]
    lo, hi = np.quantile(deltas, [0.025, 0.975])
    return float(per_item.mean()), float(lo), float(hi)


def test_old_demo_agrees_with_a_plain_paired_bootstrap(tmp_path):
    paths = analyze(OLD_DEMO, tmp_path / "out", Options(resamples=RESAMPLES))
    sig = pd.read_csv(paths["significance.csv"])
    avg = sig[sig["target"] == "avg_excl_aux"].set_index("assignment")
    assert len(avg) == 8 and set(avg["n_items"]) == {150} and set(avg["n_seeds"]) == {1}
    for assignment, folder in [("xla-maml:en>de", "xla-maml_en-de"), ("xla-maml:en>zh", "xla-maml_en-zh"),
                               ("xla-maml:en>hi", "xla-maml_en-hi"), ("x-maml:sw", "x-maml_sw")]:
        delta, lo, hi = plain_avg_bootstrap(OLD_DEMO, folder, RESAMPLES)
        row = avg.loc[assignment]
        assert row["delta"] == pytest.approx(delta, abs=1e-12)
        assert row["ci_low"] == pytest.approx(lo, abs=0.01) and row["ci_high"] == pytest.approx(hi, abs=0.01)
    # The README's claim: XLA-MAML en -> de and en -> zh gain on avg* beyond noise; no X-MAML row does.
    excludes_zero = (avg["ci_low"] > 0) | (avg["ci_high"] < 0)
    assert set(avg.index[excludes_zero]) == {"xla-maml:en>de", "xla-maml:en>zh"}
    assert avg.loc["xla-maml:en>de", "delta"] == pytest.approx(0.52 - (0.4067 + 0.4933 + 0.46 + 0.4533 + 0.4533) / 5,
                                                               abs=1e-3)
    table = paths["table.md"].read_text()
    assert "| baseline |  | 40.67 | 50.00 | 49.33 | 46.00 | 45.33 | 45.33 | 46.11 | 46.11 | 1 |" in table
    assert "Holm (family-wise error) over the 56 cells here" in table
    assert "paired bootstrap" in paths["heatmap.svg"].read_text()


def test_legacy_xnli_predictions_are_scored_against_the_data(tmp_path, data_dir):
    # An experiment from before per-item outcomes: label words only. The labels come from the data in params.json.
    from xlamaml.analysis.outcomes import load_outcomes as load
    from xlamaml.trainables.data.xnli import LABELS

    exp = tmp_path / "old"
    shutil.copytree(OLD_DEMO, exp)
    trial = exp / "baseline_s42_9c59d_00000"
    params = (trial / "params.json").read_text()
    (trial / "params.json").write_text(params.replace('"task": "xnli"', f'"task": "xnli", "data": {{"dir": "{data_dir}"}}'))
    from xlamaml.analysis.outcomes import _xnli_labels
    uids, labels = _xnli_labels("auto", "test", "de", str(data_dir), 150)
    kept = (trial / "predictions" / "test-de.items.tsv")
    correct = [line.split("\t")[1] == "1.0" for line in kept.read_text().splitlines()[1:]]
    words = [LABELS[g] if ok else LABELS[(g + 1) % 3] for g, ok in zip(labels, correct)]
    kept.unlink()
    (trial / "predictions" / "test-de.tsv").write_text("".join(w + "\n" for w in words))
    df = load_results(exp)
    outcomes, notes = load(df, ("test",))
    assert notes.missing == {}
    assert outcomes[(str(trial), "test", "de")].values["acc"].tolist() == [float(c) for c in correct]


def test_missing_outcomes_are_one_line_per_cause(tmp_path, caplog):
    exp = tmp_path / "exp"
    base = {"en": [1, 0] * 20, "hi": [0, 1] * 20}
    items_trial(exp, "b", "baseline", 1, base, set())
    items_trial(exp, "x", "xla-maml:en>hi", 1, {lang: [1] * 40 for lang in base}, {"hi"})
    # Two trials from before per-item outcomes, and one that errored.
    done_trial(exp, "old1", config("xla-maml:en>de", 1, eval={"target_langs": ["en", "hi"]}),
               {"en": 0.5, "hi": 0.5}, {"de"})
    done_trial(exp, "old2", config("x-maml:de", 1, eval={"target_langs": ["en", "hi"]}), {"en": 0.5, "hi": 0.5},
               {"de"})
    (exp / "broken").mkdir()
    (exp / "broken" / "params.json").write_text('{"assignment": "xla-maml:en>sw", "seed": 1}')
    (exp / "broken" / "error.txt").write_text("RuntimeError")
    with caplog.at_level(logging.WARNING, logger="xlamaml"):
        paths = analyze(exp, tmp_path / "out", Options(resamples=500))
    assert {"results.csv", "significance.csv", "table.md", "heatmap.png", "best_pairs.csv"} <= set(paths)
    lines = [r.getMessage() for r in caplog.records]
    assert sum("no per-item outcomes" in line for line in lines) == 1
    assert all("\n" not in line and "Traceback" not in line for line in lines)
    sig = pd.read_csv(paths["significance.csv"])
    assert set(sig["assignment"]) == {"xla-maml:en>hi"}  # the old trials' cells are left out, nothing else


def test_marks_picks_on_dev_and_power(tmp_path, capsys):
    exp = tmp_path / "exp"
    rng = np.random.default_rng(3)
    base = {lang: rng.integers(0, 2, 300).tolist() for lang in ("en", "de", "hi", "sw")}
    lift = {lang: [1 if i < 60 else v for i, v in enumerate(vals)] for lang, vals in base.items()}
    for seed in (1, 2):
        items_trial(exp, f"b{seed}", "baseline", seed, base, set(), dev={"en": 0.5, "de": 0.5})
        # Better on test but worse on dev: the dev pick must not be it.
        items_trial(exp, f"x{seed}", "xla-maml:en>hi", seed, lift, {"hi"}, dev={"en": 0.4, "de": 0.4})
        items_trial(exp, f"s{seed}", "xla-maml:en>sw", seed, base, {"sw"}, dev={"en": 0.6, "de": 0.6})
    paths = analyze(exp, tmp_path / "out", Options(resamples=1000, power=5.0))
    table = paths["table.md"].read_text()
    assert "| xla-maml | hi |" in table and table.count("†") >= 4  # en, de, avg, avg* of en>hi; + legend
    best = pd.read_csv(paths["best_pairs.csv"])
    assert list(best["assignment"]) == ["xla-maml:en>sw", "xla-maml:en>hi"]
    assert best.loc[1, "significant"] and not best.loc[0, "significant"] and best.loc[0, "p_value"] == 1.0
    per_target = pd.read_csv(paths["best_per_target.csv"]).set_index("target")
    assert per_target.loc["en", "assignment"] == "xla-maml:en>sw"  # en>sw wins on dev en
    on_test = analyze(exp, tmp_path / "t", Options(resamples=200, rank_on="test"))
    best = pd.read_csv(on_test["best_pairs.csv"])
    assert best.loc[0, "assignment"] == "xla-maml:en>hi" and best["ranked_on"].str.startswith("test").all()
    power = pd.read_csv(paths["power.csv"]).set_index("target")
    assert set(power["n_items"]) == {300} and set(power["n_seeds"]) == {2}
    # Detectable gain ~ 2.80 * sd / sqrt(n) (seeds agree exactly here, so no seed spread).
    en = power.loc["en"]
    assert en["detectable"] == pytest.approx(2.8016 * en["sd_item"] / np.sqrt(300), rel=1e-3)
    assert en["items_needed"] == pytest.approx(np.ceil(en["sd_item"] ** 2 / (0.05 / 2.8016) ** 2), rel=1e-3)
    assert "detectable" in paths["power.txt"].read_text()


def test_no_dev_leaves_picks_out_unless_asked(tmp_path, caplog):
    exp = tmp_path / "exp"
    base = {"en": [1, 0] * 20, "hi": [0, 1] * 20}
    for name, assignment, aux in (("b", "baseline", set()), ("x", "xla-maml:en>hi", {"hi"})):
        trial = items_trial(exp, name, assignment, 1, base, aux)
        lines = (trial / "result.json").read_text()
        (trial / "result.json").write_text("".join(
            '{' + ", ".join(p for p in line.strip("{}\n").split(", ") if not p.startswith('"dev/')) + "}\n"
            for line in lines.splitlines()))
    with caplog.at_level(logging.WARNING, logger="xlamaml"):
        paths = analyze(exp, tmp_path / "out", Options(resamples=100))
    assert "best_pairs.csv" not in paths and "best_per_target.csv" not in paths
    assert any("no variant reports dev metrics" in r.getMessage() for r in caplog.records)
    paths = analyze(exp, tmp_path / "t", Options(resamples=100, rank_on="test"))
    assert "best_pairs.csv" in paths and "best_per_target.csv" in paths


def test_pairs_sweep_gets_its_map(tmp_path):
    exp = tmp_path / "exp"
    langs = ("de", "hi", "sw")
    base = {lang: [1, 0] * 30 for lang in langs + ("en",)}
    items_trial(exp, "b", "baseline", 1, base, set())
    for a in langs:
        for b in langs:
            good = {lang: ([1] * 60 if (a, b) == ("de", "hi") else vals) for lang, vals in base.items()}
            assignment = f"x-maml:{a}" if a == b else f"xla-maml:{a}>{b}"
            items_trial(exp, f"{a}{b}", assignment, 1, good, {a, b})
    paths = analyze(exp, tmp_path / "out", Options(resamples=500))
    assert {"pairs-heatmap.png", "pairs-heatmap.svg"} <= set(paths)
    svg = paths["pairs-heatmap.svg"].read_text()
    assert "support language" in svg and "query language" in svg and "Holm" in svg
    assert "over the 9 cells here" in svg  # 6 pairs and the 3-cell X-MAML diagonal, on avg*


def test_old_experiments_without_outcomes_still_get_every_other_file(exp, tmp_path):
    paths = analyze(exp, tmp_path / "out")
    assert "significance.csv" not in paths and {"table.md", "heatmap.png", "best_pairs.csv"} <= set(paths)


def test_bad_options_are_one_line(exp, tmp_path):
    from xlamaml.trainables.errors import XlamamlError

    with pytest.raises(XlamamlError, match="correction 'x'"):
        analyze(exp, tmp_path / "o", Options(correction="x"))
    with pytest.raises(XlamamlError, match="resamples 0"):
        analyze(exp, tmp_path / "o", Options(resamples=0))


def test_cli_prints_power_and_takes_the_options(tmp_path, capsys):
    from xlamaml.cli import main

    assert main(["-q", "analyze", str(OLD_DEMO), "--out", str(tmp_path / "o"), "--power", "5", "--correction", "bh",
                 "--resamples", "300"]) == 0
    printed = capsys.readouterr().out
    assert "significance.csv" in printed and "detectable" in printed and "for 5:" in printed
    assert set(pd.read_csv(tmp_path / "o" / "significance.csv")["correction"]) == {"bh"}
    assert "Benjamini-Hochberg" in (tmp_path / "o" / "table.md").read_text() or \
        not pd.read_csv(tmp_path / "o" / "significance.csv")["significant"].any()


def test_mlqa_gxlt_heatmap_of_the_top_pick(tmp_path):
    import json

    exp = tmp_path / "exp"
    base = {"en": [100.0, 0.0] * 10, "de": [50.0, 0.0] * 10}
    for name, assignment, aux, lift in (("b", "baseline", set(), 0.0), ("x", "xla-maml:en>de", {"de"}, 5.0)):
        trial = items_trial(exp, name, assignment, 1, base, aux, dev={"en": 40 + lift, "de": 40 + lift}, metric="f1")
        line = json.loads((trial / "result.json").read_text())
        line.update({f"gxlt/{c}-{q}/f1": 30.0 + lift * (c == "de") for c in ("en", "de") for q in ("en", "de")})
        (trial / "result.json").write_text(json.dumps(line) + "\n")
    paths = analyze(exp, tmp_path / "out", Options(resamples=100))
    svg = paths["gxlt-heatmap.svg"].read_text()
    assert "context language" in svg and "question language" in svg and ">5.0<" in svg and ">0.0<" in svg


def test_a_moved_experiment_finds_its_data_through_data_dir(tmp_path, data_dir):
    # The same old experiment, recorded on a machine whose data folder is not here: --data-dir (or
    # XLAMAML_DATA_DIR) points at this machine's copy, and the reported accuracy checks that it is the same data.
    from xlamaml.analysis.outcomes import _xnli_labels
    from xlamaml.analysis.outcomes import load_outcomes as load
    from xlamaml.trainables.data.xnli import LABELS

    exp = tmp_path / "old"
    shutil.copytree(OLD_DEMO, exp)
    trial = exp / "baseline_s42_9c59d_00000"
    params = (trial / "params.json").read_text()
    gone = tmp_path / "elsewhere" / "data"
    (trial / "params.json").write_text(params.replace('"task": "xnli"', f'"task": "xnli", "data": {{"dir": "{gone}"}}'))
    uids, labels = _xnli_labels("auto", "test", "de", str(data_dir), 150)
    kept = (trial / "predictions" / "test-de.items.tsv")
    correct = [line.split("\t")[1] == "1.0" for line in kept.read_text().splitlines()[1:]]
    kept.unlink()
    (trial / "predictions" / "test-de.tsv").write_text(
        "".join((LABELS[g] if ok else LABELS[(g + 1) % 3]) + "\n" for g, ok in zip(labels, correct)))
    df = load_results(exp)
    outcomes, notes = load(df, ("test",), str(data_dir))
    assert notes.missing == {}
    assert outcomes[(str(trial), "test", "de")].values["acc"].tolist() == [float(c) for c in correct]


def test_another_programs_ray_experiment_is_refused_in_one_line(tmp_path):
    from xlamaml.cli import main

    exp = tmp_path / "foreign"
    trial = exp / "train_fn_abc12_00000"
    trial.mkdir(parents=True)
    (trial / "params.json").write_text('{"lr": 0.1, "layers": 2}')
    (trial / "result.json").write_text('{"loss": 0.5, "training_iteration": 1}\n')
    assert main(["-q", "analyze", str(exp), "--out", str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out").exists()


def test_legacy_xnli_dev_labels_start_at_the_runs_dev_offset(data_dir):
    from xlamaml.analysis.outcomes import _xnli_labels

    all_uids, all_labels = _xnli_labels("auto", "dev", "de", str(data_dir), None)
    uids, labels = _xnli_labels("auto", "dev", "de", str(data_dir), 5, 500)
    assert uids == all_uids[500:505] and labels.tolist() == all_labels[500:505].tolist()
