"""A full disk is a clear stop: free space checked against what a sweep will write before launch, and a trial that
meets ENOSPC (on the storage or the node-local cache) ends the sweep with one line naming the path and `--resume`.

Ray stops the way Ctrl+C does (SIGUSR1, Ray Tune's own graceful stop): unfinished trials stay unfinished in its
state, so `xlamaml sweep --resume` continues them from their checkpoints once space is freed. Ray's own tracebacks
about the full disk (a trial's error, its cut `error.pkl`, a failed state snapshot) are held back: the one line says
it all.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import signal
from pathlib import Path
from typing import Any, Iterator

from ray import tune

from xlamaml.experiment import storage
from xlamaml.experiment.storage import StorageFullError
from xlamaml.trainables.paths import cache_dir

log = logging.getLogger("xlamaml")
FULL_MARKERS = ("No space left on device", "ENOSPC", "[Errno 28]", "errno 28", "Disk quota exceeded")
TRIAL_OVERHEAD = 1 << 20  # a trial's reports, predictions and per-item outcomes, beyond its checkpoints (bytes)


def free_bytes(location: str | Path) -> int | None:
    """Return the bytes free to this user at the local folder `location` (its nearest existing parent), or None for
    an object store (it does not tell)."""
    if storage.is_uri(str(location)):
        return None
    path = Path(storage.normalize(str(location)))
    while not path.exists() and path != path.parent:
        path = path.parent
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def needed_bytes(trials: int, running: int, checkpoint_bytes: int, keep: int, keep_final: bool = False) -> int:
    """Return the most bytes `trials` trials, `running` at once, hold on the storage: `keep` checkpoints (plus the one
    being written) of each running trial, the reports and predictions of every trial, and every finished trial's
    weights when `keep_final` (else a finished trial keeps only its final report)."""
    held = running * (keep + 1) * checkpoint_bytes
    return held + trials * (TRIAL_OVERHEAD + (checkpoint_bytes if keep_final else 0))


def check_free_space(location: str, need: int, what: str) -> None:
    """Return None when `location` has `need` bytes free (or cannot tell); else raise StorageFullError naming it."""
    free = free_bytes(location)
    if free is not None and free < need:
        raise StorageFullError(f"{location}: {free / 1e6:.1f} MB free, {what} needs about {need / 1e6:.1f} MB; free "
                               f"space or choose another --storage (or pass --force to start anyway)")


def is_full_error(text: str) -> bool:
    """Return whether an error's text says a disk or quota is full."""
    return any(marker.lower() in text.lower() for marker in FULL_MARKERS)


def full_line(text: str) -> str:
    """Return the last line of an error's text that says a disk is full, shortened (what was being written where)."""
    lines = [line.strip() for line in text.splitlines() if is_full_error(line)]
    line = lines[-1] if lines else "No space left on device"
    line = re.sub(r"^[\w.]+(Error|Exception): ", "", line)
    return line[:300]


# exp -> the error line that stopped it: the callback is pickled with the Tuner (and unpickled by a resume), so what
# it saw is kept here, where `run_sweep` reads it.
_STOPPED: dict[str, str] = {}
RAY_LOGGERS = ("ray.tune", "ray.tune.tune", "ray.tune.execution.tune_controller", "ray.tune.experiment.trial",
               "ray.tune.execution.experiment_state", "ray.train", "ray.tune.result_grid",
               "ray.tune.analysis.experiment_analysis")


class FullStorageStop(tune.Callback):
    """A Tune callback that, when a trial fails for want of space, stops the sweep gracefully (resumable) once and
    remembers what was being written (`stopped`)."""

    def __init__(self, exp: str) -> None:
        self.exp = exp

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """Stop the sweep when `trial` failed for want of space (it would only fail again)."""
        self._check(trial)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """Stop the sweep when `trial` failed for want of space."""
        self._check(trial)

    def _check(self, trial: Any) -> None:
        text = _error_text(trial)
        if self.exp in _STOPPED or not (is_full_error(text) or storage_is_full(self.exp)):
            return
        _STOPPED[self.exp] = f"{full_line(text) if is_full_error(text) else 'no space left'}; trial {trial}"
        log.warning("sweep %s: trial %s failed for want of space; stopping the sweep (resumable)", self.exp, trial)
        if callable(signal.getsignal(signal.SIGUSR1)):  # Ray Tune's own handler (a driver in the main thread)
            os.kill(os.getpid(), signal.SIGUSR1)  # its graceful stop, as Ctrl+C: unfinished trials stay resumable


def storage_is_full(exp: str) -> bool:
    """Return whether the experiment's storage or the node-local cache has (almost) no space left."""
    for where in (exp, str(cache_dir())):
        free = free_bytes(where)
        if free is not None and free < 64 * 1024:
            return True
    return False


def stopped(exp: str) -> str | None:
    """Return what stopped the sweep `exp` for want of space (the error line and the trial), or None."""
    return _STOPPED.get(exp)


@contextlib.contextmanager
def watching(exp: str) -> Iterator[None]:
    """Run a block (the Tune phase of `exp`) with Ray's log records about a full disk held back."""
    _STOPPED.pop(exp, None)
    quiet = _QuietWhenFull(exp)
    # Ray's loggers, and the handlers Ray hangs on its "ray" logger (they see every ray.* record that propagates).
    filtered = [logging.getLogger(name) for name in RAY_LOGGERS] + list(logging.getLogger("ray").handlers)
    for each in filtered:
        each.addFilter(quiet)
    try:
        yield
    finally:
        for each in filtered:
            each.removeFilter(quiet)


def full_error(exp: str, name: str, detail: str) -> StorageFullError:
    """Return the one-line error that ends a sweep stopped for want of space."""
    return StorageFullError(f"sweep {exp}: storage full ({detail}); free space on the storage and the node cache "
                            f"({cache_dir()}), then run `xlamaml sweep --resume --name {name}`")


class _QuietWhenFull(logging.Filter):
    """Drops Ray's log records about the full disk (and their tracebacks), and its errors once the sweep stops for
    one."""

    def __init__(self, exp: str) -> None:
        super().__init__()
        self.exp = exp

    def filter(self, record: logging.LogRecord) -> bool:
        """Return False for a record about a full disk, or any warning or error once the sweep stops for one."""
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            text += " " + str(record.exc_info[1])
        if is_full_error(text):
            return False
        return not (self.exp in _STOPPED and record.levelno >= logging.WARNING)


def _error_text(trial: Any) -> str:
    """Return the text of a failed trial's error.txt (empty when it cannot be read: the disk may be full)."""
    try:
        path = trial.error_file
        return Path(path).read_text(errors="replace")[-20000:] if path else ""
    except OSError:
        return ""


def is_full_exception(e: BaseException) -> bool:
    """Return whether `e` (or an exception it was raised from) says a disk is full."""
    seen = 0
    while e is not None and seen < 10:
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if is_full_error(str(e)):
            return True
        e, seen = (e.__cause__ or e.__context__), seen + 1
    return False
