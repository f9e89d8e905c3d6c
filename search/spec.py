"""A sweep, parsed once: its run config, task, assignments, cells and (adaptive) schedule, checked before anything
runs.

A sweep preset is a run config (trainables/config.py keys) plus a `sweep:` section (SweepConfig). `load_sweep` reads a
preset, `from_record` an experiment's `xlamaml_sweep.json`; both return a Sweep whose derived parts (the RunConfig,
the task, the cells, the rungs) are computed on first use and kept: the asset preparation, the planner, the adaptive
driver and the Tuner all read the same ones.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Optional

from xlamaml.experiment.records import Rung, read_sweep
from xlamaml.search.predictive_config import PredictiveConfig
from xlamaml.search.schedule import AdaptiveConfig, schedule
from xlamaml.search.tracking import TRACKERS, check_installed
from xlamaml.search.cells import cell_config
from xlamaml.search.space import AssignmentSpec, assignments, distribution_values, grid_trials, hyper_space, \
    seedless_baseline
from xlamaml.trainables.config import RunConfig, config_from_dict
from xlamaml.trainables.config_parsing import (build_dataclass, check_fields, checked, merge, non_negative,
                                               nested, non_negative_int, one_of, parse_overrides, positive_int,
                                               positive_number, read_yaml, seed_value)
from xlamaml.trainables.data_source import data_key, english_sets, needed_sets
from xlamaml.trainables.english_stage import english_stage_key
from xlamaml.trainables.errors import ConfigError
from xlamaml.trainables.feature_cache import cached_layers, feature_key
from xlamaml.trainables.tasks.base import Task
from xlamaml.trainables.tasks.registry import get_task

MODES = ("grid", "optuna", "adaptive", "predictive")


@dataclass
class SweepConfig:
    """The `sweep:` section of a preset: what to run (mode, assignments, seeds, grid axes) and how (resources,
    checkpoints, failures, the Optuna search)."""

    # grid: every assignment x seed, no early stopping; optuna: OptunaSearch + ASHA; adaptive: every assignment on a
    # small budget first, then only those likely to be some target's best (search/adaptive/); predictive: a model of
    # the map chooses each next run and predicts the cells never run (search/predictive/)
    mode: str = checked("grid", rule=one_of(*MODES))
    assignments: AssignmentSpec = field(default_factory=AssignmentSpec)
    seeds: list[int] = checked(default_factory=lambda: [42], rule=lambda v: (
        "expected a non-empty list of integers" if not v else "expected each seed once" if len(set(v)) < len(v)
        else next(filter(None, map(seed_value, v)), None)))
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
    predictive: PredictiveConfig = field(default_factory=PredictiveConfig)  # predictive mode: the search's knobs
    # Experiment trackers every trial reports to (search/tracking.py): mlflow (MLFLOW_TRACKING_URI), wandb.
    tracking: list[str] = checked(default_factory=list, rule=lambda v: next(
        (f"expected trackers among {', '.join(TRACKERS)}; got {x!r}" for x in v if x not in TRACKERS), None))
    tracking_project: Optional[str] = None  # the MLflow experiment / W&B project (default: the sweep's name)

    def validate(self) -> "SweepConfig":
        """Return self after checking the section's own values; raise ConfigError naming the key (Sweep.validate
        runs this first, then the checks that need the run config too)."""
        check_fields(self, "sweep.")
        for key in ("grid", "space"):
            if not isinstance(getattr(self, key), dict):
                example = "{meta.sampling: [random, cover]}" if key == "grid" else \
                    "{meta.inner_lr: {loguniform: [1.0e-6, 1.0e-3]}}"
                raise ConfigError(f"config key sweep.{key}: expected a mapping of config keys to "
                                  f"{'lists of values' if key == 'grid' else 'distributions'}, e.g. {example}; got "
                                  f"{type(getattr(self, key)).__name__}")
        for key, values in self.grid.items():
            if not isinstance(values, list) or not values:
                raise ConfigError(f"config key sweep.grid.{key}: expected a non-empty list of values")
        self.adaptive.validate()
        self.predictive.validate()
        check_installed(self.tracking)
        if self.mode in ("adaptive", "predictive") and (self.grid or self.space):
            raise ConfigError(f"config key sweep.{'grid' if self.grid else 'space'}: an {self.mode} sweep searches "
                              f"over assignments and seeds only; expected it empty (or sweep.mode grid / optuna)")
        try:
            assignments(self.assignments)
            hyper_space(self.space)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        return self


def prepared_by_driver(cfg: RunConfig, task: Task) -> tuple:
    """Return what the driver prepares for a trial of `cfg` before any trial starts: its data asset (`data_key`) and
    the sets in it, its feature cache and the English stage it starts from. A config key whose value changes this
    cannot be searched by `sweep.space` (the driver prepares assets before the search samples a value)."""
    features = feature_key(cfg, task, "base") if cached_layers(cfg) is not None else None
    return (data_key(cfg, task), tuple(needed_sets(cfg, task)), tuple(english_sets(cfg)), features,
            english_stage_key(cfg, task, content=False))


@dataclass(eq=False)
class Sweep:
    """A sweep: the run config every trial starts from (as recorded) and the sweep section; everything derived from
    them is computed once."""

    run: dict[str, Any]  # the run config every trial starts from (before assignment and seed)
    sweep: SweepConfig

    def to_dict(self) -> dict[str, Any]:
        """Return the sweep as plain dicts (what xlamaml_sweep.json holds)."""
        return {"run": self.run, "sweep": dataclasses.asdict(self.sweep)}

    def with_run(self, run: dict[str, Any]) -> "Sweep":
        """Return the same sweep over another run config (the assets' locations filled in)."""
        return Sweep(run, self.sweep)

    @cached_property
    def cfg(self) -> RunConfig:
        """Return the run config every trial starts from, parsed (once per Sweep)."""
        return config_from_dict(self.run)

    @cached_property
    def task(self) -> Task:
        """Return the sweep's task."""
        return get_task(self.cfg.task)

    @cached_property
    def assignments(self) -> list[str]:
        """Return every assignment string of the sweep (baseline first when it runs)."""
        return assignments(self.sweep.assignments)

    @cached_property
    def cells(self) -> list[str]:
        """Return the non-baseline assignments: the cells a search ranks."""
        return [name for name in self.assignments if name != "baseline"]

    @cached_property
    def combos(self) -> list[dict[str, Any]]:
        """Return every combination of the extra grid axes (`sweep.grid`; [{}] without any)."""
        grid = self.sweep.grid
        return [dict(zip(grid, values)) for values in itertools.product(*grid.values())]

    @cached_property
    def grid_cells(self) -> list[dict[str, Any]]:
        """Return the (assignment, seed) cells of a grid sweep: the baseline once when no trial seed changes it (and
        no extra grid axis might make it depend on one)."""
        seedless = not self.sweep.grid and seedless_baseline(self.cfg, self.task)
        return grid_trials(self.assignments, self.sweep.seeds, seedless_baseline=seedless)

    @cached_property
    def baseline_cells(self) -> list[dict[str, Any]]:
        """Return the baseline's (assignment, seed) trials."""
        return [c for c in self.grid_cells if c["assignment"] == "baseline"]

    @property
    def dev_langs(self) -> list[str]:
        """Return the languages dev reports score and decisions judge."""
        return self.cfg.dev_langs

    @cached_property
    def rungs(self) -> list[Rung]:
        """Return the adaptive schedule over this sweep's cells: the one the planner counts and the driver runs."""
        return schedule(self.sweep.adaptive, len(self.cells) * len(self.combos), total_steps=self.cfg.meta.total_steps,
                        dev_max=self.cfg.eval.dev_max_examples, seeds=list(self.sweep.seeds),
                        targets=len(self.dev_langs))

    def trial_config(self, assignment: str, seed: Any = None, combo: dict[str, Any] | None = None,
                     rung: dict[str, Any] | None = None) -> RunConfig:
        """Return the RunConfig of one trial of the sweep (search.cells.cell_config)."""
        return cell_config(self.run, assignment, seed, combo, rung)

    def validate(self) -> "Sweep":
        """Return self after every sweep-level check: the `sweep:` section's own values (SweepConfig.validate), then
        those that need the run config too: a `sweep.space` key may not change what the driver prepares before trials
        start (prepared_by_driver). Raise ConfigError naming the key."""
        self.sweep.validate()
        for key, spec in self.sweep.space.items():
            values = distribution_values(key, spec)
            changes = False
            for name in self.assignments:  # each assignment's trials read their own sets
                fingerprints = set()
                for value in values:
                    try:
                        cfg = cell_config(merge(self.run, nested({key: value})), name, self.sweep.seeds[0])
                    except ConfigError as e:
                        raise ConfigError(f"config key sweep.space.{key}: the value {value!r}: {e}") from None
                    fingerprints.add(prepared_by_driver(cfg, self.task))
                changes |= len(fingerprints) > 1
            if changes:  # the driver tokenizes every set before the search samples a value
                raise ConfigError(f"config key sweep.space.{key}: changes the data, features or English stage the "
                                  f"driver prepares before trials start; expected it in sweep.grid (every value is "
                                  f"then prepared) or in the run config")
        return self


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


def load_sweep(path: str | Path, overrides: list[str] | None = None) -> Sweep:
    """Return the Sweep of a preset file plus `key=value` overrides (`sweep.*` keys go to the sweep), checked."""
    values = merge(read_yaml(path), parse_overrides(overrides or []))
    sweep_values = values.pop("sweep", {}) or {}
    try:
        sweep = build_dataclass(SweepConfig, sweep_values, "sweep.")
        cfg = absolute_paths(config_from_dict(values))
        sw = Sweep(cfg.to_dict(), sweep)
        sw.cfg = cfg  # the one parse of this sweep's run config
        return sw.validate()
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def from_record(exp: str) -> Sweep:
    """Return the sweep recorded in the experiment `exp` (MissingFileError when it holds none)."""
    saved = read_sweep(exp)
    try:
        return Sweep(saved["run"], build_dataclass(SweepConfig, saved["sweep"], "sweep."))
    except ConfigError as e:
        raise ConfigError(f"{exp}: the recorded sweep: {e}") from None
