"""A trial's config from its cell: the one way the driver, the planner, the adaptive driver and the Trainable turn
(assignment, seed, grid combination, rung) into a RunConfig.

A trial's Tune config is the sweep's run config (nested dicts) plus trial keys that are not run-config keys:
`assignment` (a string, trainables.assignment), `folder` and `resume_from` (a trial that continues in its own folder:
search/faults/continued.py), `rung` (the budget of an adaptive sweep's rung) and `keep_final_checkpoint`. A grid sweep
puts (assignment, seed) in one `trial` entry (`flat_trial` lifts it).
"""

from __future__ import annotations

import math
from typing import Any, Optional

from xlamaml.trainables.assignment import flat_trial, parse_assignment
from xlamaml.trainables.config import RunConfig, config_from_dict
from xlamaml.trainables.config_parsing import merge, nested
from xlamaml.trainables.errors import ConfigError

TRIAL_KEYS = ("assignment", "keep_final_checkpoint", "folder", "resume_from", "rung")


def trial_values(config: dict[str, Any]) -> dict[str, Any]:
    """Return a trial's config dict as run-config values: its `assignment` string applied, trial-only keys gone."""
    config = flat_trial(config)
    values = {k: v for k, v in config.items() if k not in TRIAL_KEYS}
    if isinstance(config.get("rung"), dict):  # an adaptive rung scores the first `dev_items` dev items per target
        values = merge(values, {"eval": {"dev_max_examples": config["rung"]["dev_items"]}})
    assignment = config.get("assignment")
    if assignment is not None:
        try:
            values = merge(values, parse_assignment(assignment).overrides())
        except ValueError as e:
            raise ConfigError(str(e)) from None
    return values


def trial_config(config: dict[str, Any]) -> RunConfig:
    """Return the RunConfig of a trial's Tune config (its `assignment` string applied)."""
    return config_from_dict(trial_values(config))


def cell_values(run: dict[str, Any], assignment: str, seed: Any = None, combo: Optional[dict[str, Any]] = None,
                rung: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """Return the Tune config of one trial of the run config `run`: its assignment, seed (None: the run's), extra grid
    axes (`combo`, {"meta.sampling": "cover"}) and adaptive rung."""
    cell: dict[str, Any] = {"assignment": assignment, **nested(combo or {})}
    if seed is not None:
        cell["seed"] = seed
    if rung is not None:
        cell["rung"] = rung
    return merge(run, cell)


def cell_config(run: dict[str, Any], assignment: str, seed: Any = None, combo: Optional[dict[str, Any]] = None,
                rung: Optional[dict[str, Any]] = None) -> RunConfig:
    """Return the RunConfig one trial of `run` runs (see cell_values); a bad value is a ConfigError naming it."""
    try:
        return trial_config(cell_values(run, assignment, seed, combo, rung))
    except ValueError as e:
        raise ConfigError(str(e)) from None


def reports_per_trial(cfg: RunConfig) -> int:
    """Return how many reports a meta trial makes (the ASHA time budget)."""
    return max(1, math.ceil(cfg.meta.total_steps / cfg.meta.steps_per_report))
