"""No code runs from an experiment's files: a pickle planted in Ray's state files is never loaded by a grid resume
(rebuilt from the project's records), and an Optuna resume loads Ray's state only when it matches this driver's
seal (HMAC under a key in the user's cache)."""

import binascii
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

from xlamaml.search.faults.ray_state import SEAL_FILE


class Payload:
    """Unpickling this runs `touch MARKER`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def cli(*args: str, storage: Path) -> subprocess.CompletedProcess:
    """Return how `xlamaml -q sweep ...` ended."""
    return subprocess.run([sys.executable, "-m", "xlamaml.cli", "-q", "sweep", *args, "--storage", str(storage)],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def plant(exp: Path, marker: Path) -> list[str]:
    """Write a payload pickle into every Ray state file of `exp`; return their names."""
    hexed = binascii.b2a_hex(pickle.dumps(Payload(marker))).decode()
    names = []
    for path in sorted(exp.iterdir()):
        if path.is_file() and not path.name.startswith(("xlamaml_", ".")):
            if path.suffix == ".pkl":
                path.write_bytes(pickle.dumps(Payload(marker)))
            else:  # Ray's JSON state holds cloudpickled objects as hex strings
                path.write_text(json.dumps({"trial_data": [[hexed, hexed]], "runner_data": {"_search_alg": hexed},
                                            "stats": hexed}))
            names.append(path.name)
    return names


def test_a_grid_resume_never_loads_rays_state(tmp_path, cache):
    storage, marker = tmp_path / "runs", tmp_path / "MARKER"
    assert cli("--preset", "smoke", "--name", "grid", storage=storage).returncode == 0
    exp = storage / "grid"
    assert {"tuner.pkl"} <= set(plant(exp, marker))
    # One meta trial loses its final report: the resume must really run trials again.
    trial = next(t for t in exp.iterdir() if t.name.startswith("xla-maml"))
    lines = (trial / "result.json").read_text().splitlines()
    (trial / "result.json").write_text("\n".join(lines[:-1]) + "\n")
    resumed = cli("--resume", "--name", "grid", storage=storage)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert not marker.exists()
    last = json.loads((trial / "result.json").read_text().splitlines()[-1])
    assert last.get("done") and "test/en/acc" in last


def test_an_optuna_resume_loads_only_the_state_this_driver_sealed(tmp_path, cache):
    storage, marker = tmp_path / "runs", tmp_path / "MARKER"
    search = ["--preset", "smoke", "--set", "sweep.mode=optuna", "--set", "sweep.num_samples=2",
              "--set", "sweep.space={meta.inner_lr: {loguniform: [1.0e-5, 1.0e-2]}}"]
    assert cli(*search, "--name", "opt", storage=storage).returncode == 0
    exp = storage / "opt"
    assert (exp / SEAL_FILE).is_file()
    assert cli("--resume", "--name", "opt", storage=storage).returncode == 0  # sealed: restored, nothing left to run
    seal = (exp / SEAL_FILE).read_text()
    plant(exp, marker)
    refused = cli("--resume", "--name", "opt", storage=storage)
    assert refused.returncode == 2 and not marker.exists()
    errors = [line for line in refused.stderr.splitlines() if line.startswith("xlamaml: error:")]
    assert len(errors) == 1 and "differs from the sealed one" in errors[0] and "not loaded" in errors[0]
    # A writer of the storage can also rewrite the seal, but not its HMAC.
    forged = json.loads(seal)
    forged["files"] = {name: "0" * 64 for name in forged["files"]}
    (exp / SEAL_FILE).write_text(json.dumps(forged))
    refused = cli("--resume", "--name", "opt", storage=storage)
    assert refused.returncode == 2 and not marker.exists() and "sealed by another driver" in refused.stderr
