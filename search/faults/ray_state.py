"""Ray's own experiment state (tuner.pkl, experiment_state-*.json, the searcher's state) is pickled: loading it runs
whatever code a writer of the storage put there. A grid or adaptive sweep never loads it (their resumes work from
the project's records and the trial folders). An Optuna sweep's resume needs it (the study and ASHA's rungs), so it
is loaded only after its integrity is proven: when Tune stops, the driver seals the state files, their sha256 under
an HMAC whose key never leaves this user's cache (`xlamaml_ray_state.json`); a resume checks every file against that
seal first. A storage writer can change the files and the seal, but cannot forge the HMAC.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path

from xlamaml.experiment import storage
from xlamaml.trainables.errors import XlamamlError
from xlamaml.trainables.paths import cache_dir

SEAL_FILE = "xlamaml_ray_state.json"


class UnsealedStateError(XlamamlError):
    """Ray's saved state of a sweep that this driver did not seal, or that changed since: it is not loaded."""


def _key() -> bytes:
    """Return this user's sealing key (made once, readable by the owner alone)."""
    path = cache_dir() / "driver.key"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(32))
    return Path(path).read_bytes()


def state_files(exp: str) -> list[str]:
    """Return the names of Ray's state files directly in the experiment `exp` (every top-level file that is not one
    of the project's own records or a set-aside copy)."""
    return sorted(n for n in storage.list_files(exp) if "/" not in n and not n.startswith(("xlamaml_", ".")))


def _digests(exp: str, names: list[str]) -> dict[str, str]:
    return {n: hashlib.sha256(storage.read_bytes(storage.join(exp, n))).hexdigest() for n in names}


def _mac(digests: dict[str, str]) -> str:
    return hmac.new(_key(), json.dumps(digests, sort_keys=True).encode(), hashlib.sha256).hexdigest()


def seal(exp: str) -> None:
    """Record the sha256 of Ray's state files of `exp` under this driver's HMAC; return None."""
    digests = _digests(exp, state_files(exp))
    storage.write_bytes(storage.join(exp, SEAL_FILE),
                        json.dumps({"files": digests, "hmac": _mac(digests)}, indent=1).encode())


def check_sealed(exp: str) -> None:
    """Return None when Ray's state files of `exp` are exactly those this driver sealed; else raise
    UnsealedStateError naming what differs (nothing is loaded)."""
    location = storage.join(exp, SEAL_FILE)
    advice = ("Ray's state is not loaded (loading it runs code); start the search again under another --name, or "
              "analyze what finished")
    if not storage.exists(location):
        raise UnsealedStateError(f"{exp}: Ray's saved state was not sealed by a driver that stopped cleanly (killed, "
                                 f"or a disk that filled); {advice}")
    try:
        seal_ = json.loads(storage.read_bytes(location))
        recorded, mac = dict(seal_["files"]), str(seal_["hmac"])
    except (ValueError, KeyError, TypeError):
        raise UnsealedStateError(f"{location}: not a seal; {advice}") from None
    if not hmac.compare_digest(mac, _mac(recorded)):
        raise UnsealedStateError(f"{location}: sealed by another driver (another user or machine) or changed; "
                                 f"{advice}")
    found = _digests(exp, state_files(exp))
    changed = sorted(n for n in set(found) | set(recorded) if found.get(n) != recorded.get(n))
    if changed:
        raise UnsealedStateError(f"{exp}: Ray's state file {changed[0]} differs from the sealed one "
                                 f"({len(changed)} file(s) differ); {advice}")
