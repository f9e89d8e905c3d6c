"""Ctrl-C (SIGINT) or SIGTERM during a sweep: the trials' state is saved and the sweep ends with the exit status shells
expect (130, 143) and one line giving the exact resume command, so `xlamaml sweep ... && xlamaml analyze ...` stops.

Ray Tune stops a run gracefully on SIGINT or SIGUSR1 (the last state saved, then `fit` returns as if it had
finished). Its own SIGINT handler is turned off here (TUNE_DISABLE_SIGINT_HANDLER) so that this module sees every
signal: while Tune runs, the first SIGINT or SIGTERM is passed on as SIGUSR1 (Tune's graceful stop) and remembered;
when `fit` returns, the sweep raises `Interrupted` instead of going on (an adaptive sweep never decides on a rung
that was cut short). Outside Tune (assets, the English stage) or on a second signal, the process stops at once, as
Python does on Ctrl-C. The resume reruns what was interrupted.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Iterator

from xlamaml.trainables.errors import XlamamlError

EXIT_STATUS = {signal.SIGINT: 130, signal.SIGTERM: 143}  # 128 + the signal, as shells report it


class Interrupted(XlamamlError):
    """A sweep stopped by SIGINT or SIGTERM, its state saved; `exit_status` is what the command line returns."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_status = EXIT_STATUS.get(signal.Signals(signum), 128 + int(signum))


class SignalWatch:
    """The signals a sweep received, and whether Ray Tune is running (a stop is then passed on to it)."""

    def __init__(self) -> None:
        self.received: list[int] = []
        self.tuning = False
        self.signals: tuple[int, ...] = ()  # those this watch handles (not the ones the process ignores)

    def handle(self, signum: int, frame: object) -> None:
        """Remember `signum`; pass the first to Tune as its graceful stop, else stop at once."""
        self.received.append(signum)
        if self.tuning and len(self.received) == 1:
            os.kill(os.getpid(), signal.SIGUSR1)  # Tune: save the state, end the run, return from fit
            return
        if signum == signal.SIGTERM:
            raise SystemExit(EXIT_STATUS[signal.SIGTERM])
        raise KeyboardInterrupt

    @contextlib.contextmanager
    def tuning_run(self) -> Iterator[None]:
        """Mark the block as Tune's run: a signal there stops Tune gracefully."""
        if threading.current_thread() is threading.main_thread():
            # Again: `ray.init` installs its own SIGTERM handler (it ends the driver at once, without a state).
            for s in self.signals:
                signal.signal(s, self.handle)
        self.tuning = True
        try:
            yield
        finally:
            self.tuning = False

    def check(self, exp: str, resume_command: str) -> None:
        """Return None when no signal arrived; else raise Interrupted with the resume command."""
        if self.received:
            name = signal.Signals(self.received[0]).name
            raise Interrupted(f"sweep {exp}: interrupted ({name}); the trials' state is saved: resume with "
                              f"`{resume_command}`", self.received[0])


@contextlib.contextmanager
def watching_signals() -> Iterator[SignalWatch]:
    """Yield a SignalWatch handling SIGINT and SIGTERM for the block (the main thread only; elsewhere nothing
    changes), with Tune's own SIGINT handler off; the previous handlers come back after."""
    watch = SignalWatch()
    if threading.current_thread() is not threading.main_thread():
        yield watch
        return
    # A signal the process was started ignoring (nohup, a background job) stays ignored.
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)
                if signal.getsignal(s) is not signal.SIG_IGN}
    tune_handler = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    watch.signals = tuple(previous)
    for s in previous:
        signal.signal(s, watch.handle)
    try:
        yield watch
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if tune_handler is None:
            os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
        else:
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = tune_handler
