"""Sweeps through Ray on the shared data with the tiny model: grid, errors, resume after SIGKILL, Optuna + ASHA."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from xlamaml.search.space import AssignmentSpec, assignments, hyper_space
from xlamaml.experiment.records import SWEEP_FILE
from xlamaml.search.spec import load_sweep
from xlamaml.search.sweep import ErroredTrialsError, run_sweep
from xlamaml.search.tuner import param_space
from xlamaml.cli import preset_path
from xlamaml.trainables.config import ConfigError


def trials(exp: Path) -> dict[str, list[dict]]:
    """Return each trial folder's result lines (a trial whose setup failed has only error.txt)."""
    out = {}
    for d in sorted(exp.iterdir()):
        if (d / "params.json").is_file() or (d / "error.txt").is_file():
            lines = (d / "result.json").read_text().splitlines() if (d / "result.json").is_file() else []
            out[d.name] = [json.loads(line) for line in lines]
    return out


def test_assignment_kinds():
    assert assignments(AssignmentSpec("en-aux", ["hi", "sw"])) == [
        "baseline", "x-maml:hi", "xla-maml:en>hi", "x-maml:sw", "xla-maml:en>sw"]
    pairs = assignments(AssignmentSpec("pairs", ["ar", "bg", "de"], ["x-maml", "xla-maml"]))
    assert len(pairs) == 9 and "x-maml:bg" in pairs and "xla-maml:ar>de" in pairs
    from xlamaml.trainables.languages import XNLI_LANGS
    assert len(assignments(AssignmentSpec("pairs", list(XNLI_LANGS), ["x-maml", "xla-maml"]))) == 225
    assert assignments(AssignmentSpec("two-aux", ["bg", "de"], ["xla-maml", "x-maml"])) == [
        "xla-maml:bg>de", "xla-maml:de>bg", "x-maml:bg+de"]
    with pytest.raises(ValueError, match="kind"):
        assignments(AssignmentSpec("every"))
    with pytest.raises(ValueError, match="sweep.space.meta.inner_lr"):
        hyper_space({"meta.inner_lr": {"lognormal": [1, 2]}})


def test_sweep_preset_errors_name_the_key():
    with pytest.raises(ConfigError, match="sweep.mode"):
        load_sweep(preset_path("smoke"), ["sweep.mode=bayes"])
    with pytest.raises(ConfigError, match="unknown config key sweep.seed"):
        load_sweep(preset_path("smoke"), ["sweep.seed=1"])
    with pytest.raises(ConfigError, match="assignment 'xla-maml:en>xx'"):
        load_sweep(preset_path("smoke"), ["sweep.assignments.items=[xla-maml:en>xx]"])


def test_grid_space_covers_assignments_seeds_and_extra_axes():
    sw = load_sweep(preset_path("smoke"), ["sweep.seeds=[1,2]", "sweep.grid={meta.sampling: [random, cover]}"])
    space = param_space(sw)
    cells = space["trial"]["grid_search"]
    assert cells == [{"assignment": a, "seed": s} for a in ["baseline", "x-maml:hi", "xla-maml:en>hi"] for s in (1, 2)]
    assert space["meta"]["sampling"]["grid_search"] == ["random", "cover"]
    assert os.path.isabs(space["data"]["dir"])


def test_a_baseline_no_seed_changes_runs_once():
    cells = param_space(load_sweep(preset_path("smoke"), ["sweep.seeds=[1,2,3]"]))["trial"]["grid_search"]
    assert [c for c in cells if c["assignment"] == "baseline"] == [{"assignment": "baseline", "seed": 1}]
    assert len(cells) == 1 + 2 * 3
    # A few-shot stage shuffles by seed, and MLQA's held-out split depends on it: then every seed runs.
    few = param_space(load_sweep(preset_path("smoke"), ["sweep.seeds=[1,2]", "few_shot.enabled=true"]))
    assert len([c for c in few["trial"]["grid_search"] if c["assignment"] == "baseline"]) == 2
    qa = param_space(load_sweep(preset_path("smoke-qa"), ["sweep.seeds=[1,2]"]))
    assert len([c for c in qa["trial"]["grid_search"] if c["assignment"] == "baseline"]) == 2


def test_smoke_sweep_runs_every_trial_and_isolates_a_failing_one(tmp_path, cache, ray_local):
    from xlamaml.analysis.analyze import analyze

    # meta.k=0 is a bad value that only the trial sees: it must error alone.
    sw = load_sweep(preset_path("smoke"), ["sweep.grid={meta.k: [4, 0]}", "sweep.max_failures=0"])
    with pytest.raises(ErroredTrialsError, match=r"3 of 6 trials errored .*--resume --name grid") as raised:
        run_sweep(sw, tmp_path / "runs", "grid")
    assert len(str(raised.value).splitlines()) == 1
    exp = raised.value.exp
    got = trials(exp)
    assert len(got) == 6 and (exp / SWEEP_FILE).is_file()
    ok = {name: lines for name, lines in got.items() if lines and lines[-1].get("done")}
    failed = [name for name in got if name not in ok]
    assert len(ok) == 3 and len(failed) == 3
    for name in failed:
        assert "meta.k" in (exp / name / "error.txt").read_text()
    for name, lines in ok.items():
        final = lines[-1]
        assert {"test/en/acc", "test/de/acc", "test/hi/acc", "test/avg/acc", "test/avg_excl_aux/acc"} <= final.keys()
        assert ("meta/steps" in final) == (not name.startswith("baseline"))
        assert (exp / name / "predictions" / "test-hi.tsv").is_file()
        # Per-item outcomes of test and of the final dev report travel with the trial.
        assert (exp / name / "predictions" / "test-hi.items.tsv").is_file()
        assert list((exp / name / "predictions").glob("dev-*.items.tsv"))
    assert len(list((Path(os.environ["XLAMAML_CACHE"]) / "base").iterdir())) == 1  # English stage built once
    for name in ok:  # a finished trial keeps its final report, not its weights (sweep.keep_final_checkpoint: false)
        for ckpt in (exp / name).glob("checkpoint_*/trial.pt"):
            state = torch.load(ckpt, weights_only=True)
            assert "final_metrics" in state and "weights" not in state
    # The analysis reads the experiment directory alone, errored trials included.
    written = analyze(exp, tmp_path / "analysis")
    assert {"results.csv", "table.md", "heatmap.png", "heatmap.svg", "best_pairs.csv"} <= set(written)


def test_keep_final_checkpoint_keeps_the_weights(tmp_path, cache, ray_local):
    sw = load_sweep(preset_path("smoke"), ["sweep.assignments.items=[xla-maml:en>hi]",
                                           "sweep.keep_final_checkpoint=true"])
    exp = run_sweep(sw, tmp_path / "runs", "kept")
    (ckpt,) = list(exp.glob("*/checkpoint_*/trial.pt"))
    assert "weights" in torch.load(ckpt, weights_only=True)


def test_a_second_sweep_in_the_storage_reuses_the_english_stage(tmp_path, cache, ray_local, monkeypatch):
    items = "sweep.assignments.items=[baseline]"
    run_sweep(load_sweep(preset_path("smoke"), [items]), tmp_path / "runs", "first")
    monkeypatch.setenv("XLAMAML_CACHE", str(tmp_path / "other-node-cache"))  # a driver that never trained it
    exp = run_sweep(load_sweep(preset_path("smoke"), [items, "seed=0"]), tmp_path / "runs", "second")
    assert not (tmp_path / "other-node-cache" / "base").exists()
    (base,) = list((exp / "assets").glob("base-*"))
    assert (tmp_path / "runs" / "first" / "assets" / base.name / "manifest.json").read_text() == (
        base / "manifest.json").read_text()


def test_a_sweep_computes_the_feature_cache_once_and_trials_equal_uncached_ones(tmp_path, cache, ray_local):
    frozen = ["model.tiny.num_layers=4", "meta.freeze_embeddings=true", "meta.freeze_layers=2",
              "meta.feature_dtype=float32"]
    finals = {}
    for on in ("true", "false"):
        sw = load_sweep(preset_path("smoke"), [*frozen, f"meta.feature_cache={on}"])
        exp = run_sweep(sw, tmp_path / "runs", f"cache-{on}")
        finals[on] = {name.split("_")[0] + name.split("_")[1]: lines[-1] for name, lines in trials(exp).items()}
        features = list((exp / "assets").glob("features-*"))
        assert len(features) == (1 if on == "true" else 0)
    (folder,) = list((tmp_path / "runs" / "cache-true" / "assets").glob("features-*"))
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["meta"]["layers"] == 2 and all(n.endswith(".features.npy") for n in manifest["files"])
    assert len(manifest["files"]) >= 5  # test en, de, hi; dev en, hi pools; dev reports
    assert not (cache / "features").exists()  # the trials read the sweep's asset, they built none of their own
    assert finals["true"].keys() == finals["false"].keys() and len(finals["true"]) == 3
    # A second sweep of the same storage, base and data copies the feature asset instead of computing it.
    again = run_sweep(load_sweep(preset_path("smoke"), [*frozen, "sweep.assignments.items=[xla-maml:en>hi]"]),
                      tmp_path / "runs", "cache-again")
    (copied,) = list((again / "assets").glob("features-*"))
    assert copied.name == folder.name and (copied / "manifest.json").read_text() == (folder / "manifest.json").read_text()
    for name, final in finals["false"].items():
        for key, value in final.items():
            if key.startswith("test/"):
                assert finals["true"][name][key] == value, (name, key)


def test_optuna_asha_smoke(tmp_path, cache, ray_local):
    sw = load_sweep(preset_path("smoke"), [
        "sweep.mode=optuna", "sweep.num_samples=4", "sweep.max_concurrent=2",
        "sweep.assignments.items=[xla-maml:en>hi, xla-maml:en>de]",
        "sweep.space={meta.inner_lr: {loguniform: [1.0e-5, 1.0e-2]}, meta.first_order: {choice: [true, false]}}",
        "meta.steps_per_query_lang=8"])
    exp = run_sweep(sw, tmp_path / "runs", "optuna")
    got = trials(exp)
    assert len(got) == 4
    lrs = {json.loads((exp / name / "params.json").read_text())["meta"]["inner_lr"] for name in got}
    assert len(lrs) == 4 and all(1e-5 <= lr <= 1e-2 for lr in lrs)
    assert all(lines and "dev/avg_excl_aux/acc" in lines[-1] for lines in got.values())


def test_sigkill_driver_then_resume_finishes_every_trial_once(tmp_path, cache):
    storage = tmp_path / "runs"
    cmd = [sys.executable, "-m", "xlamaml.cli", "-q", "sweep", "--preset", "smoke", "--storage", str(storage),
           "--name", "killed", "--set", "meta.steps_per_query_lang=60", "--set", "sweep.max_concurrent=1"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    exp = storage / "killed"
    try:
        # Wait until the baseline finished and a meta trial has a checkpoint, then kill the driver.
        deadline = time.time() + 240
        while time.time() < deadline:
            got = trials(exp) if exp.is_dir() else {}
            done = [n for n, lines in got.items() if lines and lines[-1].get("done")]
            midway = [n for n in got if n not in done and list((exp / n).glob("checkpoint_*"))]
            if done and midway:
                break
            time.sleep(0.5)
        else:
            pytest.fail("the sweep never reached a finished trial and a checkpointed one")
        finished_before = {n: len(trials(exp)[n]) for n in done}
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the local Ray it started
        proc.wait()
    resumed = subprocess.run([sys.executable, "-m", "xlamaml.cli", "-q", "sweep", "--resume", "--name", "killed",
                              "--storage", str(storage)], env=env, capture_output=True, text=True, timeout=400)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    got = trials(exp)
    assert len(got) == 3 and all(lines[-1].get("done") for lines in got.values())
    for name, count in finished_before.items():
        assert len(got[name]) == count  # a finished trial is not run again
    meta_trials = [lines for name, lines in got.items() if not name.startswith("baseline")]
    assert all(lines[-1]["meta/steps"] == 60 for lines in meta_trials)


def test_qa_smoke_sweep_and_its_analysis(tmp_path, cache, ray_local):
    from xlamaml.analysis.analyze import analyze

    exp = run_sweep(load_sweep(preset_path("smoke-qa")), tmp_path / "runs", "qa")
    got = trials(exp)
    assert len(got) == 2 and all(lines[-1].get("done") and "test/hi/f1" in lines[-1] for lines in got.values())
    written = analyze(exp, tmp_path / "analysis")
    assert {"results.csv", "table.md", "heatmap.png", "heatmap.svg", "best_pairs.csv"} <= set(written)
    assert "f1" in (tmp_path / "analysis" / "table.md").read_text()
