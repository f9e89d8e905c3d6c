"""The Ray Tune callbacks of `sweep.tracking` (search/tracking.py says what each tracker gets): Ray's own
MLflowLoggerCallback with the runs tagged, and WandbRuns, a W&B run per trial kept in the driver."""

from __future__ import annotations

import os
from typing import Any

from ray import tune

from xlamaml.search.console import trial_name
from xlamaml.search.tracking import check_installed, run_tags


def tracking_callbacks(names: list[str], project: str) -> list[Any]:
    """Return the Ray Tune callbacks of the trackers in `names`, sending to experiment / project `project`."""
    check_installed(names)
    out: list[Any] = []
    if "mlflow" in names:
        from ray.air.integrations.mlflow import MLflowLoggerCallback

        class TaggedMLflow(MLflowLoggerCallback):
            """MLflow runs tagged with their trial's assignment and seed."""

            def log_trial_start(self, trial: Any) -> None:
                base = dict(self.tags)
                self.tags = {**base, **run_tags(trial.config)}
                try:
                    super().log_trial_start(trial)
                finally:
                    self.tags = base

        out.append(TaggedMLflow(tracking_uri=os.environ.get("MLFLOW_TRACKING_URI"), experiment_name=project,
                                save_artifact=False))
    if "wandb" in names:
        out.append(WandbRuns(project))
    return out


class WandbRuns(tune.Callback):
    """One W&B run per trial, in the driver: its config, every report (numbers only) at its training iteration, and
    tags `assignment:<cell>` and `seed:<seed>`; finished (exit code 1 if it errored) when the trial ends."""

    def __init__(self, project: str) -> None:
        self.project = project
        self.runs: dict[str, Any] = {}

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """Start the trial's run (a trial continued in a later rung or round gets a run of its own)."""
        import wandb

        tags = [f"{k}:{v}" for k, v in run_tags(trial.config).items()]
        config = {k: v for k, v in trial.config.items() if isinstance(v, (str, int, float, bool, dict, list))}
        self.runs[trial.trial_id] = wandb.init(project=self.project, group=self.project, name=trial_name(trial),
                                               config=config, tags=tags, reinit="create_new")

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        """Log a report's numbers at its training iteration."""
        run = self.runs.get(trial.trial_id)
        if run is not None:
            run.log({k: v for k, v in result.items() if isinstance(v, (int, float)) and not isinstance(v, bool)},
                    step=int(result.get("training_iteration", 0)))

    def _finish(self, trial: Any, code: int) -> None:
        run = self.runs.pop(trial.trial_id, None)
        if run is not None:
            run.finish(exit_code=code)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """Finish the trial's run."""
        self._finish(trial, 0)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """Finish the trial's run as failed."""
        self._finish(trial, 1)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        """Finish the runs of trials still open (an interrupted Tune run)."""
        for trial in list(trials):
            self._finish(trial, 1)
