"""Resume's repairs of what Ray left cut, the rebuild of a run whose Ray state is damaged, and the free-space checks;
in-process, on synthetic experiment folders (no Ray run; well under a second each)."""

import errno
import json
import logging
import pickle
from pathlib import Path

import pytest
import torch

from xlamaml.search.faults.full_storage import check_free_space, full_line, is_full_error, is_full_exception, needed_bytes
from xlamaml.search.faults.continued import PREVIOUS
from xlamaml.search.faults.rebuild import RebuildError, RestoreFailed, check_rebuildable, rebuilt_cells, refusing_restart
from xlamaml.search.faults.repair import repair_experiment
from xlamaml.experiment import storage
from xlamaml.experiment.checkpoints import CHECKPOINT_FILE, write_state
from xlamaml.experiment.storage import StorageFullError

CELLS = [{"assignment": "baseline", "seed": 0}, {"assignment": "x-maml:hi", "seed": 0},
         {"assignment": "xla-maml:en>hi", "seed": 0}]


def trial(exp: Path, name: str, cell: dict, iterations: int, done: bool, checkpoints: int = 0) -> Path:
    """Write a trial folder as Ray leaves it: params.json, result.json (a report per iteration), checkpoints."""
    folder = exp / name
    folder.mkdir(parents=True)
    config = {"trial": cell, "task": "xnli"}
    (folder / "params.json").write_text(json.dumps(config))
    lines = []
    for i in range(1, iterations + 1):
        report = {"training_iteration": i, "dev/hi/acc": 0.3, "config": config, "trial_id": name}
        if done and i == iterations:
            report["test/hi/acc"] = 0.4
        lines.append(json.dumps(report) + "\n")
    (folder / "result.json").write_text("".join(lines))
    for c in range(checkpoints):
        (folder / f"checkpoint_{c:06d}").mkdir()
        write_state({"rng": torch.get_rng_state(), "iteration": c + 1}, folder / f"checkpoint_{c:06d}" / CHECKPOINT_FILE)
    return folder


def experiment(tmp_path: Path) -> Path:
    exp = tmp_path / "exp"
    trial(exp, "baseline_s0_a", CELLS[0], 1, done=True, checkpoints=1)
    trial(exp, "x-maml_hi_s0_b", CELLS[1], 2, done=False, checkpoints=2)
    (exp / "tuner.pkl").write_bytes(pickle.dumps({"a": 1}))
    (exp / "experiment_state-2026-11-30_10-00-00.json").write_text(json.dumps({"trial_data": []}))
    (exp / "basic-variant-state-2026-11-30_10-00-00.json").write_bytes(pickle.dumps({"b": 2}))
    return exp


def test_cut_result_and_params_files_are_repaired_one_line_each(tmp_path, caplog):
    exp = experiment(tmp_path)
    t = exp / "x-maml_hi_s0_b"
    lines = (t / "result.json").read_text().splitlines()
    (t / "result.json").write_text(lines[0][:30] + lines[0] + "\n" + lines[1][:50])  # glued, then cut last
    (t / "params.json").write_text("")
    with caplog.at_level(logging.WARNING, logger="xlamaml"):
        repaired = repair_experiment(str(exp))
    assert repaired.damaged_state is None and len(repaired.lines) == 2
    assert [json.loads(line)["training_iteration"] for line in (t / "result.json").read_text().splitlines()] == [1]
    assert json.loads((t / "params.json").read_text())["trial"] == CELLS[1]
    assert len(caplog.records) == 2 and all("\n" not in r.getMessage() for r in caplog.records)
    assert repair_experiment(str(exp)).lines == []  # whole files are left alone


def test_a_cut_state_file_is_set_aside_and_a_cut_tuner_file_means_a_rebuild(tmp_path):
    exp = experiment(tmp_path)
    (exp / "experiment_state-2026-11-30_11-00-00.json").write_text('{"trial_data": [')
    repaired = repair_experiment(str(exp))
    assert repaired.damaged_state is None
    assert (exp / ".damaged-experiment_state-2026-11-30_11-00-00.json").is_file()
    assert not (exp / "experiment_state-2026-11-30_11-00-00.json").exists()
    (exp / "experiment_state-2026-11-30_10-00-00.json").write_text("")
    assert "no whole experiment_state" in repair_experiment(str(exp)).damaged_state
    (exp / "tuner.pkl").write_bytes(pickle.dumps({"a": list(range(100))})[:20])
    assert "tuner.pkl: cut or missing" in repair_experiment(str(exp)).damaged_state


def test_a_rebuild_keeps_finished_trials_and_continues_the_others_in_their_folders(tmp_path, caplog):
    exp = experiment(tmp_path)
    trial(exp, "run_sNone_c", {}, 1, done=False)  # what Ray made of a lost param space: no cell of the sweep
    # A trial the full disk caught as it started: params.json empty, no report; its folder's name says its cell.
    (trial(exp, "xla-maml_en-hi_s0_d", CELLS[2], 0, done=False) / "params.json").write_text("")
    with caplog.at_level(logging.WARNING, logger="xlamaml"):
        todo = rebuilt_cells(str(exp), CELLS, "tuner.pkl: cut")
    assert todo == [{**CELLS[1], "folder": "x-maml_hi_s0_b", "resume_from": str(exp / "x-maml_hi_s0_b" / PREVIOUS)},
                    {**CELLS[2], "folder": "xla-maml_en-hi_s0_d",
                     "resume_from": str(exp / "xla-maml_en-hi_s0_d" / PREVIOUS)}]
    assert sorted(p.name for p in (exp / "x-maml_hi_s0_b" / PREVIOUS).iterdir()) == [
        "checkpoint_000000", "checkpoint_000001", "result.json"]
    assert not list((exp / "x-maml_hi_s0_b").glob("checkpoint_*"))
    assert list((exp / "baseline_s0_a").glob("checkpoint_*"))  # a finished trial is left as it is
    assert any("run_sNone_c" in r.getMessage() and "left out" in r.getMessage() for r in caplog.records)
    with pytest.raises(RebuildError, match="optuna sweep cannot be rebuilt"):
        check_rebuildable("optuna")


def test_free_space_is_checked_before_launch_in_one_line(tmp_path):
    need = needed_bytes(3, 2, 10**15, keep=2)
    assert needed_bytes(3, 1, 10, keep=2) == 30 + 3 * (1 << 20) and needed_bytes(3, 1, 10, 2, True) == 60 + 3 * (1 << 20)
    with pytest.raises(StorageFullError) as raised:
        check_free_space(str(tmp_path), need, "the 3 trial(s) of this sweep")
    message = str(raised.value)
    assert str(tmp_path) in message and "MB free" in message and "needs about" in message and "--force" in message
    assert "\n" not in message
    check_free_space(str(tmp_path), 1, "one byte")
    check_free_space("s3://bucket/prefix", need, "an object store")  # it does not tell: no check


def test_enospc_is_one_storage_line_naming_the_path():
    def full():
        raise OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(StorageFullError, match=r"/x/y: cannot write, no space left on the device .*--resume"):
        storage._guard("/x/y", "write", full)
    text = "Traceback ...\nOSError: [Errno 28] No space left on device: '/s/exp/t/checkpoint_000001/trial.pt'\n"
    assert is_full_error(text) and full_line(text) == "[Errno 28] No space left on device: " \
                                                      "'/s/exp/t/checkpoint_000001/trial.pt'"
    try:
        try:
            full()
        except OSError as e:
            raise pickle.UnpicklingError("pickle data was truncated") from e
    except pickle.UnpicklingError as e:
        assert is_full_exception(e)


def test_rays_failure_to_restore_raises_instead_of_starting_over():
    ray_log = logging.getLogger("ray.tune.execution.tune_controller")
    with refusing_restart(), pytest.raises(RestoreFailed, match="JSONDecodeError"):
        try:
            json.loads('{"trial_data": [')
        except ValueError:
            ray_log.exception("Failed to restore the run state.")
    ray_log.info("Restarting experiment.")  # outside the block: Ray's logging as it was
