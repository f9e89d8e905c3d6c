"""The Ray Tune run of a sweep's trials: the param space (grid cells, Optuna's space, an adaptive rung's trials), the
Tuner with its callbacks, and `fit`, which runs it and turns a full disk or a Ray state that cannot be restored into
the project's own outcome (one line, or a rebuilt run)."""

from __future__ import annotations

from typing import Any

import pyarrow.fs as pafs
from ray import tune
from ray.tune.schedulers import ASHAScheduler

from xlamaml.experiment import storage
from xlamaml.search.cells import reports_per_trial
from xlamaml.search.console import TrialLines, verbose
from xlamaml.search.tracker_callbacks import tracking_callbacks
from xlamaml.search.faults.full_storage import (FullStorageStop, full_error, full_line, is_full_exception, stopped,
                                                storage_is_full, watching)
from xlamaml.search.faults.continued import SeedReports
from xlamaml.search.faults.ray_state import check_sealed
from xlamaml.search.faults.rebuild import RestoreFailed, check_rebuildable, rebuilt_cells, refusing_restart
from xlamaml.search.space import hyper_space
from xlamaml.search.spec import Sweep
from xlamaml.search.trainable import XlaMamlTrainable
from xlamaml.trainables.assignment import flat_trial, folder_prefix
from xlamaml.trainables.config_parsing import merge, nested


def param_space(sw: Sweep, cells: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Return the Tune param space: the run config with the assignment and seed (and hyper-parameters) to search
    (`cells`: only these grid cells, as a rebuilt resume runs them)."""
    s = sw.sweep
    space = dict(sw.run)
    space["threads"] = max(1, int(s.cpus_per_trial))  # torch threads match the CPUs a trial holds
    space["keep_final_checkpoint"] = s.keep_final_checkpoint
    names = sw.assignments
    if s.mode in ("adaptive", "predictive"):  # one rung or round of trials: cell x seed, budget, folder (the drivers)
        space["trial"] = tune.grid_search(list(cells or []))
        return space
    if s.mode == "grid":
        if cells is not None:  # a rebuilt run: each cell carries its extra axes' values
            space["trial"] = tune.grid_search(cells)
            return space
        # One grid axis of (assignment, seed) cells, so a baseline that no seed changes runs once.
        space["trial"] = tune.grid_search(sw.grid_cells)
        return merge(space, nested({k: tune.grid_search(v) for k, v in s.grid.items()}))
    space["assignment"] = tune.choice(names) if len(names) > 1 else names[0]
    space["seed"] = tune.choice(s.seeds) if len(s.seeds) > 1 else s.seeds[0]
    return merge(space, hyper_space(s.space))


def trial_dirname(trial) -> str:
    """Return a short, filesystem-safe trial folder name: assignment, seed and trial id."""
    config = flat_trial(trial.config)
    if config.get("folder"):  # a trial of a rebuilt run continues in its own folder
        return str(config["folder"])
    return f"{folder_prefix(config.get('assignment', 'run'), config.get('seed'))}{trial.trial_id}"


class DropStoppedWeights(tune.Callback):
    """Deletes the checkpoints a finished trial no longer needs: all of a trial the scheduler stopped early (ASHA: it
    is never resumed, and its weights would only fill the storage), and all but the last of a trial that spent its
    budget (the last holds its final report, see the Trainable; the one kept before it holds weights) or paused at an
    adaptive rung's end (the last holds the weights the next rung continues from: 225 waiting pairs trials keep one
    checkpoint each, not two). With
    `keep_final` (sweep.keep_final_checkpoint) a trial that spent its budget keeps its last (its final weights) and a
    stopped one keeps all."""

    def __init__(self, keep_final: bool = False) -> None:
        self.keep_final = keep_final

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """Delete the finished `trial`'s checkpoints, but its newest when it reported test metrics."""
        fs, path = trial.storage.storage_filesystem, trial.storage.trial_fs_path
        found = sorted(entry.path for entry in fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
                       if entry.type == pafs.FileType.Directory and entry.base_name.startswith("checkpoint_"))
        paused = bool((trial.last_result or {}).get("rung/paused"))
        finished = any(key.startswith("test/") for key in (trial.last_result or {}))
        if self.keep_final and not (finished or paused):
            return
        if finished or paused:  # paused: an adaptive rung's end, from which the next rung may continue it
            found = found[:-1]
            # A trial of a rebuilt run kept the checkpoints it continued from (search/faults/rebuild.py).
            if fs.get_file_info(f"{path}/previous").type == pafs.FileType.Directory:
                found.append(f"{path}/previous")
        for folder in found:
            fs.delete_dir(folder)


def make_tuner(sw: Sweep, storage_root: str, name: str, resume: bool = False,
               cells: list[dict[str, Any]] | None = None):
    """Return the Tuner of a new sweep `storage_root/name`, or the restored one when `resume` (`cells`: a new Tuner
    over only these grid cells, the run rebuilt after its Ray state was damaged)."""
    s = sw.sweep
    trainable = tune.with_resources(XlaMamlTrainable, {"cpu": s.cpus_per_trial, "gpu": s.gpus_per_trial})
    if resume:  # an Optuna sweep (grid and adaptive sweeps never restore Ray's state)
        check_sealed(storage.join(storage_root, name))  # loading it runs code: only the state this driver sealed
        # The param space again from the sweep's record: Ray's own copy (tuner.pkl) is not trusted to be whole.
        return tune.Tuner.restore(storage.join(storage_root, name), trainable=trainable, resume_errored=True,
                                  param_space=param_space(sw))
    search_alg = scheduler = None
    if s.mode == "optuna":
        # Late import: Ray's Optuna integration loads optuna (and its SQL stack), which grid sweeps never use.
        from ray.tune.search.optuna import OptunaSearch

        search_alg = OptunaSearch(metric=s.metric, mode=s.metric_mode)
        scheduler = ASHAScheduler(time_attr="training_iteration", metric=s.metric, mode=s.metric_mode,
                                  max_t=reports_per_trial(sw.cfg),
                                  grace_period=s.grace_period, reduction_factor=s.reduction_factor)
    return tune.Tuner(
        trainable,
        param_space=param_space(sw, cells),
        tune_config=tune.TuneConfig(search_alg=search_alg, scheduler=scheduler,
                                    num_samples=s.num_samples if s.mode == "optuna" else 1,
                                    max_concurrent_trials=s.max_concurrent or None,
                                    trial_dirname_creator=trial_dirname,
                                    # A new trial reuses a finished one's process (XlaMamlTrainable.reset_config):
                                    # no process start and no imports per trial.
                                    reuse_actors=True),
        run_config=tune.RunConfig(
            name=name, storage_path=storage_root,
            # checkpoint_at_end: a finished trial's last checkpoint (its final report, see the Trainable)
            # replaces the one holding its weights.
            checkpoint_config=tune.CheckpointConfig(num_to_keep=s.keep_checkpoints,
                                                    checkpoint_frequency=s.checkpoint_every,
                                                    checkpoint_at_end=True),
            failure_config=tune.FailureConfig(max_failures=s.max_failures),
            callbacks=[FullStorageStop(storage.join(storage_root, name)), SeedReports(),
                       DropStoppedWeights(s.keep_final_checkpoint), *([] if verbose() else [TrialLines()]),
                       *tracking_callbacks(s.tracking, s.tracking_project or name)],
            # Predictions are written in the trial's working directory; this copies them into its folder.
            sync_config=tune.SyncConfig(sync_artifacts=True),
            verbose=1 if verbose() else 0,  # Ray's boxed tables only with `xlamaml -v`; else TrialLines
        ),
    )




def fit(sw: Sweep, root: str, name: str, resume: bool, cells: list[dict[str, Any]] | None) -> Any:
    """Return the results of the Tune phase of the sweep `root/name` (restored when `resume`; only `cells` when the
    run is rebuilt). A Ray state that cannot be restored rebuilds the run from the record, never starts it over; a
    disk that fills ends it with StorageFullError, one line."""
    exp = storage.join(root, name)
    with watching(exp):
        try:
            try:
                with refusing_restart():
                    results = make_tuner(sw, root, name, resume=resume and cells is None, cells=cells).fit()
            except RestoreFailed as e:
                check_rebuildable(sw.sweep.mode)
                cells = rebuilt_cells(exp, sw.grid_cells, str(e), sw.combos)
                results = make_tuner(sw, root, name, cells=cells).fit() if cells else []
        except Exception as e:  # Ray's own failure to write its files (or read them back cut) on a full disk
            detail = stopped(exp)
            if detail is None and not (is_full_exception(e) or storage_is_full(exp)):
                raise
            raise full_error(exp, name, detail or full_line(str(e))) from None
    if stopped(exp) is not None:  # stopped gracefully: the trials' state was saved, resumable
        raise full_error(exp, name, stopped(exp) or "")
    return results
