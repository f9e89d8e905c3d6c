"""One sweep per experiment at a time: a lease file in the experiment (`xlamaml_lock.json`) naming its owner (host,
user, process) and renewed by a heartbeat while the sweep runs.

Object stores offer no lock and pyarrow no conditional write, so the lease is taken by write-then-confirm: a driver
that finds no live lease writes one with a token of its own, waits `SETTLE_S`, and reads it back; of two drivers
that started together only the last writer reads its own token, and the other refuses. A lease whose heartbeat is
older than `STALE_S` belongs to a driver that died: `--resume` takes it over with one warning line naming the old
owner; a second driver while the owner lives is refused in one line naming it.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import secrets
import socket
import threading
import time
from typing import Any

from xlamaml.experiment import storage
from xlamaml.trainables.errors import XlamamlError

log = logging.getLogger("xlamaml")
LOCK_FILE = "xlamaml_lock.json"
HEARTBEAT_S = 30.0
STALE_S = 180.0  # six missed heartbeats: the owner is gone
SETTLE_S = 2.0


class ExperimentLocked(XlamamlError):
    """Another driver holds the experiment's lease."""


def _owner() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()} pid {os.getpid()}"


def read_lease(exp: str) -> dict[str, Any] | None:
    """Return the experiment's lease ({"owner", "token", "heartbeat"}), or None when there is none (or it is not
    readable as one)."""
    location = storage.join(exp, LOCK_FILE)
    if not storage.exists(location):
        return None
    try:
        lease = json.loads(storage.read_bytes(location))
        return lease if isinstance(lease, dict) and "token" in lease else None
    except ValueError:
        return None


class Lease:
    """This driver's lease on an experiment, renewed by a heartbeat thread until `release`."""

    def __init__(self, exp: str, token: str) -> None:
        self.exp, self.token = exp, token
        self.owner = _owner()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="xlamaml-lease", daemon=True)

    def _write(self) -> None:
        storage.write_bytes(storage.join(self.exp, LOCK_FILE), json.dumps(
            {"owner": self.owner, "host": socket.gethostname(), "pid": os.getpid(), "token": self.token,
             "heartbeat": time.time()}).encode())

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                lease = read_lease(self.exp)
                if lease is not None and lease.get("token") != self.token:
                    log.warning("sweep %s: another driver took the lease (%s)", self.exp, lease.get("owner"))
                    return
                self._write()
            except XlamamlError as e:  # a passing storage fault: the next beat tries again
                log.warning("sweep %s: lease heartbeat: %s", self.exp, e)

    def release(self) -> None:
        """Stop the heartbeat and remove the lease when it is still this driver's; return None."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        lease = read_lease(self.exp)
        if lease is not None and lease.get("token") == self.token:
            fs, path = storage.filesystem(storage.join(self.exp, LOCK_FILE))
            fs.delete_file(path)


def _gone(lease: dict[str, Any]) -> bool:
    """Return whether the lease's owner was a process of this machine that no longer runs (killed: its lease need
    not wait to go stale)."""
    if lease.get("host") != socket.gethostname() or not isinstance(lease.get("pid"), int):
        return False
    try:
        os.kill(lease["pid"], 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive, another user's
        return False
    return False


def acquire(exp: str, resume: bool, settle: float | None = None) -> Lease:
    """Return this driver's lease on `exp`, its heartbeat started; raise ExperimentLocked naming the owner when a
    live driver holds it (a dead one's lease is taken over by a resume, with one warning line)."""
    held = read_lease(exp)
    if held is not None:
        age = time.time() - float(held.get("heartbeat", 0))
        if age < STALE_S and not _gone(held):
            raise ExperimentLocked(f"{exp}: a sweep is running here ({held.get('owner')}, last heartbeat "
                                   f"{age:.0f} s ago); expected one driver per experiment: wait for it, or stop it")
        if not resume:
            raise ExperimentLocked(f"{exp}: a sweep held this experiment ({held.get('owner')}) and stopped "
                                   f"{age:.0f} s ago; continue it with --resume")
        log.warning("sweep %s: taking over the lease of %s (stopped %.0f s ago)", exp, held.get("owner"), age)
    lease = Lease(exp, secrets.token_hex(16))
    lease._write()
    # Local renames are seen at once; an object store's writes by two drivers need a moment to settle.
    time.sleep(settle if settle is not None else SETTLE_S if storage.is_uri(exp) else 0.2)  # a driver that started at the same moment writes within this time
    now = read_lease(exp)
    if now is None or now.get("token") != lease.token:
        raise ExperimentLocked(f"{exp}: another driver ({(now or {}).get('owner', 'unknown')}) started on this "
                               f"experiment at the same time; expected one driver per experiment")
    lease._thread.start()
    return lease
