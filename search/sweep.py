"""A Ray Tune sweep, top to bottom: load (search/spec.py) -> record -> assets (search/sweep_assets.py) -> checks ->
fit (search/tuner.py: one grid or Optuna run; search/adaptive/: rung by rung; search/predictive/: round by round) ->
timing -> errors. Resumable after an interruption.

The experiment (`<storage>/<name>`, a local folder or a URI such as `s3://bucket/prefix/<name>`) gets
`xlamaml_sweep.json` (the resolved run config and sweep, experiment/records.py) and `assets/`, so `--resume`, the
trials on any node and the analysis need nothing but the experiment's storage.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import ray
import torch

from xlamaml.experiment import assets, records, storage
from xlamaml.experiment.storage import StorageFullError
from xlamaml.experiment.lock import acquire
from xlamaml.experiment.reports import is_final, trial_reports
from xlamaml.search.adaptive.driver import run_rungs
from xlamaml.search.predictive.driver import run_rounds
from xlamaml.search.faults.full_storage import check_free_space, needed_bytes
from xlamaml.search.faults.interrupted import SignalWatch, watching_signals
from xlamaml.search.faults.ray_state import seal
from xlamaml.search.faults.rebuild import check_rebuildable, rebuilt_cells
from xlamaml.search.faults.repair import repair_experiment
from xlamaml.search.plan.counts import DataSizes, plan_counts
from xlamaml.search.plan.storage_estimate import storage as storage_estimate
from xlamaml.search.ray_connect import init_ray
from xlamaml.search.spec import Sweep, from_record
from xlamaml.search.sweep_assets import prepare_assets
from xlamaml.search.tuner import fit
from xlamaml.trainables.errors import ConfigError, ExistingOutputError, XlamamlError

log = logging.getLogger("xlamaml")


class ErroredTrialsError(XlamamlError):
    """A sweep (or resume) that ended with errored trials; `exp` is its experiment, whose other trials finished."""

    def __init__(self, message: str, exp: Path | str) -> None:
        super().__init__(message)
        self.exp = exp


def slots_for(cpus: float, s: Any) -> int:
    """Return how many trials `cpus` CPUs run at once: over `cpus_per_trial`, at least 1, at most max_concurrent."""
    slots = int(cpus // max(s.cpus_per_trial, 1e-9)) or 1
    return min(slots, s.max_concurrent) if s.max_concurrent else slots


def trial_slots(s: Any) -> int:
    """Return how many trials Ray can run at once: the cluster's CPUs (slots_for)."""
    return slots_for(ray.cluster_resources().get("CPU", 1), s)


def local_cpus(num_cpus: int | None) -> int:
    """Return the CPUs a local Ray started here gets: `num_cpus`, else those this process may use."""
    return int(num_cpus or len(os.sched_getaffinity(0)))


def check_resources(s: Any, num_cpus: int | None) -> None:
    """Return None when one trial's CPUs and GPUs fit in what a local Ray on this machine gets (`num_cpus`, else the
    CPUs this process may use; the GPUs torch sees); else raise ConfigError: such a sweep would wait forever. Only a
    local sweep is checked (a cluster may grow)."""
    have = {"CPU": float(local_cpus(num_cpus)), "GPU": float(torch.cuda.device_count())}
    for key, want in (("cpus_per_trial", s.cpus_per_trial), ("gpus_per_trial", s.gpus_per_trial)):
        total = have["CPU" if key.startswith("cpus") else "GPU"]
        if want > total:
            raise ConfigError(f"config key sweep.{key}: {want:g} asked for, but a local Ray here has {total:g}; "
                              f"expected at most {total:g} (or --address to a cluster that has them)")


def tune_timing(results: Any, wall: float, slots: int) -> dict[str, float]:
    """Return the Tune phase's wall seconds, its trial slots, the seconds trials spent in their steps (meta steps and
    evaluation, Ray's `time_total_s`) and the share of the slots' time spent outside them (setup, checkpoints,
    scheduling, idle slots)."""
    steps = sum(float((r.metrics or {}).get("time_total_s") or 0.0) for r in results)
    return {"tune_seconds": wall, "slots": slots, "trials": len(results), "trial_step_seconds": steps,
            "overhead_share": max(0.0, 1 - steps / (wall * slots)) if wall > 0 and slots > 0 else 0.0}


def planned_trials(sw: Sweep) -> int:
    """Return how many trials the sweep runs in all (grid: its cells times the extra axes; optuna: its samples;
    adaptive: its trial folders, cell x seed, at most; predictive: the grid's at most)."""
    s = sw.sweep
    if s.mode == "adaptive":
        return plan_counts(sw, "adaptive").trials
    if s.mode == "predictive":
        return len(sw.grid_cells)
    if s.mode != "grid":
        return s.num_samples
    return len(sw.grid_cells) * len(sw.combos)


def finished_trials(exp: str) -> int:
    """Return how many trial folders of the experiment `exp` hold a final report (test metrics)."""
    return sum(is_final((trial_reports(exp, folder) or [None])[-1]) for folder in storage.list_folders(exp)
               if folder != "assets")


def checkpoint_bytes(run: dict[str, Any]) -> int:
    """Return the size of a trial checkpoint at most: the base asset's weight files (a trial saves what it trains)."""
    manifest = assets.read_manifest(run["base_checkpoint"]) if run.get("assets") else None
    files = (manifest or {}).get("files", {})
    return sum(f["bytes"] for n, f in files.items() if n.endswith((".safetensors", ".bin", ".pt", ".pth")))


def check_space_first(sw: Sweep, exp: str, num_cpus: int | None) -> None:
    """Return None when a new local sweep's storage has room for its assets and trials, estimated from the model's
    shape as `xlamaml plan` prints them (or it cannot tell: an object store, a model of unknown shape); else raise
    StorageFullError: checked before anything is written, so a refused sweep leaves nothing behind."""
    s = sw.sweep
    trials = planned_trials(sw)
    running = min(trials, slots_for(local_cpus(num_cpus), s))
    mode = "adaptive" if s.mode == "adaptive" else "grid"  # an Optuna search is counted as its grid at most
    try:
        estimate = storage_estimate(sw, {mode: plan_counts(sw, mode)}, running, DataSizes())
    except ConfigError:  # a cell whose config is bad errors alone later; the check after the assets still runs
        return
    if estimate is None:
        return
    need = estimate.assets_bytes + needed_bytes(trials, running, estimate.base_bytes, s.keep_checkpoints,
                                                s.keep_final_checkpoint)
    check_free_space(exp, need, f"this sweep's assets and its {trials} trial(s) (estimated as `xlamaml plan` does)")


def check_space(sw: Sweep, exp: str, resume: bool) -> None:
    """Return None when the experiment's storage has room for the trials still to run (or cannot tell: an object
    store); else raise StorageFullError naming the path, the bytes needed and free."""
    s = sw.sweep
    trials = max(planned_trials(sw) - (finished_trials(exp) if resume else 0), 0)
    need = needed_bytes(trials, min(trials, trial_slots(s)), checkpoint_bytes(sw.run), s.keep_checkpoints,
                        s.keep_final_checkpoint)
    check_free_space(exp, need, f"the {trials} {'unfinished ' if resume else ''}trial(s) of this sweep")


def _returned(exp: str) -> Path | str:
    return exp if storage.is_uri(exp) else Path(exp)


def run_sweep(sw: Sweep | None, storage_location: str | Path, name: str, address: str | None = None,
              resume: bool = False, num_cpus: int | None = None, force: bool = False) -> Path | str:
    """Run (or with `resume`, continue) the sweep `<storage>/<name>`; return the experiment's folder (a Path) or
    URI (a str). Unless `force`, a local storage without room for the trials is one error line before they start;
    a disk that fills during the sweep stops it (resumable) with one error line; Ctrl-C or SIGTERM stops it
    (resumable) with Interrupted, one line giving the resume command."""
    with watching_signals() as watch:
        return _run_sweep(sw, storage_location, name, address, resume, num_cpus, force, watch)


def _run_sweep(sw: Sweep | None, storage_location: str | Path, name: str, address: str | None, resume: bool,
               num_cpus: int | None, force: bool, watch: SignalWatch) -> Path | str:
    root = storage.normalize(storage_location)
    exp = storage.join(root, storage.check_name(name))
    # Load: a new sweep as given, a resumed one from its record.
    if resume:
        sw = from_record(exp)
    elif records.sweep_recorded(exp):
        raise ExistingOutputError(f"{exp}: a sweep already ran here; pass --resume to continue it or choose "
                                  f"another --name")
    assert sw is not None
    storage.check_writable(exp)  # a bad URI, bucket or credential: one line before anything starts
    lease = acquire(exp, resume)  # one driver per experiment (experiment/lock.py)
    try:
        return _run_held(sw, root, exp, name, address, resume, num_cpus, force, watch)
    finally:
        lease.release()


def _run_held(sw: Sweep, root: str, exp: str, name: str, address: str | None, resume: bool, num_cpus: int | None,
              force: bool, watch: SignalWatch) -> Path | str:
    # A resume first repairs what a crash cut. Ray's pickled state is loaded by no grid or adaptive resume: an
    # adaptive sweep runs each rung anew from its record and trial folders, a grid sweep is rebuilt from its record
    # and trial folders; only an Optuna sweep restores Ray's state, once its seal is checked (faults/ray_state.py).
    damaged = repair_experiment(exp).damaged_state if resume else None
    if sw.sweep.mode in ("adaptive", "predictive"):  # each round or rung runs anew from the record
        damaged = None
    elif resume and sw.sweep.mode == "grid":
        damaged = damaged or "Ray's pickled state is never loaded"
    if damaged:
        check_rebuildable(sw.sweep.mode)
    if not address:
        check_resources(sw.sweep, num_cpus)
    if address and not storage.is_uri(root):
        log.warning("sweep %s: a local storage path with --address: every node must see it at this path (a shared "
                    "file system); else give a URI such as s3://bucket/prefix", root)
    # Assets, then the record: the trials read nothing but these. A new local sweep first checks that they and the
    # trials fit, before anything is written.
    if not resume and not force and not address:
        check_space_first(sw, exp, num_cpus)
    t0 = time.perf_counter()
    if address:  # the English stage runs as a Ray task on the cluster; locally it runs here, before Ray starts
        init_ray(address)
    try:
        sw = sw.with_run(prepare_assets(sw, storage.join(exp, "assets"), remote=bool(address)))
    except StorageFullError as e:
        if resume:
            raise
        # No record yet: the sweep has not started, so the next step is the same command, not --resume.
        raise StorageFullError(f"{str(e).split('; free space')[0]}; free space, then run the same `xlamaml sweep` "
                               f"command again (the sweep had not started: nothing to resume)") from None
    if not resume:
        records.write_sweep(exp, sw.to_dict())
    cells = rebuilt_cells(exp, sw.grid_cells, damaged, sw.combos) if damaged else None
    if cells == []:
        log.warning("sweep %s: every trial had finished; nothing to run", exp)
        return _returned(exp)
    # Checks that need Ray (the slots) and the assets (a checkpoint's size).
    init_ray(address, num_cpus)
    if not force:
        check_space(sw, exp, resume)
    log.info("sweep %s: %s mode, %d assignments x %d seeds, assets ready after %.0f s", exp, sw.sweep.mode,
             len(sw.assignments), len(sw.sweep.seeds), time.perf_counter() - t0)
    # Fit: one Tune run (grid, optuna), or one per rung (adaptive); a signal ends it there, state saved.
    t_assets, t_fit = time.perf_counter() - t0, time.perf_counter()
    resume_command = f"xlamaml sweep --resume --name {name} --storage {root}"

    def fit_watched(resume: bool, cells: list[dict[str, Any]] | None) -> Any:
        with watch.tuning_run():
            results = fit(sw, root, name, resume=resume, cells=cells)
        if sw.sweep.mode == "optuna":  # the state its resume restores: sealed against this driver's key
            seal(exp)
        watch.check(exp, resume_command)
        return results

    if sw.sweep.mode == "adaptive":
        results = run_rungs(sw, root, name, lambda trials: fit_watched(False, trials), plan_counts(sw, "grid").to_dict())
    elif sw.sweep.mode == "predictive":
        results = run_rounds(sw, root, name, lambda trials: fit_watched(False, trials), plan_counts(sw, "grid").to_dict())
    else:
        results = fit_watched(resume, cells)
    # Timing, then the errors.
    timing = tune_timing(results, time.perf_counter() - t_fit, min(trial_slots(sw.sweep), len(results)))
    timing["assets_seconds"] = t_assets
    records.write_timing(exp, timing)
    log.info("sweep %s: Tune phase %.0f s on %d trial slots; trials' steps %.0f s; %.1f%% of the slots' time outside "
             "trial compute", exp, timing["tune_seconds"], timing["slots"], timing["trial_step_seconds"],
             100 * timing["overhead_share"])
    errors = [r for r in results if r.error is not None]
    if errors:
        folders = sorted(str(r.path).rstrip("/").rsplit("/", 1)[-1] for r in errors)
        raise ErroredTrialsError(f"sweep {exp}: {len(errors)} of {len(results)} trials errored ({', '.join(folders)}; "
                                 f"see error.txt in each); fix the cause and run `xlamaml sweep --resume --name "
                                 f"{name}`", _returned(exp))
    return _returned(exp)
