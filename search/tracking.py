"""Experiment trackers (`sweep.tracking: [mlflow, wandb]`): every trial's config and reports sent through Ray Tune's
own logger callbacks, each run tagged with its assignment and seed so a lab's dashboard can filter on them.

    mlflow   MLflowLoggerCallback: the server or store in MLFLOW_TRACKING_URI (a local `mlruns` folder without it),
             experiment `sweep.tracking_project` (default: the sweep's name); `pip install 'xlamaml[mlflow]'`
    wandb    WandbRuns: project `sweep.tracking_project`, one group per sweep, a run per trial; WANDB_MODE=offline
             writes the runs under WANDB_DIR to sync later; `pip install 'xlamaml[wandb]'`. Not Ray's
             WandbLoggerCallback: in an offline smoke sweep here its logging actors lost one trial's records of three
             (the actor ended before wandb had written them); these runs live in the driver, finished with the trial.

The callbacks (search/tracker_callbacks.py) run in the driver: on a cluster the tracking server must be reachable
from the head only. TensorBoard needs no setting: Ray writes event files into every trial folder
(`tensorboard --logdir EXPERIMENT`).
"""

from __future__ import annotations

import importlib.util
from typing import Any

from xlamaml.trainables.assignment import flat_trial
from xlamaml.trainables.errors import ConfigError

TRACKERS = ("mlflow", "wandb")


def run_tags(config: dict[str, Any]) -> dict[str, str]:
    """Return the tags of a trial's tracked run: its assignment and seed (and its folder in a predictive or adaptive
    sweep)."""
    trial = flat_trial(config)
    tags = {"assignment": str(trial.get("assignment", "")), "seed": str(trial.get("seed", ""))}
    if trial.get("folder"):
        tags["folder"] = str(trial["folder"])
    return tags


def check_installed(names: list[str]) -> None:
    """Return None when every tracker in `names` can be imported; else raise ConfigError naming the extra to
    install."""
    for name in names:
        if importlib.util.find_spec(name) is None:
            raise ConfigError(f"config key sweep.tracking: {name} is not installed; expected `pip install "
                              f"'xlamaml[{name}]'` (or remove {name} from sweep.tracking)")
