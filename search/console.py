"""What a sweep prints: one line per trial event, named by the trial's folder, instead of Ray Tune's boxed tables.

    started    `xla-maml_en-hi_s0: started`
    reported   `xla-maml_en-hi_s0: meta step 20/40 (eta 31 s), dev avg_excl_aux acc 0.612`
    finished   `xla-maml_en-hi_s0: finished in 62 s, test avg acc 0.598 [3/12 done, 2 running, 0 errored]`
    paused     an adaptive rung's or predictive round's end (`paused at meta step 4/40 ...`)
    errored    `xla-maml_en-hi_s0: errored (see .../error.txt)`
    at the end of each Tune run, a compact table: every trial's status, meta steps, dev and test averages (the ten
    best on dev when there are more, then a count of the rest)

Ray's own reporter (boxed config and result tables, the status table), its driver warnings and the workers' output
(progress bars, log lines) come back with `xlamaml -v` (`XLAMAML_VERBOSE=1`, which the workers inherit).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from ray import tune

VERBOSE_ENV = "XLAMAML_VERBOSE"

log = logging.getLogger("xlamaml")


def verbose() -> bool:
    """Return whether the console shows Ray's own reporter, warnings and the workers' output (`xlamaml -v`)."""
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


def ray_logging_level() -> int:
    """Return the level of Ray's own driver-side logger (`ray.init(logging_level=...)`): INFO when verbose, else
    ERROR (no 'Started a local Ray instance', no snapshot or token notices)."""
    return logging.INFO if verbose() else logging.ERROR


def quiet_ray() -> None:
    """Keep Ray's driver-side INFO and WARNING lines and Tune's experiment box off the console unless verbose; return
    None. Errors still show."""
    if not verbose():
        # Tune's newer console output prints its experiment box even at verbose=0; the older one prints nothing.
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        for name in ("ray", "ray.tune", "ray.train", "ray.data"):
            logging.getLogger(name).setLevel(logging.ERROR)


def trial_name(trial: Any) -> str:
    """Return the trial's folder name (`xla-maml_en-hi_s0`, or with a grid sweep's trial id after it)."""
    path = str(getattr(trial, "path", "") or "").rstrip("/")
    return path.rsplit("/", 1)[-1] if path else str(trial)


def _ranking_metric(result: dict[str, Any], prefix: str) -> tuple[str, float] | None:
    """Return ('avg_excl_aux acc', value) of a report's first average over targets (excluding the auxiliary ones,
    else all) and metric found under `prefix`, or None."""
    for lang in ("avg_excl_aux", "avg"):
        for metric in ("acc", "f1", "em"):
            value = result.get(f"{prefix}/{lang}/{metric}")
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return f"{lang} {metric}", float(value)
    return None


def _metric_text(result: dict[str, Any], prefix: str) -> str:
    """Return the ranking metric of a report as 'dev avg_excl_aux acc 0.612', or ''."""
    found = _ranking_metric(result, prefix)
    return f"{prefix} {found[0]} {found[1]:.3f}" if found else ""


class TrialLines(tune.Callback):
    """Logs one line per trial event on the driver (see the module docstring)."""

    def __init__(self) -> None:
        self.started: dict[str, float] = {}

    def _counts(self, trials: list, ended: Any, status: str) -> str:
        # The trial that just ended still has its old status while the callbacks run.
        now = [status if t is ended else t.status for t in trials]
        return (f"[{now.count('TERMINATED')}/{len(trials)} done, {now.count('RUNNING')} running, "
                f"{now.count('ERROR')} errored]")

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """Log that `trial` started."""
        self.started[trial.trial_id] = time.perf_counter()
        log.info("%s: started", trial_name(trial))

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        """Log a report that is not the trial's last: its meta step, an ETA and its dev ranking metric."""
        if result.get("done"):
            return  # on_trial_complete says it
        steps, total = result.get("meta/steps"), result.get("meta/total_steps")
        where = ""
        if isinstance(steps, int) and isinstance(total, int) and steps > 0:
            elapsed = float(result.get("meta/seconds", 0.0))
            where = f"meta step {steps}/{total} (eta {elapsed / steps * (total - steps):.0f} s)"
        text = ", ".join(x for x in (where, _metric_text(result, "dev")) if x)
        log.info("%s: %s", trial_name(trial), text or "reported")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """Log that `trial` finished (its test average) or paused at a rung's or round's end."""
        result = trial.last_result or {}
        seconds = time.perf_counter() - self.started.get(trial.trial_id, time.perf_counter())
        if result.get("rung/paused"):
            what = f"paused at meta step {result.get('meta/steps')}/{result.get('meta/total_steps')}"
        else:
            what = "finished"
        scores = _metric_text(result, "test") or _metric_text(result, "dev")
        log.info("%s: %s in %.0f s%s %s", trial_name(trial), what, seconds, f", {scores}" if scores else "",
                 self._counts(trials, trial, "TERMINATED"))

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        """Log the compact status table of this Tune run's trials."""
        for line in status_table(trials):
            log.info("%s", line)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """Log that `trial` errored, and where its error is written."""
        log.warning("%s: errored (see %s/error.txt) %s", trial_name(trial), getattr(trial, "path", "?"),
                    self._counts(trials, trial, "ERROR"))


def status_table(trials: list, rows: int = 10) -> list[str]:
    """Return the lines of a compact table of `trials`: folder, status, meta steps, dev and test averages; the `rows`
    best on dev when there are more, then how many were left out."""
    def key(t: Any) -> float:
        found = _ranking_metric(t.last_result or {}, "dev")
        return -found[1] if found else float("inf")

    shown = sorted(trials, key=key)[:rows]
    names = [trial_name(t) for t in shown]
    width = max([len(n) for n in names] + [5])
    out = [f"{'trial':<{width}}  {'status':<10} {'steps':>7} {'dev avg':>8} {'test avg':>8}"]
    for name, t in zip(names, shown):
        r = t.last_result or {}
        steps = r.get("meta/steps")
        dev, test = (None if (m := _ranking_metric(r, split)) is None else m[1] for split in ("dev", "test"))
        status = {"TERMINATED": "paused" if r.get("rung/paused") else "done", "ERROR": "errored"}.get(
            t.status, t.status.lower())
        out.append(f"{name:<{width}}  {status:<10} {steps if steps is not None else '-':>7} "
                   f"{f'{dev:.3f}' if dev is not None else '-':>8} {f'{test:.3f}' if test is not None else '-':>8}")
    if len(trials) > rows:
        out.append(f"... and {len(trials) - rows} more trials")
    return out
