"""Adaptive sweeps through Ray on the shared data with the tiny model: rungs, decisions on dev only, the compute the
planner promised, and a SIGKILL mid-sweep that loses no decision and repeats no rung."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from xlamaml.experiment.records import ADAPTIVE_FILE as RECORD, AdaptiveRecord, Rung, read_adaptive as read_record, trial_folder
from xlamaml.search.adaptive.driver import rung_scores
from xlamaml.cli import preset_path
from xlamaml.search.plan.counts import plan_counts
from xlamaml.search.spec import load_sweep
from xlamaml.search.sweep import run_sweep
from xlamaml.trainables.tasks.outcomes import write_outcomes

CELLS = ["x-maml:hi", "xla-maml:en>hi", "x-maml:de", "xla-maml:en>de"]
SETTINGS = ['sweep.mode=adaptive', f'sweep.assignments.items=[baseline,{",".join(json.dumps(c) for c in CELLS)}]',
            "sweep.seeds=[0,1]", "sweep.adaptive.steps=[0.5,1.0]", "sweep.adaptive.dev_items=[16,null]", "sweep.adaptive.seeds=[1,null]",
            "sweep.adaptive.keep=0.5", "sweep.adaptive.min_keep=1"]


def reports(exp: Path, folder: str) -> list[dict]:
    """Return a trial folder's reports (those set aside in `previous/` while it waits to continue in a rung)."""
    path = exp / folder / "result.json"
    if not path.is_file():
        path = exp / folder / "previous" / "result.json"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def check_finished(exp: Path, record: AdaptiveRecord, total_steps: int) -> None:
    """Assert what every adaptive sweep must hold once done: survivors finished every seed with test scores,
    stopped cells were never tested, and each trial's iterations are 1..N once each."""
    survivors = record.cells_in(len(record.rungs) - 1)
    for cell in record.cells:
        for seed in record.rungs[-1].seeds:
            got = reports(exp, trial_folder(cell, seed))
            if cell in survivors:
                assert got[-1]["done"] and got[-1]["meta/steps"] == total_steps and "test/avg/acc" in got[-1], cell
            else:
                tested = [r for r in got if any(k.startswith("test/") for k in r)]
                assert not tested and not list((exp / trial_folder(cell, seed)).glob("predictions/test-*")), cell
            if got:
                assert [r["training_iteration"] for r in got] == list(range(1, len(got) + 1)), (cell, seed)
                # a rung ends once per trial: no rung repeated
                ends = [r["rung/index"] for r in got if r.get("done")]
                assert ends == sorted(set(ends)), (cell, seed)


def test_adaptive_smoke_sweep_stops_cells_and_spends_what_the_plan_says(tmp_path, cache, ray_local):
    sw = load_sweep(preset_path("smoke"), SETTINGS)
    exp = run_sweep(sw, tmp_path / "runs", "adaptive")
    record = read_record(str(exp))
    assert record is not None and len(record.decisions) == 1
    decision = record.decisions[0]
    assert len(decision["kept"]) == 2 and len(decision["stopped"]) == 2
    assert set(decision["kept"]) | set(decision["stopped"]) == set(CELLS)
    # a cell is not judged on a target whose dev set it trained on
    assert "x-maml:hi" in decision["excluded"]["hi"] and "hi" not in decision["ranks"]["x-maml:hi"]
    check_finished(exp, record, total_steps=4)
    assert (exp / "baseline_s0" / "predictions" / "test-hi.items.tsv").is_file()
    # what the sweep spent is what the planner counted before it ran
    plan = plan_counts(load_sweep(preset_path("smoke"), SETTINGS), "adaptive")
    spent = record.spent_total()
    assert (spent["trials"], spent["trial_runs"], spent["meta_steps"], spent["dev_items"], spent["test_items"]) == (
        plan.trials, plan.trial_runs, plan.meta_steps, plan.dev_items, plan.test_items)
    folders = [d.name for d in exp.iterdir() if (d / "params.json").is_file()]
    assert len(folders) == plan.trials
    # a stopped cell keeps no weights; a finished one only its final report
    for cell, _ in decision["stopped"].items():
        assert not list((exp / trial_folder(cell, 0)).glob("checkpoint_*"))
    # A survivor continued from its rung-0 checkpoint (optimizer, schedule, sampler, RNG): it ends exactly where a
    # grid trial of the same cell and seed, never paused, ends.
    kept = decision["kept"]
    grid_sweep = load_sweep(preset_path("smoke"), [
        f'sweep.assignments.items=[{",".join(json.dumps(c) for c in kept)}]', "sweep.seeds=[0,1]"])
    grid = run_sweep(grid_sweep, tmp_path / "runs", "grid")
    grid_folders = [d for d in grid.iterdir() if (d / "params.json").is_file()]
    assert len(grid_folders) == plan_counts(grid_sweep, "grid").trials  # the planner's grid count, too
    for folder in (d for d in grid.iterdir() if (d / "params.json").is_file()):
        final = reports(grid, folder.name)[-1]
        cell = json.loads((folder / "params.json").read_text())["trial"]
        mine = reports(exp, trial_folder(cell["assignment"], cell["seed"]))[-1]
        assert {k: v for k, v in mine.items() if k.startswith("test/")} == {
            k: v for k, v in final.items() if k.startswith("test/")}, folder.name


def write_trial(exp: Path, folder: str, split: str, lang: str, values: list[float]) -> None:
    """Write a trial's per-item outcomes of one set."""
    path = exp / folder / "predictions" / f"{split}-{lang}.items.tsv"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_outcomes(path, [f"u{i}" for i in range(len(values))], {"acc": np.asarray(values, dtype=float)})


def test_decisions_read_dev_and_never_test(tmp_path):
    """The rule's input is the rung's dev outcomes (its first items): test outcomes, even opposite ones, change
    nothing, and a cell best for one target survives while one dominated everywhere is stopped."""
    from xlamaml.search.adaptive.driver import excluded
    from xlamaml.search.adaptive.rule import decide

    cells = ["xla-maml:en>de", "xla-maml:en>hi", "xla-maml:en>sw"]
    record = AdaptiveRecord(cells, [], [Rung(0, 2, 4, (0,), 3), Rung(1, 4, 8, (0,), 2)], "acc")
    dev = {"xla-maml:en>de": {"ar": [1, 1, 1, 1, 0, 0, 0, 0], "es": [0, 0, 0, 1, 1, 1, 1, 1]},
           "xla-maml:en>hi": {"ar": [0, 0, 1, 1, 1, 1, 1, 1], "es": [1, 1, 1, 1, 1, 1, 1, 1]},
           "xla-maml:en>sw": {"ar": [0, 0, 0, 0, 1, 1, 1, 1], "es": [0, 0, 0, 0, 1, 1, 1, 1]}}
    for cell, by_lang in dev.items():
        for lang, values in by_lang.items():
            write_trial(tmp_path, trial_folder(cell, 0), "dev", lang, values)
            # test says the opposite; the rule never reads it
            write_trial(tmp_path, trial_folder(cell, 0), "test", lang, [1 - v for v in values])
    scores = rung_scores(str(tmp_path), record, 0, ["ar", "es"])
    assert scores["ar"]["xla-maml:en>de"].shape == (1, 4)  # the rung's first 4 items only
    decision = decide(scores, 2, excluded=excluded(cells, ["ar", "es"]))
    # first 4 items: de best on ar (4/4), hi best on es (4/4); sw worst on both
    assert set(decision.kept) == {"xla-maml:en>de", "xla-maml:en>hi"}
    assert list(decision.stopped) == ["xla-maml:en>sw"]


def test_sigkill_mid_adaptive_sweep_then_resume_loses_no_decision_and_repeats_no_rung(tmp_path, cache):
    """SIGKILL once rung 1 has started (its decision recorded, a survivor's trial midway), then --resume: the
    recorded decision stands, rung 0 is not run again, and every survivor finishes. About 1.5 minutes."""
    storage = tmp_path / "runs"
    settings = SETTINGS + ["meta.steps_per_query_lang=24", "meta.steps_per_report=2", "sweep.max_concurrent=1"]
    cmd = [sys.executable, "-m", "xlamaml.cli", "-q", "sweep", "--preset", "smoke", "--storage", str(storage),
           "--name", "killed", *[a for s in settings for a in ("--set", s)]]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    exp = storage / "killed"
    try:
        deadline = time.time() + 300
        while time.time() < deadline:
            record = read_record(str(exp)) if (exp / RECORD).is_file() else None
            if record is not None and record.decisions:
                midway = [c for c in record.decisions[0]["kept"]
                          if any(r.get("rung/index") == 1 and not r.get("done")
                                 for r in reports(exp, trial_folder(c, 0)))]
                if midway:
                    break
            if proc.poll() is not None:
                pytest.fail(f"the sweep ended (status {proc.returncode}) before it could be killed")
            time.sleep(0.2)
        else:
            pytest.fail("the sweep never reached rung 1")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the local Ray it started
        proc.wait()
    before = read_record(str(exp))
    rung0 = {c: [r for r in reports(exp, trial_folder(c, 0)) if r.get("rung/index") == 0] for c in CELLS}
    resumed = subprocess.run([sys.executable, "-m", "xlamaml.cli", "-q", "sweep", "--resume", "--name", "killed",
                              "--storage", str(storage)], env=env, capture_output=True, text=True, timeout=400)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    after = read_record(str(exp))
    assert after.decisions == before.decisions and after.spent[0] == before.spent[0]
    for cell, reps in rung0.items():  # rung 0's reports as they were: not run again
        assert [r for r in reports(exp, trial_folder(cell, 0)) if r.get("rung/index") == 0] == reps
    check_finished(exp, after, total_steps=24)
    assert len(after.spent) == 2
