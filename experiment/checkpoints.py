"""A trial's checkpoint file: written whole or not at all, read as tensors and plain values only (never code), and the
other checkpoints of a trial to fall back on when the newest one cannot be read.

Ray copies a checkpoint folder to the storage file by file, so a full disk, a preempted node or a SIGKILL can leave
the newest `trial.pt` cut short; a shared bucket may hold a file someone else wrote. `read_state` refuses both with
one line naming the file (`CheckpointError`), and `other_checkpoints` lists what the trial can restore instead.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import torch

from xlamaml.trainables.errors import XlamamlError
from xlamaml.trainables.local_files import replacing, write_text_whole

CHECKPOINT_FILE = "trial.pt"
ITERATION_FILE = "iteration.txt"  # beside it: the iteration it holds, read without loading the checkpoint


class CheckpointError(XlamamlError, OSError):
    """A checkpoint file that cannot be read (cut short, damaged) or is refused (it holds code, not tensors)."""


def write_state(state: dict[str, Any], path: str | Path) -> None:
    """Write `state` to `path` whole or not at all (a temporary name beside it, then a rename); return None."""
    with replacing(path) as tmp:
        torch.save(state, tmp)


def write_iteration(folder: str | Path, iteration: int) -> None:
    """Write the iteration a checkpoint folder holds beside its checkpoint file; return None."""
    write_text_whole(Path(folder, ITERATION_FILE), f"{int(iteration)}\n")


def checkpoint_iteration(fs: pafs.FileSystem, folder: str) -> int | None:
    """Return the iteration the checkpoint folder `folder` holds, or None when it does not say (or cannot be read)."""
    try:
        with fs.open_input_stream(f"{folder.rstrip('/')}/{ITERATION_FILE}") as f:
            return int(f.read().decode().strip())
    except (OSError, ValueError):
        return None


def read_state(path: str | Path) -> dict[str, Any]:
    """Return the state a checkpoint file holds (tensors and plain values only: loading runs no code); raise
    CheckpointError naming the file when it is cut short, damaged, or holds anything else."""
    try:
        state = torch.load(path, weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        if first.startswith("Weights only load failed"):
            raise CheckpointError(f"{path}: refused, it holds pickled code or objects, not only tensors and plain "
                                  f"values (a checkpoint `xlamaml` did not write); expected a trial checkpoint") from None
        raise CheckpointError(f"{path}: unreadable ({first}); expected a whole trial checkpoint") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as e:
        first = (str(e).splitlines() or [type(e).__name__])[0].split(". ")[0] or type(e).__name__
        raise CheckpointError(f"{path}: unreadable, cut short or damaged ({first}); expected a whole trial "
                              f"checkpoint") from None
    if not isinstance(state, dict) or "rng" not in state:
        raise CheckpointError(f"{path}: not a trial checkpoint (no `rng` entry); expected what a trial saved")
    return state


def checkpoints_in(fs: pafs.FileSystem, folder: str) -> list[str]:
    """Return the paths of the `checkpoint_*` folders in `folder` that hold a checkpoint file, newest first."""
    found = []
    for info in fs.get_file_info(pafs.FileSelector(folder.rstrip("/"), allow_not_found=True)):
        if (info.type == pafs.FileType.Directory and info.base_name.startswith("checkpoint_")
                and fs.get_file_info(f"{info.path}/{CHECKPOINT_FILE}").type == pafs.FileType.File):
            found.append(info.path)
    return sorted(found, reverse=True)


def other_checkpoints(fs: pafs.FileSystem, checkpoint_path: str) -> list[str]:
    """Return the paths of the trial's other `checkpoint_*` folders beside `checkpoint_path` that hold a checkpoint
    file, newest first."""
    path = checkpoint_path.rstrip("/")
    return [p for p in checkpoints_in(fs, path.rsplit("/", 1)[0]) if p.rstrip("/") != path]
