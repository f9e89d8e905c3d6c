"""Trackers: a sweep's trials reach a real MLflow store (SQLite, offline) and W&B's offline mode, one run per trial
with its metrics, tagged with its assignment and seed; a tracker not installed is one line before anything runs."""

import os
import subprocess
import sys

import pytest

from xlamaml.cli import preset_path
from xlamaml.search.spec import load_sweep
from xlamaml.search.tracking import check_installed, run_tags
from xlamaml.trainables.errors import ConfigError


def sweep(tmp_path, tracker, env):
    """Run the smoke sweep with `tracker` in a child process (its own Ray, its own environment)."""
    done = subprocess.run([sys.executable, "-m", "xlamaml.cli", "-q", "sweep", "--preset", "smoke", "--storage",
                           str(tmp_path / "runs"), "--name", f"tracked-{tracker}", "--set",
                           f"sweep.tracking=[{tracker}]", "--set", "sweep.tracking_project=smoke-tracked"],
                          capture_output=True, text=True, timeout=400, env={**os.environ, **env})
    assert done.returncode == 0, done.stderr[-3000:]


def test_an_mlflow_store_gets_one_run_per_trial_with_its_metrics_and_tags(tmp_path, cache):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sweep(tmp_path, "mlflow", {"MLFLOW_TRACKING_URI": uri})
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["smoke-tracked"], output_format="list")
    assert len(runs) == 3
    assert {(r.data.tags["assignment"], r.data.tags["seed"]) for r in runs} == {
        ("baseline", "0"), ("x-maml:hi", "0"), ("xla-maml:en>hi", "0")}
    for r in runs:
        assert 0 <= r.data.metrics["test/avg/acc"] <= 1 and "dev/hi/acc" in r.data.metrics


def wandb_records(path):
    """Return the protobuf records of an offline W&B run file (a LevelDB-style log: a 7-byte header, then 32 KiB
    blocks of records, each with a 7-byte header: crc, length, type full/first/middle/last)."""
    import struct

    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, out, part = 7, [], b""
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # a block's tail too short for a header is padding
            pos += 32768 - pos % 32768
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if length == 0 and kind == 0:
            break
        part += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # full, or the last part
            record = wandb_internal_pb2.Record()
            record.ParseFromString(part)
            out.append(record)
            part = b""
    return out


@pytest.mark.slow  # about 20 s: a smoke sweep with W&B offline
def test_wandb_offline_writes_one_run_per_trial_with_its_metrics_and_tags(tmp_path, cache):
    sweep(tmp_path, "wandb", {"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path), "WANDB_SILENT": "true"})
    found = sorted((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(found) == 3, found
    tags = set()
    for path in found:
        records = wandb_records(path)
        tags.add(tuple(next(r.run.tags for r in records if r.WhichOneof("record_type") == "run")))
        logged = {i.key or "/".join(i.nested_key) for r in records if r.WhichOneof("record_type") == "history"
                  for i in r.history.item}
        assert {"test/avg/acc", "dev/hi/acc"} <= logged, path
    assert tags == {("assignment:baseline", "seed:0"), ("assignment:x-maml:hi", "seed:0"),
                    ("assignment:xla-maml:en>hi", "seed:0")}


def test_tags_and_a_missing_tracker_are_checked(monkeypatch):
    assert run_tags({"trial": {"assignment": "xla-maml:en>hi", "seed": 3}}) == {"assignment": "xla-maml:en>hi",
                                                                                "seed": "3"}
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match=r"sweep.tracking: mlflow is not installed; expected `pip install "
                                          r"'xlamaml\[mlflow\]'`"):
        check_installed(["mlflow"])
    with pytest.raises(ConfigError, match="sweep.tracking: expected trackers among mlflow, wandb"):
        load_sweep(preset_path("smoke"), ["sweep.tracking=[neptune]"])
