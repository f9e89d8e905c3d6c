"""Checkpoint files: whole-or-nothing writes, weights-only reads that refuse code, and the trial's fallback to an
earlier checkpoint (or the base) when the newest one is cut short. No Ray cluster: the Trainable runs in-process."""

import json
import logging
import os
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import pytest
import torch

from xlamaml.experiment.checkpoints import (CHECKPOINT_FILE, CheckpointError, other_checkpoints, read_state, write_iteration,
                                    write_state)
from xlamaml.search.trainable import XlaMamlTrainable


class Payload:
    """What an attacker who can write the experiment's storage would put in a checkpoint: code run on unpickling."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_carrying_a_pickled_callable_is_refused_in_one_line(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / CHECKPOINT_FILE
    torch.save({"rng": torch.get_rng_state(), "iteration": Payload(marker)}, path)
    with pytest.raises(CheckpointError) as raised:
        read_state(path)
    message = str(raised.value)
    assert len(message.splitlines()) == 1 and str(path) in message and "refused" in message
    assert not marker.exists()  # nothing ran


def test_a_cut_or_empty_checkpoint_is_one_line_naming_the_file(tmp_path):
    whole = tmp_path / "whole.pt"
    write_state({"rng": torch.get_rng_state(), "weights": {"w": torch.ones(2000)}}, whole)
    assert read_state(whole)["weights"]["w"].sum() == 2000
    for name, data in (("cut.pt", whole.read_bytes()[:1024]), ("empty.pt", b"")):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(CheckpointError, match=f"{tmp_path / name}: unreadable, cut short") as raised:
            read_state(tmp_path / name)
        assert len(str(raised.value).splitlines()) == 1


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / CHECKPOINT_FILE
    write_state({"rng": torch.get_rng_state(), "iteration": 1}, path)
    with pytest.raises(Exception):
        write_state({"rng": torch.get_rng_state(), "bad": lambda: 0}, path)  # a lambda cannot be pickled
    assert read_state(path)["iteration"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT_FILE]


class Counter(XlaMamlTrainable):
    """The Trainable's restore logic around a state of one number (no model, no data)."""

    def setup(self, config: dict[str, Any]) -> None:
        self.count = 0

    def step(self) -> dict[str, Any]:
        self.count += 1
        return {"count": self.count}

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        write_state({"rng": torch.get_rng_state(), "iteration": self.iteration, "count": self.count},
                    os.path.join(checkpoint_dir, CHECKPOINT_FILE))

    def load_checkpoint(self, checkpoint_dir: str) -> None:
        state = read_state(os.path.join(checkpoint_dir, CHECKPOINT_FILE))
        self._iteration, self.count = state["iteration"], state["count"]


def checkpoints(tmp_path: Path, counts: list[int]) -> list[Path]:
    """Return checkpoint folders `checkpoint_00000i` holding the given counts (iteration = count)."""
    out = []
    for i, count in enumerate(counts):
        folder = tmp_path / "trial" / f"checkpoint_{i:06d}"
        folder.mkdir(parents=True)
        write_state({"rng": torch.get_rng_state(), "iteration": count, "count": count}, folder / CHECKPOINT_FILE)
        out.append(folder)
    return out


def test_a_cut_newest_checkpoint_restores_the_one_before_with_one_warning(tmp_path, caplog):
    older, newest = checkpoints(tmp_path, [2, 4])
    (newest / CHECKPOINT_FILE).write_bytes((newest / CHECKPOINT_FILE).read_bytes()[:1024])
    assert other_checkpoints(pafs.LocalFileSystem(), str(newest)) == [str(older)]
    trainable = Counter(config={})
    with caplog.at_level(logging.WARNING, logger="xlamaml"):
        trainable.restore(str(newest))
    assert trainable.count == 2 and trainable.iteration == 2
    lines = [r.getMessage() for r in caplog.records]
    assert any(str(newest / CHECKPOINT_FILE) in line and "cut short" in line for line in lines)
    assert any(str(older) in line and "earlier checkpoint" in line for line in lines)
    trainable.stop()


def test_no_readable_checkpoint_starts_again_from_the_base(tmp_path, caplog):
    (only,) = checkpoints(tmp_path, [3])
    (only / CHECKPOINT_FILE).write_bytes(b"")
    trainable = Counter(config={})
    with caplog.at_level(logging.WARNING, logger="xlamaml"):
        trainable.restore(str(only))
    assert trainable.count == 0 and trainable.iteration == 0
    assert any("starting again from the base checkpoint" in r.getMessage() for r in caplog.records)
    assert trainable.train()["count"] == 1
    trainable.stop()


def test_a_rebuilt_trial_continues_from_the_newest_readable_checkpoint_of_its_folder(tmp_path, caplog):
    older, newest = checkpoints(tmp_path, [2, 4])
    (newest / CHECKPOINT_FILE).write_bytes(b"")
    trainable = Counter(config={})
    with caplog.at_level(logging.WARNING, logger="xlamaml"):
        trainable.continue_from(str(tmp_path / "trial"))
    assert trainable.count == 2 and trainable.iteration == 2
    assert trainable.train()["training_iteration"] == 3
    trainable.stop()


def test_a_rebuilt_trial_skips_a_checkpoint_newer_than_its_kept_reports(tmp_path):
    older, newest = checkpoints(tmp_path, [2, 4])
    write_iteration(older, 2)
    write_iteration(newest, 4)  # stored before the report of iteration 4 reached the storage
    (tmp_path / "trial" / "result.json").write_text("".join(
        json.dumps({"training_iteration": i}) + "\n" for i in (1, 2, 3)) + '{"training_iter')
    trainable = Counter(config={})
    trainable.continue_from(str(tmp_path / "trial"))
    assert trainable.count == 2 and trainable.iteration == 2
    trainable.stop()
