"""`xlamaml plan`: the counts of the smoke and demo presets worked out by hand here, the compute arithmetic, the CLI's
table and JSON, one-line errors, and one real measurement with the tiny model."""

import json

import pytest

from xlamaml.cli import main, preset_path
from xlamaml.search.plan.counts import plan_counts
from xlamaml.search.plan.planner import make_plan
from xlamaml.search.spec import load_sweep


def sweep(name, *overrides):
    return load_sweep(preset_path(name), list(overrides))


def test_smoke_counts_by_hand(data_dir):
    sw = sweep("smoke", f"data.dir={data_dir}")
    # baseline (seedless: once), x-maml:hi, xla-maml:en>hi; seed 0; 4 meta steps each (one query language), a report
    # every 2 steps; dev: en, de, hi (the targets) x 32; test: 3 targets x 48.
    dev_report, test = 3 * 32, 3 * 48
    g = plan_counts(sw, "grid")
    assert (g.cells, g.baseline_trials, g.trials, g.trial_runs, g.finished_trials) == (2, 1, 3, 3, 3)
    assert g.meta_steps == 2 * 4
    assert g.dev_items == 2 * 2 * dev_report + 1 * dev_report  # 2 reports a meta trial, 1 for the baseline
    assert g.test_items == 3 * test
    assert not g.upper_bound and not g.estimated
    # adaptive (defaults: steps [0.1, 0.5, 1], every dev item, seeds [1, 2, all], keep 0.4, min_keep 2, per_target
    # 0.4): rungs to 1, 2 and 4 steps (0.1 x 4 rounded up), 32 dev items, 1 seed each (the sweep has one); both cells
    # kept each time (min_keep 2).
    a = plan_counts(sw, "adaptive")
    assert [(r.cells, r.seeds, r.steps, r.dev_items) for r in a.rungs] == [(2, 1, 1, 32), (2, 1, 2, 32), (2, 1, 4, 32)]
    assert (a.trials, a.trial_runs, a.finished_trials) == (2 * 1 + 1, 2 + 2 + 2 + 1, 2 + 1)
    assert a.meta_steps == 2 * 1 * 4
    assert a.dev_items == 3 * 2 * 1 * dev_report + 1 * dev_report
    assert a.test_items == 2 * 1 * test + 1 * test
    assert not a.upper_bound


def test_demo_counts_by_hand(data_dir):
    sw = sweep("demo", f"data.dir={data_dir}")
    # 4 cells (x-maml and xla-maml for de, zh) x 3 seeds + the baseline once; 40 steps, one report at 40;
    # dev: ar, es x 100; test: 6 targets x 500.
    dev_report, test = 2 * 100, 6 * 500
    g = plan_counts(sw, "grid")
    assert (g.cells, g.trials, g.baseline_trials) == (4, 13, 1)
    assert g.meta_steps == 12 * 40
    assert g.dev_items == 13 * dev_report
    assert g.test_items == 13 * test
    # adaptive: 2 dev targets (ar, es), so per_target 0.4 asks for 1 final cell and the ratio is max(0.4, (1/4)^(1/2))
    # = 0.5; rungs to 4, 20 and 40 steps with 1, 2 and 3 seeds; 4 cells, then max(2, ceil(4 x 0.5)) = 2, then 2.
    a = plan_counts(sw, "adaptive")
    assert [(r.cells, r.seeds, r.steps, r.dev_items) for r in a.rungs] == [(4, 1, 4, 100), (2, 2, 20, 100),
                                                                          (2, 3, 40, 100)]
    assert a.trials == (4 - 2) * 1 + 2 * 3 + 1
    assert a.trial_runs == 4 * 1 + 2 * 2 + 2 * 3 + 1
    assert a.meta_steps == (4 - 2) * 1 * 4 + 2 * 3 * 40
    assert a.dev_items == (4 * 1 + 2 * 2 + 2 * 3) * dev_report + 1 * dev_report
    assert a.test_items == 2 * 3 * test + 1 * test


def test_adaptive_with_a_bound_is_at_most_and_rungs_follow_the_config(data_dir, capsys):
    sw = sweep("demo", f"data.dir={data_dir}", "sweep.adaptive.bound=2.0", "sweep.adaptive.steps=[0.5,1.0]",
               "sweep.adaptive.dev_items=[50,null]", "sweep.adaptive.seeds=[2,null]", "sweep.adaptive.min_keep=1")
    a = plan_counts(sw, "adaptive")
    assert a.upper_bound
    # rung 0: 4 cells x 2 seeds to 20 steps (0.5 x 40), 50 dev items; one cut, so the ratio is max(0.4, 1/4) and
    # max(1, ceil(4 x 0.4)) = 2 cells go on; rung 1: 2 cells x 3 seeds.
    assert [(r.cells, r.seeds, r.steps, r.dev_items) for r in a.rungs] == [(4, 2, 20, 50), (2, 3, 40, 100)]
    assert a.trials == (4 - 2) * 2 + 2 * 3 + 1
    assert a.dev_items == 4 * 2 * 2 * 50 + 2 * 3 * 2 * 100 + 2 * 100
    assert main(["-q", "plan", "--preset", "demo", "--set", f"data.dir={data_dir}", "--set",
                 "sweep.adaptive.bound=2.0"]) == 0
    out = capsys.readouterr().out
    assert "at most 9" in out and "adaptive rungs (at most)" in out


def test_step_seconds_arithmetic(data_dir):
    sw = sweep("smoke", f"data.dir={data_dir}")
    plan = make_plan(sw, "smoke", step_seconds=0.6, item_seconds=0.01, slots=2)
    for mode in ("grid", "adaptive"):
        c = plan.counts[mode]
        assert plan.compute(mode) == pytest.approx(c.meta_steps * 0.6 + (c.dev_items + c.test_items) * 0.01)
        row = plan.to_dict()["modes"][mode]
        assert row["wall_seconds"] == pytest.approx(plan.compute(mode) / 2)
    # Without --item-seconds only the meta steps count.
    steps_only = make_plan(sw, "smoke", step_seconds=0.6)
    assert steps_only.compute("grid") == pytest.approx(8 * 0.6)


def test_cli_prints_both_columns_and_json(data_dir, capsys):
    assert main(["-q", "plan", "--preset", "demo", "--set", f"data.dir={data_dir}", "--step-seconds", "0.6"]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if "grid" in line and "adaptive" in line)
    assert "grid (preset)" in header
    steps = next(line for line in out.splitlines() if line.startswith("meta steps"))
    assert steps.split()[-2:] == ["480", "248"]
    assert "trial-hours" in out and "wall time on 1 slot" in out
    assert main(["-q", "plan", "--preset", "demo", "--set", f"data.dir={data_dir}", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["modes"]["grid"]["meta_steps"] == 480 and data["modes"]["adaptive"]["trials"] == 9
    assert data["modes"]["grid"]["compute_seconds"] is None  # no timing given
    assert data["storage"]["trainable"] < data["storage"]["params"]  # frozen embeddings and layers 0-9


def test_paper_mlqa_test_sizes_are_estimated_and_said_so(capsys):
    # eval.qa_test official: the MLQA test files are not in the shared data.
    assert main(["-q", "plan", "--preset", "paper-mlqa-mbert", "--step-seconds", "0.6", "--slots", "4"]) == 0
    out = capsys.readouterr().out
    assert "estimated sizes" in out and "mlqa test en" in out and "GPU-hours" in out


@pytest.mark.parametrize("args, words", [
    (["--set", "sweep.nope=1"], "sweep.nope"),
    (["--set", "sweep.adaptive.steps=[0.5,1.0]"], "sweep.adaptive.dev_items: expected 2 values"),
    (["--step-seconds", "-1"], "--step-seconds"),
    (["--item-seconds", "0.1"], "--item-seconds needs --step-seconds"),
])
def test_bad_input_is_one_line(args, words, capsys):
    assert main(["-q", "plan", "--preset", "smoke", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err and err.startswith("xlamaml: error:")


def test_measure_times_real_steps_of_the_tiny_model(data_dir, one_thread):
    plan = make_plan(sweep("smoke", f"data.dir={data_dir}"), "smoke", measure_here=True)
    m = plan.measured
    assert m.step_seconds > 0 and m.item_seconds > 0 and m.precision == "fp32"
    assert m.hardware.startswith(("CPU", "GPU"))
    assert plan.compute("grid") == pytest.approx(8 * m.step_seconds + (480 + 432) * m.item_seconds)
    assert "measured here" in "\n".join(plan.lines())


PREDICTIVE = ["sweep.mode=predictive", 'sweep.assignments.items=[baseline,"x-maml:hi","xla-maml:en>hi","x-maml:de",'
              '"xla-maml:en>de","xla-maml:en>ar","xla-maml:hi>de"]', "sweep.seeds=[0,1,2]"]


def test_a_predictive_plan_prints_its_expected_compute_and_spread(data_dir, capsys):
    assert main(["plan", "--preset", "smoke", "--set", f"data.dir={data_dir}", *[a for s in PREDICTIVE
                                                                               for a in ("--set", s)],
                 "--predictive-reps", "3", "--step-seconds", "1", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    got = plan["predictive"]
    assert got["reps"] == 3 and got["prior"] == "synthetic" and len(got["shares"]) == 3
    assert all(0 < s <= 1.05 for s in got["shares"])  # at most the grid's, and the picks' test
    # the compute is the grid's (1 s a meta step, as given) times the mean share; every sweep ran its first design
    grid = plan["modes"]["grid"]["compute_seconds"]
    assert got["compute_seconds"] == pytest.approx(grid * sum(got["shares"]) / 3)
    assert len(got["runs"]) == 3 and all(r >= 2 for r in got["runs"])


def test_a_prior_map_is_read_and_a_missing_cell_named(data_dir, tmp_path):
    sw = sweep("smoke", f"data.dir={data_dir}", *PREDICTIVE, "sweep.predictive.max_share=0.5")
    rows = [(t, c, 1.0 + i) for i, c in enumerate(sw.cells) for t in sw.dev_langs if not c.endswith(t)]
    path = tmp_path / "prior.csv"
    path.write_text("target,cell,gain\n" + "".join(f"{t},{c},{g}\n" for t, c, g in rows))
    plan = make_plan(sw, "smoke", predictive_reps=2, prior_map=str(path))
    uncapped = make_plan(sweep("smoke", f"data.dir={data_dir}", *PREDICTIVE), "smoke", predictive_reps=2,
                         prior_map=str(path))
    assert plan.predictive.prior == str(path)
    # max_share caps the runs (the picks' test comes on top: a tenth of the compute with these tiny trials)
    assert all(a <= b + 1e-9 for a, b in zip(plan.predictive.shares, uncapped.predictive.shares))
    assert max(plan.predictive.shares) < 0.75
    path.write_text("target,cell,gain\n" + "".join(f"{t},{c},{g}\n" for t, c, g in rows if c != sw.cells[0]))
    with pytest.raises(Exception, match=f"{path}: no gains of cell 'x-maml:hi'"):
        make_plan(sw, "smoke", predictive_reps=2, prior_map=str(path))
