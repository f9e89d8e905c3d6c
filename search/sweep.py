"""A Ray Tune sweep: its assets once (tokenized data, the English stage), then one trial per assignment x seed
(grid) or an Optuna search with ASHA early stopping, resumable after an interruption.

A sweep preset is a run config (trainables/config.py keys) plus a `sweep:` section (SweepConfig). The experiment
(`<storage>/<name>`, a local folder or a URI such as `s3://bucket/prefix/<name>`) gets `xlamaml_sweep.json` (the
resolved run config and sweep) and `assets/` (`search/sweep_assets.py`), so `--resume`, the trials on any node and
the analysis need nothing but the experiment's storage.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
from ray import tune
from ray.tune.schedulers import ASHAScheduler

from xlamaml.search.adaptive import run_rungs
from xlamaml.search.full_storage import (FullStorageStop, check_free_space, full_error, full_line, is_full_exception,
                                 needed_bytes, stopped, storage_is_full, watching)
from xlamaml.search.ray_connect import init_ray
from xlamaml.search.rebuild import RestoreFailed, SeedReports, check_rebuildable, rebuilt_cells, refusing_restart
from xlamaml.search.repair import repair_experiment
from xlamaml.search.rungs import AdaptiveConfig
from xlamaml.search.space import AssignmentSpec, assignments, grid_trials, hyper_space, nested, seedless_baseline
from xlamaml.search.sweep_assets import prepare_assets
from xlamaml.trainables import assets, storage
from xlamaml.trainables.config import RunConfig, config_from_dict
from xlamaml.trainables.config_parsing import (build_dataclass, check_fields, checked, merge, non_negative, non_negative_int,
                                       one_of, parse_overrides, positive_int, positive_number, read_yaml)
from xlamaml.trainables.assignment import flat_trial, folder_prefix
from xlamaml.trainables.errors import ConfigError, ExistingOutputError, MissingFileError, XlamamlError
from xlamaml.trainables.tasks.registry import get_task
from xlamaml.trainables.trainable import XlaMamlTrainable

log = logging.getLogger("xlamaml")
SWEEP_FILE = "xlamaml_sweep.json"
TIMING_FILE = "xlamaml_timing.json"  # the last run's phases: assets, Tune, trials' own compute
MODES = ("grid", "optuna", "adaptive")
# Run-config keys that change which sets are tokenized (so the driver must know their values before trials start).
DATA_KEYS = ("task", "seed", "data.", "model.", "english.", "eval.target_langs", "eval.dev_langs", "eval.max_examples",
             "eval.dev_max_examples", "eval.gxlt", "eval.qa_test", "eval.qa_heldout_fraction", "few_shot.enabled",
             "meta.support_langs", "meta.query_langs", "method")


@dataclass
class SweepConfig:
    """The `sweep:` section of a preset: what to run (mode, assignments, seeds, grid axes) and how (resources,
    checkpoints, failures, the Optuna search)."""

    # grid: every assignment x seed, no early stopping; optuna: OptunaSearch + ASHA; adaptive: every assignment on a
    # small budget first, then only those likely to be some target's best (search/adaptive.py)
    mode: str = checked("grid", rule=one_of(*MODES))
    assignments: AssignmentSpec = field(default_factory=AssignmentSpec)
    seeds: list[int] = checked(default_factory=lambda: [42],
                               rule=lambda v: None if v else "expected a non-empty list of integers")
    grid: dict[str, list] = field(default_factory=dict)  # more grid axes: {"meta.sampling": [random, cover]}
    cpus_per_trial: float = checked(1.0, rule=positive_number)
    gpus_per_trial: float = checked(0.0, rule=non_negative)  # fractions share a GPU between trials
    max_concurrent: int = checked(0, rule=non_negative_int)  # 0: as many as the resources allow
    # Two: a trial whose newest checkpoint was cut mid-write (a full disk, a node lost) restores the one before.
    keep_checkpoints: int = checked(2, rule=positive_int)
    checkpoint_every: int = checked(1, rule=positive_int)  # reports between checkpoints
    # Retries of a failed trial before it counts as errored; a spot cluster may preempt one trial's node more than once.
    max_failures: int = checked(3, rule=non_negative_int)
    # A finished trial keeps only its final report, not its weights (246 MB a demo trial, ~2 GB with mBERT);
    # true keeps the meta-trained weights of every finished trial.
    keep_final_checkpoint: bool = False
    # The English stage's resources: with --address it runs as a Ray task on a worker, so the head needs no GPU.
    english_cpus: float = checked(1.0, rule=positive_number)
    english_gpus: float = checked(0.0, rule=non_negative)
    # optuna mode
    num_samples: int = checked(8, rule=positive_int)
    metric: str = "dev/avg_excl_aux/acc"
    metric_mode: str = checked("max", rule=one_of("max", "min"))
    space: dict[str, Any] = field(default_factory=dict)  # {"meta.inner_lr": {"loguniform": [1e-6, 1e-3]}}
    grace_period: int = checked(1, rule=positive_int)  # ASHA: reports before a trial can be stopped
    reduction_factor: int = checked(2, rule=positive_int)
    adaptive: AdaptiveConfig = field(default_factory=AdaptiveConfig)  # adaptive mode: rungs and decision rule

    def validate(self) -> "SweepConfig":
        """Return self after checking the values; raise ConfigError naming the key."""
        check_fields(self, "sweep.")
        for key in self.space:
            if key.startswith(DATA_KEYS):  # the driver tokenizes every set before the search samples a value
                raise ConfigError(f"config key sweep.space.{key}: changes the tokenized data the trials read; expected "
                                  f"it in sweep.grid (every value is then prepared) or in the run config")
        for key, values in self.grid.items():
            if not isinstance(values, list) or not values:
                raise ConfigError(f"config key sweep.grid.{key}: expected a non-empty list of values")
        self.adaptive.validate()
        if self.mode == "adaptive" and (self.grid or self.space):
            raise ConfigError(f"config key sweep.{'grid' if self.grid else 'space'}: an adaptive sweep searches over "
                              f"assignments and seeds only; expected it empty (or sweep.mode grid / optuna)")
        try:
            assignments(self.assignments)
            hyper_space(self.space)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        return self


@dataclass
class Sweep:
    """A sweep as recorded in its experiment: the run config every trial starts from, and the sweep section."""

    run: dict[str, Any]  # the run config every trial starts from (before assignment and seed)
    sweep: SweepConfig

    def to_dict(self) -> dict[str, Any]:
        """Return the sweep as plain dicts (what xlamaml_sweep.json holds)."""
        return {"run": self.run, "sweep": dataclasses.asdict(self.sweep)}


class ErroredTrialsError(XlamamlError):
    """A sweep (or resume) that ended with errored trials; `exp` is its experiment, whose other trials finished."""

    def __init__(self, message: str, exp: Path | str) -> None:
        super().__init__(message)
        self.exp = exp


def load_sweep(path: str | Path, overrides: list[str] | None = None) -> Sweep:
    """Return the Sweep of a preset file plus `key=value` overrides (`sweep.*` keys go to the sweep)."""
    values = merge(read_yaml(path), parse_overrides(overrides or []))
    sweep_values = values.pop("sweep", {}) or {}
    try:
        sweep = build_dataclass(SweepConfig, sweep_values, "sweep.").validate()
        cfg = config_from_dict(values)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    return Sweep(absolute_paths(cfg).to_dict(), sweep)


def absolute_paths(cfg: RunConfig) -> RunConfig:
    """Return `cfg` with its local paths made absolute (the driver reads them; trials read only assets)."""
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data))
    cfg.data.dir = str(Path(cfg.data.dir).expanduser().resolve())
    for key in ("xnli", "mlqa", "english"):
        value = getattr(cfg.data, key)
        if os.path.sep in value or Path(value).exists():
            setattr(cfg.data, key, str(Path(value).expanduser().resolve()))
    if cfg.base_checkpoint:
        cfg.base_checkpoint = str(Path(cfg.base_checkpoint).expanduser().resolve())
    return cfg


def reports_per_trial(cfg: RunConfig) -> int:
    """Return how many reports a meta trial makes (the ASHA time budget)."""
    return max(1, math.ceil(cfg.meta.total_steps / cfg.meta.steps_per_report))


def param_space(sw: Sweep, cells: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Return the Tune param space: the run config with the assignment and seed (and hyper-parameters) to search
    (`cells`: only these grid cells, as a rebuilt resume runs them)."""
    s = sw.sweep
    space = dict(sw.run)
    space["threads"] = max(1, int(s.cpus_per_trial))  # torch threads match the CPUs a trial holds
    space["keep_final_checkpoint"] = s.keep_final_checkpoint
    names = assignments(s.assignments)
    if s.mode == "adaptive":  # one rung's trials: each cell x seed with its budget and folder (search/adaptive.py)
        space["trial"] = tune.grid_search(list(cells or []))
        return space
    if s.mode == "grid":
        # One grid axis of (assignment, seed) cells, so a baseline that no seed changes runs once.
        space["trial"] = tune.grid_search(cells if cells is not None else grid_cells(sw.run, s))
        return merge(space, nested({k: tune.grid_search(v) for k, v in s.grid.items()}))
    space["assignment"] = tune.choice(names) if len(names) > 1 else names[0]
    space["seed"] = tune.choice(s.seeds) if len(s.seeds) > 1 else s.seeds[0]
    return merge(space, hyper_space(s.space))


def grid_cells(run: dict[str, Any], s: SweepConfig) -> list[dict[str, Any]]:
    """Return the (assignment, seed) cells of a grid sweep: the baseline once when no trial seed changes it (and no
    extra grid axis might make it depend on one)."""
    cfg = config_from_dict(run)
    seedless = not s.grid and seedless_baseline(cfg, get_task(cfg.task))
    return grid_trials(assignments(s.assignments), s.seeds, seedless_baseline=seedless)


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
            # A trial of a rebuilt run kept the checkpoints it continued from (search/rebuild.py).
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
    if resume:
        # The param space again from the sweep's record: Ray's own copy (tuner.pkl) is not trusted to be whole.
        return tune.Tuner.restore(storage.join(storage_root, name), trainable=trainable, resume_errored=True,
                                  param_space=param_space(sw))
    search_alg = scheduler = None
    if s.mode == "optuna":
        # Late import: Ray's Optuna integration loads optuna (and its SQL stack), which grid sweeps never use.
        from ray.tune.search.optuna import OptunaSearch

        search_alg = OptunaSearch(metric=s.metric, mode=s.metric_mode)
        scheduler = ASHAScheduler(time_attr="training_iteration", metric=s.metric, mode=s.metric_mode,
                                  max_t=reports_per_trial(config_from_dict(sw.run)),
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
                       DropStoppedWeights(s.keep_final_checkpoint)],
            # Predictions are written in the trial's working directory; this copies them into its folder.
            sync_config=tune.SyncConfig(sync_artifacts=True),
            verbose=1,
        ),
    )


def read_record(exp: str) -> Sweep:
    """Return the sweep recorded in the experiment `exp` (MissingFileError when it holds none)."""
    record = storage.join(exp, SWEEP_FILE)
    if not storage.exists(record):
        raise MissingFileError(f"{exp}: no interrupted sweep to resume (no {SWEEP_FILE})")
    try:
        saved = json.loads(storage.read_bytes(record))
        return Sweep(saved["run"], build_dataclass(SweepConfig, saved["sweep"], "sweep."))
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{record}: not a sweep record ({e}); expected the JSON `xlamaml sweep` wrote") from None


def trial_slots(s: SweepConfig) -> int:
    """Return how many trials Ray can run at once: the cluster's CPUs over `cpus_per_trial` (and max_concurrent)."""
    import ray

    slots = int(ray.cluster_resources().get("CPU", 1) // max(s.cpus_per_trial, 1e-9)) or 1
    return min(slots, s.max_concurrent) if s.max_concurrent else slots


def tune_timing(results: Any, wall: float, slots: int) -> dict[str, float]:
    """Return the Tune phase's wall seconds, its trial slots, the seconds trials spent in their steps (meta steps and
    evaluation, Ray's `time_total_s`) and the share of the slots' time spent outside them (setup, checkpoints,
    scheduling, idle slots)."""
    steps = sum(float((r.metrics or {}).get("time_total_s") or 0.0) for r in results)
    return {"tune_seconds": wall, "slots": slots, "trials": len(results), "trial_step_seconds": steps,
            "overhead_share": max(0.0, 1 - steps / (wall * slots)) if wall > 0 and slots > 0 else 0.0}


def planned_trials(sw: Sweep) -> int:
    """Return how many trials the sweep runs in all (grid: its cells times the extra axes; optuna: its samples;
    adaptive: its trial folders, cell x seed, at most)."""
    s = sw.sweep
    if s.mode == "adaptive":
        from xlamaml.search.plan import plan_counts  # late: it reads the data's sizes, which only this mode needs here

        return plan_counts(sw, "adaptive").trials
    if s.mode != "grid":
        return s.num_samples
    return len(grid_cells(sw.run, s)) * math.prod(len(v) for v in s.grid.values())


def finished_trials(exp: str) -> int:
    """Return how many trial folders of the experiment `exp` hold a final report (test metrics)."""
    count = 0
    for folder in storage.list_folders(exp):
        result = storage.join(exp, folder, "result.json")
        if folder != "assets" and storage.exists(result):
            tail = storage.read_bytes(result).decode("utf-8", "replace").rstrip().rsplit("\n", 1)[-1]
            count += '"test/' in tail
    return count


def checkpoint_bytes(run: dict[str, Any]) -> int:
    """Return the size of a trial checkpoint at most: the base asset's weight files (a trial saves what it trains)."""
    manifest = assets.read_manifest(run["base_checkpoint"]) if run.get("assets") else None
    files = (manifest or {}).get("files", {})
    return sum(f["bytes"] for n, f in files.items() if n.endswith((".safetensors", ".bin", ".pt", ".pth")))


def check_space(sw: Sweep, exp: str, resume: bool) -> None:
    """Return None when the experiment's storage has room for the trials still to run (or cannot tell: an object
    store); else raise StorageFullError naming the path, the bytes needed and free."""
    s = sw.sweep
    trials = max(planned_trials(sw) - (finished_trials(exp) if resume else 0), 0)
    need = needed_bytes(trials, min(trials, trial_slots(s)), checkpoint_bytes(sw.run), s.keep_checkpoints,
                        s.keep_final_checkpoint)
    check_free_space(exp, need, f"the {trials} {'unfinished ' if resume else ''}trial(s) of this sweep")


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
                check_rebuildable(sw.sweep.mode, sw.sweep.grid)
                cells = rebuilt_cells(exp, grid_cells(sw.run, sw.sweep), str(e))
                results = make_tuner(sw, root, name, cells=cells).fit() if cells else []
        except Exception as e:  # Ray's own failure to write its files (or read them back cut) on a full disk
            detail = stopped(exp)
            if detail is None and not (is_full_exception(e) or storage_is_full(exp)):
                raise
            raise full_error(exp, name, detail or full_line(str(e))) from None
    if stopped(exp) is not None:  # stopped gracefully: the trials' state was saved, resumable
        raise full_error(exp, name, stopped(exp) or "")
    return results


def run_sweep(sw: Sweep | None, storage_location: str | Path, name: str, address: str | None = None,
              resume: bool = False, num_cpus: int | None = None, force: bool = False) -> Path | str:
    """Run (or with `resume`, continue) the sweep `<storage>/<name>`; return the experiment's folder (a Path) or
    URI (a str). Unless `force`, a local storage without room for the trials is one error line before they start;
    a disk that fills during the sweep stops it (resumable) with one error line."""
    root = storage.normalize(storage_location)
    exp = storage.join(root, name)
    if resume:
        sw = read_record(exp)
    storage.check_writable(exp)  # a bad URI, bucket or credential: one line before anything starts
    damaged = repair_experiment(exp).damaged_state if resume else None
    if sw.sweep.mode == "adaptive":
        damaged = None  # an adaptive sweep never restores Ray's state: each rung runs anew from the trial folders
    if damaged:
        check_rebuildable(sw.sweep.mode, sw.sweep.grid)
    if not resume and storage.exists(storage.join(exp, SWEEP_FILE)):
        raise ExistingOutputError(f"{exp}: a sweep already ran here; pass --resume to continue it or choose "
                                  f"another --name")
    assert sw is not None
    if address and not storage.is_uri(root):
        log.warning("sweep %s: a local storage path with --address: every node must see it at this path (a shared "
                    "file system); else give a URI such as s3://bucket/prefix", root)
    t0 = time.perf_counter()
    if address:  # the English stage runs as a Ray task on the cluster; locally it runs here, before Ray starts
        init_ray(address)
    run = prepare_assets(sw.run, sw.sweep, storage.join(exp, "assets"), remote=bool(address))
    if not resume:
        sw = Sweep(run, sw.sweep)
        storage.write_bytes(storage.join(exp, SWEEP_FILE), json.dumps(sw.to_dict(), indent=2).encode())
    cells = rebuilt_cells(exp, grid_cells(sw.run, sw.sweep), damaged) if damaged else None
    if cells == []:
        log.warning("sweep %s: every trial had finished; nothing to run", exp)
        return exp if storage.is_uri(exp) else Path(exp)
    init_ray(address, num_cpus)
    if not force:
        check_space(Sweep(run, sw.sweep), exp, resume)
    log.info("sweep %s: %s mode, %d assignments x %d seeds, assets ready after %.0f s", exp, sw.sweep.mode,
             len(assignments(sw.sweep.assignments)), len(sw.sweep.seeds), time.perf_counter() - t0)
    t_assets, t_fit = time.perf_counter() - t0, time.perf_counter()
    if sw.sweep.mode == "adaptive":
        results = run_rungs(sw, root, name, lambda trials: fit(sw, root, name, resume=False, cells=trials))
    else:
        results = fit(sw, root, name, resume=resume, cells=cells)
    timing = tune_timing(results, time.perf_counter() - t_fit, min(trial_slots(sw.sweep), len(results)))
    timing["assets_seconds"] = t_assets
    storage.write_bytes(storage.join(exp, TIMING_FILE), json.dumps(timing, indent=2).encode())
    log.info("sweep %s: Tune phase %.0f s on %d trial slots; trials' steps %.0f s; %.1f%% of the slots' time outside "
             "trial compute", exp, timing["tune_seconds"], timing["slots"], timing["trial_step_seconds"],
             100 * timing["overhead_share"])
    errors = [r for r in results if r.error is not None]
    if errors:
        folders = sorted(str(r.path).rstrip("/").rsplit("/", 1)[-1] for r in errors)
        raise ErroredTrialsError(f"sweep {exp}: {len(errors)} of {len(results)} trials errored ({', '.join(folders)}; "
                                 f"see error.txt in each); fix the cause and run `xlamaml sweep --resume --name "
                                 f"{name}`", exp if storage.is_uri(exp) else Path(exp))
    return exp if storage.is_uri(exp) else Path(exp)
