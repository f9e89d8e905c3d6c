"""load_results: the tidy table of an experiment directory, statuses, resumes, errors."""

import json

import pytest

from xlamaml.analysis.aggregate import resolve_metric
from xlamaml.analysis.results import COLUMNS, load_results
from tests.analysis.synthetic import XLA_SW, config, dev_of, done_trial, report, write_trial


def trial(df, name):
    return df[df["trial_dir"].str.endswith(name)]


def test_columns_and_row_counts(df):
    assert list(df.columns) == list(COLUMNS)
    # 7 finished trials x (dev + test) x (4 targets + 2 averages), the errored trial's dev, 1 placeholder.
    assert len(df) == 7 * 2 * 6 + 6 + 1
    status = df.groupby("trial_dir")["status"].first()
    assert status.value_counts().to_dict() == {"done": 7, "error": 1, "incomplete": 1}
    assert set(df["lang"].dropna()) == {"en", "hi", "de", "sw", "avg", "avg_excl_aux"}
    assert set(df["split"].dropna()) == {"dev", "test"} and set(df["metric"].dropna()) == {"acc"}


def test_final_values_and_iterations(df):
    hi = trial(df, "T_xla_hi_2").set_index(["split", "lang"])
    assert hi.loc[("test", "hi"), "value"] == 0.64 and hi.loc[("dev", "hi"), "value"] == 0.63
    assert hi.loc[("test", "avg"), "value"] == pytest.approx((0.83 + 0.64 + 0.74 + 0.52) / 4)
    assert hi.loc[("test", "avg_excl_aux"), "value"] == pytest.approx((0.83 + 0.74 + 0.52) / 3)
    assert set(hi["iteration"]) == {2}


def test_resumed_trial_uses_the_last_report(df):
    sw = trial(df, "T_xla_sw_1").set_index(["split", "lang"])
    # Iterations 2 and 3 appear twice; the final dev numbers are those of the last line.
    assert sw.loc[("dev", "sw"), "value"] == dev_of(XLA_SW[1])["sw"]
    assert sw.loc[("test", "sw"), "value"] == 0.58
    assert set(sw["iteration"]) == {3} and set(sw["trial_id"]) == {"xla_sw"}


def test_errored_and_pending_trials(df):
    errored = trial(df, "T_xla_de_1")
    assert set(errored["status"]) == {"error"} and set(errored["split"]) == {"dev"}
    assert set(errored["iteration"]) == {1}
    pending = trial(df, "T_xla_ur_1")
    assert len(pending) == 1 and pending["status"].iloc[0] == "incomplete"
    assert pending["split"].isna().all() and pending["value"].isna().all()
    assert pending["assignment"].iloc[0] == "xla-maml:en>ur" and pending["trial_id"].iloc[0] == "T_xla_ur_1"


def test_config_columns(df):
    first = df.groupby("trial_dir").first()
    xla = first.loc[first.index.str.endswith("T_xla_hi_1")].iloc[0]
    assert (xla["assignment"], xla["method"], xla["support"], xla["query"], xla["aux"]) == \
        ("xla-maml:en>hi", "xla-maml", "en", "hi", "hi")
    assert (xla["sampling"], xla["parallel"], xla["seed"], xla["inner_lr"], xla["outer_lr"]) == \
        ("cover", True, 1, 1e-5, 1e-5)
    assert (xla["inner_steps"], xla["first_order"], xla["model"], xla["few_shot"], xla["task"]) == \
        (1, False, "embedded", False, "xnli")
    base = first.loc[first.index.str.endswith("T_base_1")].iloc[0]
    assert (base["method"], base["support"], base["query"], base["aux"]) == ("baseline", "", "", "")
    assert base[["sampling", "parallel", "inner_lr", "inner_steps"]].isna().all()


def test_assignment_and_method_fields_agree(df):
    # T_xmaml_hi_1 has assignment 'x-maml:hi' (which turns parallel off); T_xmaml_hi_2 has method + langs.
    rows = df[df["method"] == "x-maml"].groupby("trial_dir").first()
    assert len(rows) == 2
    for col in ("assignment", "support", "query", "aux", "parallel", "sampling"):
        assert rows[col].nunique() == 1, col
    assert rows["assignment"].iloc[0] == "x-maml:hi" and not rows["parallel"].iloc[0]


def test_an_error_txt_after_a_finished_run_is_done(tmp_path):
    done_trial(tmp_path, "t", config("baseline", 1), {"en": 0.8}, set())
    (tmp_path / "t" / "error.txt").write_text("old failure before resume_errored")
    assert set(load_results(tmp_path)["status"]) == {"done"}


def test_qa_metrics_are_parsed_generically(tmp_path):
    line = report(1, "q", {"en": 50.0, "hi": 30.0}, set(), {"en": 55.0, "hi": 33.0}, metric="f1")
    line.update({k.replace("/f1", "/em"): v - 10 for k, v in list(line.items()) if k.endswith("/f1")})
    write_trial(tmp_path, "q", config("baseline", 1, task="mlqa"), [line])
    df = load_results(tmp_path)
    assert set(df["metric"]) == {"em", "f1"} and len(df) == 2 * 2 * 4
    assert resolve_metric(df, "test") == "f1"
    assert df.set_index(["split", "lang", "metric"]).loc[("test", "hi", "em"), "value"] == 23.0


def test_missing_or_empty_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="experiment directory not found") as err:
        load_results(tmp_path / "nope")
    assert str(tmp_path / "nope") in str(err.value) and "\n" not in str(err.value)
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no trials") as err:
        load_results(tmp_path / "empty")
    assert str(tmp_path / "empty") in str(err.value) and "\n" not in str(err.value)


def test_a_cut_result_line_is_skipped_in_one_warning_line(tmp_path, caplog):
    t = done_trial(tmp_path, "t", config("baseline", 1), {"en": 0.8}, set())
    good = (t / "result.json").read_text().splitlines()
    # A line cut by a full disk, then the report a resume appended glued to it, then a cut last line.
    (t / "result.json").write_text(good[0] + "\n" + good[1][:25] + good[1] + "\n" + good[1][:40])
    with caplog.at_level("WARNING", logger="xlamaml"):
        df = load_results(tmp_path)
    assert set(df["status"]) == {"done"} and (df["split"] == "test").any()
    (line,) = [r.getMessage() for r in caplog.records]
    assert str(t / "result.json") in line and "1 cut or malformed line(s) skipped (line 3)" in line


def test_bad_params_name_the_file(tmp_path):
    write_trial(tmp_path, "a", config("xla-maml:en>xx", 1), None)
    with pytest.raises(ValueError, match=r"a/params.json: assignment 'xla-maml:en>xx'.*unknown language code 'xx'"):
        load_results(tmp_path)


def test_a_cut_params_file_falls_back_to_the_reports_config_or_leaves_the_trial_out(tmp_path, caplog):
    cfg = config("baseline", 1)
    t = done_trial(tmp_path, "t", cfg, {"en": 0.8}, set())
    lines = [json.loads(line) for line in (t / "result.json").read_text().splitlines()]
    (t / "result.json").write_text("".join(json.dumps({**r, "config": cfg}) + "\n" for r in lines))
    (t / "params.json").write_text(json.dumps(cfg)[:-5])
    u = done_trial(tmp_path, "u", config("baseline", 2), {"en": 0.7}, set())
    (u / "params.json").write_text("")
    u_lines = [json.loads(line) for line in (u / "result.json").read_text().splitlines()]
    (u / "result.json").write_text("".join(json.dumps({k: v for k, v in r.items() if k != "config"}) + "\n"
                                           for r in u_lines))
    with caplog.at_level("WARNING", logger="xlamaml"):
        df = load_results(tmp_path)
    assert set(df["trial_dir"]) == {str(t)} and set(df["assignment"]) == {"baseline"} and set(df["seed"]) == {1}
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2 and all("\n" not in m for m in messages)
    assert any(f"{t}/params.json:1: malformed JSON" in m and "read from its result.json" in m for m in messages)
    assert any(f"{u}/params.json:1: malformed JSON" in m and "left out" in m for m in messages)


def test_trial_id_from_a_ray_folder_name_when_nothing_was_reported(tmp_path):
    write_trial(tmp_path, "XlaMamlTrainable_abb19_00002_2_assignment=xla-maml_en_de,seed=1_2026-11-24_06-24-16",
                config("xla-maml:en>de", 1), None, error="boom")
    df = load_results(tmp_path)
    assert (df["trial_id"].item(), df["status"].item()) == ("abb19_00002", "error")


def test_a_repeated_cell_and_seed_counts_once(exp, caplog):
    import shutil

    before = load_results(exp)
    first = exp / "T_xla_hi_1"
    shutil.copytree(first, exp / "T_xla_hi_1_copy")  # a second driver's trial of the same cell and seed
    with caplog.at_level("WARNING", logger="xlamaml"):
        after = load_results(exp)
    assert len(after) == len(before) and set(after["trial_dir"]) == set(before["trial_dir"])
    assert any("repeat a variant and seed" in r.getMessage() for r in caplog.records)
