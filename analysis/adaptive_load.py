"""An adaptive experiment read into `Adaptive`: its record (experiment.records.read_adaptive), the dev targets its
decisions judge, each cell's fate (stopped after which rung, or a final survivor), its trial folders and their per-item
outcomes; and the paired gains over the baseline every adaptive file is built from (`gain_part`, `stopped_gain`).

The dev targets: the record's dev_langs, else the targets its decisions excluded cells on (older records), else the
sweep's run config (eval.dev_langs, else the targets). A cell is not judged on a target it trained on
(Assignment.trained_on: English never counts). Gains are in the metric's units here; the files scale them to points.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from xlamaml.analysis.aggregate import scale_of
from xlamaml.analysis.langs import AVERAGES, excluded_from_avg
from xlamaml.analysis.outcomes import ItemOutcomes, Outcomes
from xlamaml.analysis.results import canonical
from xlamaml.analysis.stats import Part, _part
from xlamaml.analysis.trial_info import KNOWN_LANGS
from xlamaml.experiment.records import AdaptiveRecord, Rung, read_adaptive, read_sweep, trial_folder
from xlamaml.trainables.assignment import parse_assignment
from xlamaml.trainables.config import config_from_dict
from xlamaml.trainables.errors import XlamamlError
from xlamaml.trainables.tasks.outcomes import SUFFIX, read_outcomes

log = logging.getLogger("xlamaml")

Trials = list[tuple[Any, str]]  # (seed, trial dir)


@dataclass
class Adaptive:
    """An adaptive experiment as the analysis reads it: its record, the cells' fates and their per-item outcomes."""

    exp: Path
    record: AdaptiveRecord
    metric: str
    targets: list[str]  # the languages decisions judge on (dev)
    stopped: dict[str, tuple[int, str]]  # cell -> (the rung after which it stopped, the recorded reason)
    survivors: list[str]  # the cells of the last rung that finished it (scored test)
    excluded: dict[str, set[str]]  # target -> cells not judged on it (trained on its language)
    trials: dict[str, Trials]  # cell (or 'baseline') -> its trial folders that exist
    outcomes: Outcomes  # (trial dir, split, lang) -> per-item outcomes, dev of every trial and test of the finished
    scale: float  # 100 for fractions: gains in percentage points

    def cell_of(self, assignment: str) -> str:
        """Return the record's cell named by a tidy table's (canonical) assignment."""
        return next((c for c in self.record.cells if canonical(c) == assignment), assignment)

    @property
    def baseline(self) -> dict[Any, str]:
        """Return {seed: trial dir} of the baseline."""
        return dict(self.trials.get("baseline", []))

    def rung(self, index: int) -> Rung:
        """Return rung `index` of the record."""
        return self.record.rungs[index]


def dev_targets(exp_dir: Path, record: AdaptiveRecord) -> list[str]:
    """Return the languages the decisions judge (dev): the record's dev_langs, else the targets its decisions
    excluded cells on, else the dev languages of the sweep's run config (eval.dev_langs, else the targets)."""
    if record.dev_langs:
        return list(record.dev_langs)
    for d in record.decisions:
        if d.get("excluded"):
            return list(d["excluded"])
    try:
        return config_from_dict(read_sweep(str(exp_dir))["run"]).dev_langs
    except XlamamlError:
        return []


def trained_on(cell: str, lang: str) -> bool:
    """Return whether the cell's meta stage trained on `lang` (Assignment.trained_on; English never counts)."""
    try:
        return parse_assignment(cell, KNOWN_LANGS).trained_on(lang)
    except ValueError:
        return False


def _read(trial: Path, split: str, lang: str) -> ItemOutcomes | None:
    path = trial / "predictions" / f"{split}-{lang}{SUFFIX}"
    if not path.is_file():
        return None
    try:
        uids, values = read_outcomes(path)
    except XlamamlError as e:
        log.warning("adaptive: %s; left out", e)
        return None
    return ItemOutcomes(tuple(uids), values)


def load_adaptive(exp_dir: Path, df: pd.DataFrame) -> Adaptive | None:
    """Return the adaptive view of the experiment (None when it has no adaptive record); `df` its tidy table."""
    record = read_adaptive(str(exp_dir))
    if record is None:
        return None
    metric = record.metric
    targets = dev_targets(exp_dir, record)
    reasons = {c: str(reason) for d in record.decisions for c, reason in d["stopped"].items()}
    stopped = {c: (index, reasons[c]) for c, index in record.stopped().items()}
    last = len(record.rungs) - 1
    finished = len(record.decisions) >= last and len(record.spent) > last
    final = record.cells_in(last) if finished else []
    excluded = {t: {c for c in record.cells if trained_on(c, t)} for t in targets}
    for d in record.decisions:
        for t, cells in (d.get("excluded") or {}).items():
            excluded.setdefault(t, set()).update(cells)
    trials: dict[str, Trials] = {}

    def add(cell: str, seeds: list[Any]) -> None:
        found = [(s, str(exp_dir / trial_folder(cell, s))) for s in seeds if (exp_dir / trial_folder(cell, s)).is_dir()]
        trials[cell] = found

    add("baseline", [b["seed"] for b in record.baseline])
    for cell, (index, _) in stopped.items():
        add(cell, list(record.rungs[index].seeds))
    for cell in final:
        add(cell, list(record.rungs[last].seeds))
    done = set(df.loc[df["status"] == "done", "trial_dir"])
    survivors = [c for c in final if trials[c] and all(d in done for _, d in trials[c])]
    outcomes: Outcomes = {}
    for cell, own in trials.items():
        for _, trial in own:
            for lang in targets:
                got = _read(Path(trial), "dev", lang)
                if got is not None:
                    outcomes[(trial, "dev", lang)] = got
            if cell in survivors or cell == "baseline":
                for path in sorted((Path(trial) / "predictions").glob(f"test-*{SUFFIX}")):
                    lang = path.name[len("test-"):-len(SUFFIX)]
                    got = _read(Path(trial), "test", lang)
                    if got is not None:
                        outcomes[(trial, "test", lang)] = got
    scale = scale_of(df, metric) if (df["metric"] == metric).any() else 1.0
    return Adaptive(exp_dir, record, metric, targets, stopped, survivors, excluded, trials, outcomes, scale)


def gain_part(ad: Adaptive, cell: str, lang: str, split: str = "dev",
              reference: dict[Any, str] | None = None) -> tuple[Part | None, str]:
    """Return (the cell's per-item differences from the baseline on `lang`, '') or (None, why): paired by item on
    the items both scored (a stopped cell: its last rung's first dev items) and by seed where the reference ran it.
    `reference`: {seed: trial dir} to compare with instead of the baseline (another cell: cell minus it)."""
    ref = ad.baseline if reference is None else reference
    if not ad.trials.get(cell) or not ref:
        return None, "no trial folders of the cell or of its reference"
    return _part(lang, ad.trials[cell], ref, split, ad.metric, ad.outcomes)


def stopped_gain(ad: Adaptive, cell: str, lang: str) -> float:
    """Return a stopped cell's last dev gain over the baseline on `lang` (a target or `avg_excl_aux`), in the
    metric's units (NaN when its outcomes are missing)."""
    if lang in AVERAGES:
        aux = aux_of(cell)
        langs = [t for t in ad.targets if lang == "avg" or t not in excluded_from_avg(aux)]
        values = [stopped_gain(ad, cell, t) for t in langs]
        return float(np.mean(values)) if values and all(math.isfinite(v) for v in values) else math.nan
    part, _ = gain_part(ad, cell, lang)
    return float(part.diffs.mean()) if part is not None else math.nan


def aux_of(cell: str) -> str:
    """Return the cell's auxiliary label (Assignment.aux; '' when the cell does not parse)."""
    try:
        return parse_assignment(cell, KNOWN_LANGS).aux
    except ValueError:
        return ""


def method_of(cell: str) -> str:
    """Return the cell's method (Assignment.method; '' when the cell does not parse)."""
    try:
        return parse_assignment(cell, KNOWN_LANGS).method
    except ValueError:
        return ""
