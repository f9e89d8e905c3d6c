"""A recorded map: every trial of a grid over (cell, seed), with per-item dev outcomes at several fractions of the meta
steps, per-item test outcomes at the end and the seconds each part cost, in one compressed .npz file.

Written by benchmarks/record_map.py, read by benchmarks/replay.py and benchmarks/map_stats.py. The layout (every array
a plain numpy array, loaded without pickle):

    meta         a JSON string: the run config and sweep section that produced it, the fractions and their meta steps,
                 cells, seeds, dev and test languages, items per language, versions, CPU, wall seconds
    dev          uint8 (cells, seeds, fractions, dev langs, ceil(dev items / 8)): bit-packed 0/1 outcomes (np.packbits
                 along the items), item i of a language is its i-th dev pair (the first pairs: a rung's prefix)
    test         uint8 (cells, seeds, test langs, ceil(test items / 8)): bit-packed test outcomes at the full budget
    base_dev     uint8 (dev langs, ceil(dev items / 8)): the baseline's dev outcomes (it has no meta steps or seed)
    base_test    uint8 (test langs, ceil(test items / 8))
    setup_s      float32 (cells, seeds): loading the base and the cached features into the trial
    meta_s       float32 (cells, seeds, fractions): meta-step seconds from the previous fraction to this one
    dev_s        float32 (cells, seeds, fractions): seconds scoring the dev items at this fraction
    test_s       float32 (cells, seeds): seconds scoring the test items
    base_s       float32 (3,): the baseline's setup, dev and test seconds

Cells are assignment strings (`trainables.assignment`); gains are in points over the baseline.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from xlamaml.trainables.assignment import parse_assignment

ARRAYS = ("dev", "test", "base_dev", "base_test", "setup_s", "meta_s", "dev_s", "test_s", "base_s")
MAPS = Path(__file__).resolve().parent / "maps"


def add_map_arguments(parser: "argparse.ArgumentParser", smoke_help: str = "the smallest map: seconds") -> None:
    """Add the `--map` (repeatable) and `--smoke-test` options every script over the recorded maps takes; return
    None."""
    parser.add_argument("--map", action="append", help="a recorded map (.npz); default: every map in benchmarks/maps/")
    parser.add_argument("--smoke-test", action="store_true", help=smoke_help)


def chosen_maps(maps: list[str] | None, smoke_test: bool) -> list[Path]:
    """Return the maps a script runs on: those given, else every map in benchmarks/maps/; under --smoke-test only the
    smallest. None at all is a SystemExit saying how to record one."""
    paths = [Path(x) for x in maps] if maps else sorted(MAPS.glob("*.npz"))
    if not paths:
        raise SystemExit(f"no recorded maps in {MAPS}; record one with benchmarks/record_map.py")
    return [min(paths, key=lambda q: q.stat().st_size)] if smoke_test else paths


def pack(outcomes: np.ndarray) -> np.ndarray:
    """Return 0/1 outcomes (..., items) bit-packed along the last axis."""
    return np.packbits(np.asarray(outcomes, dtype=bool), axis=-1)


def unpack(packed: np.ndarray, items: int) -> np.ndarray:
    """Return the (..., items) int8 outcomes of `pack`'s output."""
    return np.unpackbits(packed, axis=-1, count=items).astype(np.int8)


@dataclass
class RecordedMap:
    """A recorded map in memory: outcomes unpacked, seconds, and what produced them (`info`)."""

    info: dict[str, Any]
    dev: np.ndarray  # int8 (cells, seeds, fractions, dev langs, dev items)
    test: np.ndarray  # int8 (cells, seeds, test langs, test items)
    base_dev: np.ndarray  # int8 (dev langs, dev items)
    base_test: np.ndarray  # int8 (test langs, test items)
    setup_s: np.ndarray
    meta_s: np.ndarray
    dev_s: np.ndarray
    test_s: np.ndarray
    base_s: np.ndarray

    @property
    def cells(self) -> list[str]:
        """Return the cells (non-baseline assignment strings)."""
        return list(self.info["cells"])

    @property
    def seeds(self) -> list[int]:
        """Return the seeds every cell ran."""
        return list(self.info["seeds"])

    @property
    def fractions(self) -> list[float]:
        """Return the fractions of the meta steps at which dev was scored (the last is 1)."""
        return list(self.info["fractions"])

    @property
    def steps(self) -> list[int]:
        """Return the meta steps of each fraction."""
        return list(self.info["steps"])

    @property
    def dev_langs(self) -> list[str]:
        """Return the dev languages (the targets the picks are made for)."""
        return list(self.info["dev_langs"])

    @property
    def test_langs(self) -> list[str]:
        """Return the test languages."""
        return list(self.info["test_langs"])

    @cached_property
    def judged(self) -> np.ndarray:
        """Return the (dev langs, cells) mask of pairs judged: a cell is not judged on a language it trained on."""
        return np.array([[not parse_assignment(c).trained_on(t) for c in self.cells] for t in self.dev_langs])

    @property
    def test_rows(self) -> list[int]:
        """Return, per dev language, its row among the test languages (each dev language must be one)."""
        return [self.test_langs.index(t) for t in self.dev_langs]

    def gains(self, seeds: np.ndarray | slice = slice(None), items: np.ndarray | slice = slice(None)) -> np.ndarray:
        """Return (dev langs, cells) test gains over the baseline in points, the mean over the given seeds and test
        items (all by default); NaN where not judged."""
        rows = self.test_rows
        acc = self.test[:, seeds][:, :, rows][..., items].mean(axis=(1, 3)).T  # (dev langs, cells)
        gains = 100 * (acc - self.base_test[rows][..., items].mean(axis=1)[:, None])
        return np.where(self.judged, gains, np.nan)

    @cached_property
    def test_gains(self) -> np.ndarray:
        """Return the truth: (dev langs, cells) full-budget test gains over the baseline, the mean over every seed and
        test item, in points; NaN where not judged."""
        return self.gains()

    def dev_gains(self, fraction_index: int = -1) -> np.ndarray:
        """Return (dev langs, cells) dev gains at a fraction (the last by default), mean over seeds, in points."""
        acc = self.dev[:, :, fraction_index].mean(axis=(1, 3)).T
        gains = 100 * (acc - self.base_dev.mean(axis=1)[:, None])
        return np.where(self.judged, gains, np.nan)

    def trial_seconds(self) -> float:
        """Return the mean seconds of one full trial: set-up, every meta step, dev at the last fraction, test."""
        return float(np.mean(self.setup_s + self.meta_s.sum(axis=2) + self.dev_s[:, :, -1] + self.test_s))


def write_map(path: str | Path, info: dict[str, Any], arrays: dict[str, np.ndarray]) -> Path:
    """Return `path` after writing the map (outcome arrays packed, the file replaced whole)."""
    path = Path(path)
    packed = {k: pack(v) if k in ("dev", "test", "base_dev", "base_test") else np.asarray(v, dtype=np.float32)
              for k, v in arrays.items()}
    info = {**info, "dev_items": int(arrays["dev"].shape[-1]), "test_items": int(arrays["test"].shape[-1])}
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, meta=np.array(json.dumps(info, sort_keys=True)), **packed)
    tmp.replace(path)
    return path


def read_map(path: str | Path) -> RecordedMap:
    """Return the map stored at `path`; a missing array or a shape that does not match is a ValueError naming it."""
    path = Path(path)
    with np.load(path, allow_pickle=False) as z:
        missing = [k for k in ("meta", *ARRAYS) if k not in z.files]
        if missing:
            raise ValueError(f"{path}: not a recorded map: missing arrays {', '.join(missing)} (expected the layout "
                             f"of benchmarks/recorded_map.py)")
        info = json.loads(str(z["meta"]))
        d, t = info["dev_items"], info["test_items"]
        m = RecordedMap(info, unpack(z["dev"], d), unpack(z["test"], t), unpack(z["base_dev"], d),
                        unpack(z["base_test"], t), *(z[k] for k in ARRAYS[4:]))
    shape = (len(m.cells), len(m.seeds), len(m.fractions), len(m.dev_langs), d)
    if m.dev.shape != shape:
        raise ValueError(f"{path}: array dev has shape {m.dev.shape}; expected {shape} from its meta")
    return m
