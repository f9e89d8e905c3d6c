"""adaptive_compute.csv: what an adaptive sweep spent (from its record) against what the full grid would have (the
record's counts, search.plan.plan_counts written when the sweep started; the grid's trial-seconds estimated from this
experiment's own rates), and the share.
"""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import pandas as pd

from xlamaml.analysis.adaptive_load import Adaptive
from xlamaml.experiment.records import read_adaptive
from xlamaml.experiment.reports import read_reports
from xlamaml.trainables.errors import InputError, XlamamlError


def _grid_counts(exp: Path) -> Any:
    """Return the full grid's counts the adaptive record holds (search.plan.counts.plan_counts, written when the sweep
    started), as an object with their names."""
    record = read_adaptive(str(exp))
    if record is None or not record.grid:
        raise InputError(f"{exp}: the adaptive record holds no counts of the full grid (a sweep recorded before "
                         f"they were kept)")
    return SimpleNamespace(**record.grid)


def compute(ad: Adaptive, grid_counts: Callable[[Path], Any] | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Return (what the sweep spent against the full grid's counts, one row per quantity; notes); `grid_counts(exp)`
    counts the full grid (default: `_grid_counts`, the counts the adaptive record holds)."""
    grid_counts = grid_counts or _grid_counts
    notes: list[str] = []
    # The trial folders the sweep ran (one per cell and seed, the same in every rung), for their reports' rates.
    folders = ad.record.trial_folders()
    total = ad.record.spent_total()
    own = {key: total[key] for key in ("trials", "meta_steps", "dev_items", "test_items")}
    own["trial_seconds"] = float(total["trial_seconds"])
    own["evaluated_items"] = own["dev_items"] + own["test_items"]
    # Rates of this experiment: meta seconds per meta step over the trials' last reports; the rest of the trial
    # seconds per evaluated item.
    meta_seconds = meta_steps = 0.0
    for folder in sorted(folders):
        reports = read_reports(ad.exp / folder / "result.json")
        last = next((r for r in reversed(reports) if "meta/steps" in r), None)
        if last is not None:
            meta_seconds += float(last.get("meta/seconds", 0.0))
            meta_steps += float(last.get("meta/steps", 0.0))
    per_step = meta_seconds / meta_steps if meta_steps else math.nan
    rest = own["trial_seconds"] - meta_seconds
    if rest < 0:
        notes.append(f"adaptive_compute.csv: the record's trial-seconds ({own['trial_seconds']:.1f} s) are below the "
                     f"reports' meta seconds ({meta_seconds:.1f} s); evaluation counted as free in the grid estimate")
    per_item = max(rest, 0.0) / own["evaluated_items"] if own["evaluated_items"] else 0.0
    grid: dict[str, float] = {}
    source = ""
    try:
        counts = grid_counts(ad.exp)
        grid = {"trials": counts.trials, "meta_steps": counts.meta_steps, "dev_items": counts.dev_items,
                "test_items": counts.test_items, "evaluated_items": counts.evaluated_items}
        grid["trial_seconds"] = counts.meta_steps * per_step + counts.evaluated_items * per_item
        source = "plan_counts(grid)" + (" (estimated sizes: " + ", ".join(counts.estimated) + ")"
                                        if counts.estimated else "")
    except XlamamlError as e:
        notes.append(f"adaptive_compute.csv: the full grid could not be counted ({e}); its columns are empty")
    rows = []
    for key in ("trials", "meta_steps", "dev_items", "test_items", "evaluated_items", "trial_seconds"):
        g = grid.get(key, math.nan)
        how = source
        if key == "trial_seconds" and grid:
            how = (f"estimated: {per_step:.4g} s per meta step and {per_item:.3g} s per item, this experiment's "
                   "rates")
        rows.append({"quantity": key, "adaptive": own[key], "grid": g,
                     "share": own[key] / g if g and math.isfinite(g) else math.nan, "grid_source": how})
    return pd.DataFrame(rows), notes
