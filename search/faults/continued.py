"""A trial that continues in its own folder: a rebuilt grid run's unfinished trial (search/faults/rebuild.py) or an
adaptive sweep's trial in a later rung (search/adaptive/driver.py). Its checkpoints and result.json are moved to
`<trial>/previous/` first, so Ray's numbering of the new checkpoints cannot mix with the old ones; the Trainable
restores the newest readable one (`resume_from`, XlaMamlTrainable.continue_from) and `SeedReports` copies the old
reports back in front of the new ones. Ray keeps its own PAUSE inside its scheduler; this project keeps it here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ray import tune

from xlamaml.experiment import storage
from xlamaml.experiment.checkpoints import checkpoint_iteration
from xlamaml.experiment.reports import RESULT_FILE, last_reported_iteration, parse_report
from xlamaml.trainables.assignment import flat_trial
from xlamaml.trainables.local_files import write_text_whole

PREVIOUS = "previous"  # a continued trial's checkpoints and reports from before it continued


def has_state(exp: str, folder: str) -> bool:
    """Return whether the trial folder holds anything to continue from (checkpoints, set-aside ones, reports)."""
    trial = storage.join(exp, folder)
    return storage.exists(trial) and (
        any(f.startswith("checkpoint_") or f == PREVIOUS for f in storage.list_folders(trial))
        or storage.exists(storage.join(trial, RESULT_FILE)))


def set_aside(exp: str, folder: str) -> str:
    """Return `<trial>/previous` after moving the trial's checkpoints there (replacing older ones) and its result.json
    (a superset of the one there); each move can be repeated after a crash without losing the newest state."""
    trial = storage.join(exp, folder)
    target = storage.join(trial, PREVIOUS)
    fs, _ = storage.filesystem(trial)
    fs.create_dir(storage.filesystem(target)[1], recursive=True)
    fresh = [f for f in storage.list_folders(trial) if f.startswith("checkpoint_")]
    # Ray stores a checkpoint at once but copies result.json later: a checkpoint newer than the last report the
    # storage holds cannot be continued from (its reports are lost), so it must not replace the older ones.
    last = last_reported_iteration(storage.join(trial, RESULT_FILE))
    # A checkpoint that does not say its iteration (one Ray wrote before iteration files were kept) is left to the
    # Trainable's restore, which reads it or falls back.
    iterations = {f: checkpoint_iteration(fs, storage.filesystem(storage.join(trial, f))[1]) for f in fresh}
    usable = [f for f in fresh if iterations[f] is None or iterations[f] <= last]
    for name in (f for f in fresh if f not in usable):
        fs.delete_dir(storage.filesystem(storage.join(trial, name))[1])
    fresh = usable
    if fresh:  # newer than those set aside before (a rung ended, or a crash mid-rung after new checkpoints)
        for old in storage.list_folders(target):
            if old.startswith("checkpoint_"):
                fs.delete_dir(storage.filesystem(storage.join(target, old))[1])
        for name in fresh:
            storage.move(storage.join(trial, name), storage.join(target, name))
    if storage.exists(storage.join(trial, RESULT_FILE)):
        storage.move(storage.join(trial, RESULT_FILE), storage.join(target, RESULT_FILE))
    trim_reports(target)
    return target


def trim_reports(folder: str) -> None:
    """Drop from `folder`'s result.json the reports newer than its newest checkpoint: the trial continues from that
    checkpoint and reports those iterations again (kept, they would appear twice); return None."""
    location = storage.join(folder, RESULT_FILE)
    if not storage.exists(location):
        return
    fs, _ = storage.filesystem(folder)
    found = [checkpoint_iteration(fs, storage.filesystem(storage.join(folder, f))[1])
             for f in storage.list_folders(folder) if f.startswith("checkpoint_")]
    if None in found:  # a checkpoint that does not say its iteration: nothing to trim by
        return
    newest = max(found, default=0)  # no checkpoint: the trial starts again from the base, numbering from 1
    lines = storage.read_bytes(location).decode("utf-8", "replace").splitlines()
    kept = [line for line in lines if (parse_report(line) or {}).get("training_iteration", newest + 1) <= newest]
    if len(kept) != len(lines):
        storage.write_bytes(location, "".join(line + "\n" for line in kept).encode())


class SeedReports(tune.Callback):
    """Starts a rebuilt run's trial with the reports it made before the rebuild: Ray begins a trial it never
    checkpointed with an empty result.json (which its sync then writes over the old one), so they are copied back
    into Ray's own copy before its logger opens it to append."""

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """Copy `<resume_from>/result.json` into the trial's result.json when Ray's copy is still empty."""
        previous = flat_trial(trial.config).get("resume_from")
        if not previous or not storage.exists(storage.join(str(previous), RESULT_FILE)):
            return
        trial.init_local_path()
        local = Path(trial.local_path, RESULT_FILE)
        if not local.is_file() or local.stat().st_size == 0:
            write_text_whole(local, storage.read_bytes(storage.join(str(previous), RESULT_FILE)).decode())
