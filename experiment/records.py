"""The sweep's own records in its experiment, each written whole: what the driver decided, read back by a resume, the
analysis and the benchmarks (none of which imports the driver).

    xlamaml_sweep.json      the sweep: the run config every trial starts from and the `sweep:` section, as dicts
    xlamaml_adaptive.json   an adaptive sweep: its cells, rungs, every decision, what each rung spent, the dev
                            targets the decisions judge and what the full grid would have run (its counts)
    xlamaml_predictive.json a predictive sweep: its cells, seeds, rounds (the runs of each), every decision with its
                            values, what each round spent, and the answer (picks, contenders, predicted cells)
    xlamaml_timing.json     the last run's phases: assets, Tune, the trials' own compute
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Optional

from xlamaml.experiment import storage
from xlamaml.trainables.assignment import folder_prefix
from xlamaml.trainables.errors import ConfigError, InputError, MissingFileError

SWEEP_FILE = "xlamaml_sweep.json"
ADAPTIVE_FILE = "xlamaml_adaptive.json"
PREDICTIVE_FILE = "xlamaml_predictive.json"
TIMING_FILE = "xlamaml_timing.json"


def _write_json(location: str, value: Any) -> None:
    storage.write_bytes(location, json.dumps(value, indent=2).encode())


# ---------------------------------------------------------------------------------------------------- the sweep


def sweep_recorded(exp: str) -> bool:
    """Return whether a sweep was recorded in the experiment `exp`."""
    return storage.exists(storage.join(exp, SWEEP_FILE))


def write_sweep(exp: str, record: dict[str, Any]) -> None:
    """Write the sweep record ({"run": ..., "sweep": ...}) whole into the experiment; return None."""
    _write_json(storage.join(exp, SWEEP_FILE), record)


def read_sweep(exp: str) -> dict[str, Any]:
    """Return the sweep record of the experiment `exp` as {"run": dict, "sweep": dict} (MissingFileError when it holds
    none, ConfigError naming the file when it is not one)."""
    location = storage.join(exp, SWEEP_FILE)
    if not storage.exists(location):
        raise MissingFileError(f"{exp}: no interrupted sweep to resume (no {SWEEP_FILE})")
    try:
        saved = json.loads(storage.read_bytes(location))
        if not isinstance(saved["run"], dict) or not isinstance(saved["sweep"], dict):
            raise TypeError("run and sweep must be objects")
        return saved
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{location}: not a sweep record ({e}); expected the JSON `xlamaml sweep` wrote") from None


# ---------------------------------------------------------------------------------------------- an adaptive sweep


@dataclass(frozen=True)
class Rung:
    """One rung: the meta steps every trial in it reaches, the dev items per target it is judged on, its seeds."""

    index: int
    steps: int
    dev_items: Optional[int]  # None: every dev item
    seeds: tuple[int, ...]
    cells: int  # how many cells enter it (exact without a bound; at most with one)
    fraction: float = 1.0  # of each trial's own meta budget (`steps` is that of the sweep's run config)


def trial_folder(assignment: str, seed: Any) -> str:
    """Return the folder of an adaptive sweep's trial: one per cell and seed, the same in every rung."""
    return folder_prefix(assignment, seed).rstrip("_")


@dataclass
class AdaptiveRecord:
    """What an adaptive sweep decided and spent so far: its cells, baseline trials, rungs, one decision per rung
    finished (but the last), one account of compute per rung finished; the targets its decisions judge (dev) and the
    full grid's counts (`search.plan.plan_counts`), written when the sweep starts."""

    cells: list[str]
    baseline: list[dict[str, Any]]  # the baseline's trials (assignment, seed), run in rung 0 on the whole dev set
    rungs: list[Rung]
    metric: str  # the dev metric decisions rank on
    decisions: list[dict[str, Any]] = field(default_factory=list)
    spent: list[dict[str, Any]] = field(default_factory=list)
    dev_langs: list[str] = field(default_factory=list)  # [] in records written before it was kept
    grid: dict[str, Any] | None = None  # the full grid's PlanCounts as a dict; None in older records

    def to_dict(self) -> dict[str, Any]:
        """Return the record as plain values (what xlamaml_adaptive.json holds)."""
        return {**dataclasses.asdict(self), "rungs": [dataclasses.asdict(r) for r in self.rungs]}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "AdaptiveRecord":
        """Return the record of `d` (what `to_dict` gave)."""
        rungs = [Rung(**{**r, "seeds": tuple(r["seeds"])}) for r in d["rungs"]]
        return AdaptiveRecord(list(d["cells"]), list(d["baseline"]), rungs, d["metric"], list(d["decisions"]),
                              list(d["spent"]), list(d.get("dev_langs") or []), d.get("grid"))

    def cells_in(self, index: int) -> list[str]:
        """Return the cells that enter rung `index` (all at rung 0, then those the decision before it kept)."""
        return list(self.cells) if index == 0 else list(self.decisions[index - 1]["kept"])

    def stopped(self) -> dict[str, int]:
        """Return {cell: the rung after which a decision stopped it}."""
        return {str(cell): int(d["rung"]) for d in self.decisions for cell in d["stopped"]}

    def trial_folders(self) -> set[str]:
        """Return the trial folders of the rungs finished so far (the baseline's included)."""
        folders = {trial_folder(b["assignment"], b["seed"]) for b in self.baseline}
        for index, _ in enumerate(self.spent):
            folders.update(trial_folder(c, s) for c in self.cells_in(index) for s in self.rungs[index].seeds)
        return folders

    def spent_total(self) -> dict[str, float]:
        """Return what the sweep spent so far: trial folders, trial runs, meta steps, items, trial-seconds."""
        return {"trials": len(self.trial_folders()), "trial_runs": sum(s["trials"] for s in self.spent),
                "meta_steps": sum(s["meta_steps"] for s in self.spent),
                "dev_items": sum(s["dev_items"] for s in self.spent),
                "test_items": sum(s["test_items"] for s in self.spent),
                "trial_seconds": sum(s["trial_seconds"] for s in self.spent)}


def write_adaptive(exp: str, record: AdaptiveRecord) -> None:
    """Write the adaptive record whole into the experiment; return None."""
    _write_json(storage.join(exp, ADAPTIVE_FILE), record.to_dict())


def _read_record(exp: str, name: str, from_dict: Any, what: str) -> Any:
    """Return `from_dict` of the experiment's JSON record `name`, or None when it has none; InputError naming the
    file when it is not `what`."""
    location = storage.join(str(exp), name)
    if not storage.exists(location):
        return None
    try:
        return from_dict(json.loads(storage.read_bytes(location)))
    except (ValueError, KeyError, TypeError) as e:
        raise InputError(f"{location}: not {what} ({e}); expected the JSON `xlamaml sweep` wrote") from None


def read_adaptive(exp: str) -> AdaptiveRecord | None:
    """Return the experiment's adaptive record, or None when it has none (not an adaptive sweep, or not started);
    InputError naming the file when it is not one."""
    return _read_record(exp, ADAPTIVE_FILE, AdaptiveRecord.from_dict, "an adaptive sweep record")


# --------------------------------------------------------------------------------------------- a predictive sweep


@dataclass
class PredictiveRecord:
    """What a predictive sweep ran, decided and spent so far. Round 0 runs the baseline and the first cells; after
    each round a decision (the map model refitted, the next runs valued) adds the next round, or the picks' test
    round and the answer. A run: {"cell", "seed" (an index into `seeds`), "from" and "to" (fractions of the cell's meta
    steps), "dev_at" (the fractions scored on the way)}."""

    cells: list[str]
    baseline: list[dict[str, Any]]  # the baseline's trials (assignment, seed), run in round 0
    seeds: list[int]  # the sweep's seeds: a run's seed index i is seeds[i]
    metric: str  # the dev metric the model is fitted to
    dev_langs: list[str]
    fractions: list[float]
    rounds: list[dict[str, Any]] = field(default_factory=list)  # {"runs": [...], "test": bool}
    decisions: list[dict[str, Any]] = field(default_factory=list)  # one after each round but the test round
    spent: list[dict[str, Any]] = field(default_factory=list)  # one per round finished
    answer: dict[str, Any] | None = None  # per target: pick, contenders, every cell's predicted gain and interval
    grid: dict[str, Any] | None = None  # the full grid's PlanCounts as a dict

    def to_dict(self) -> dict[str, Any]:
        """Return the record as plain values (what xlamaml_predictive.json holds)."""
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "PredictiveRecord":
        """Return the record of `d` (what `to_dict` gave)."""
        return PredictiveRecord(**d)

    def finished(self) -> bool:
        """Return whether the sweep has its answer and the picks' test scores."""
        return self.answer is not None and len(self.spent) == len(self.rounds)

    def spent_total(self) -> dict[str, float]:
        """Return what the sweep spent so far: trial runs, meta steps, dev and test items, trial-seconds."""
        keys = ("trials", "meta_steps", "dev_items", "test_items", "trial_seconds")
        return {("trial_runs" if k == "trials" else k): sum(s[k] for s in self.spent) for k in keys}


def write_predictive(exp: str, record: PredictiveRecord) -> None:
    """Write the predictive record whole into the experiment; return None."""
    _write_json(storage.join(exp, PREDICTIVE_FILE), record.to_dict())


def read_predictive(exp: str) -> PredictiveRecord | None:
    """Return the experiment's predictive record, or None when it has none; InputError naming the file when it is
    not one."""
    return _read_record(exp, PREDICTIVE_FILE, PredictiveRecord.from_dict, "a predictive sweep record")


# -------------------------------------------------------------------------------------------------------- timing


def write_timing(exp: str, timing: dict[str, float]) -> None:
    """Write the last run's phase timing whole into the experiment; return None."""
    _write_json(storage.join(exp, TIMING_FILE), timing)


def read_timing(exp: str) -> dict[str, float]:
    """Return the last run's phase timing of the experiment `exp`."""
    return json.loads(storage.read_bytes(storage.join(str(exp), TIMING_FILE)))
