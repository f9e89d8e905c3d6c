"""What `xlamaml analyze` writes for a predictive sweep (an experiment with a predictive record,
experiment.records.read_predictive): predictive_cells.csv (every target x judged cell: the model's predicted dev gain
and 90% interval, whether it ran, is the pick or a contender; the picks' test gain), predictive_map.png/.svg (those
predictions, cells never run dotted) and predictive.md: the sweep in one paragraph, the picks, the cells never run,
and one line per decision.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from xlamaml.analysis.heatmap import plot_heatmap
from xlamaml.analysis.markdown import markdown_table
from xlamaml.experiment.records import PredictiveRecord
from xlamaml.trainables.local_files import write_text_whole


def status_of(cell: dict[str, Any], pick: bool) -> str:
    """Return how the sweep knows a cell: 'pick', 'run' (a full-budget seed), 'short' (short runs only) or
    'predicted' (never run: from the other cells and targets alone)."""
    if pick:
        return "pick"
    if cell["full_seeds"]:
        return "run"
    return "short" if cell["reached"] > 0 else "predicted"


def test_gain(df: pd.DataFrame, cell: str, target: str, metric: str, scale: float) -> float:
    """Return the cell's test gain over the baseline on `target` (mean over its tested seeds less the baseline's mean
    over its seeds), in points; nan when either has no test score."""
    done = df[(df["status"] == "done") & (df["split"] == "test") & (df["lang"] == target) & (df["metric"] == metric)]
    mine = done.loc[done["assignment"] == cell, "value"].to_numpy(dtype=float)
    base = done.loc[done["assignment"] == "baseline", "value"].to_numpy(dtype=float)
    return float(scale * (mine.mean() - base.mean())) if mine.size and base.size else math.nan


def cell_rows(record: PredictiveRecord, df: pd.DataFrame, scale: float) -> pd.DataFrame:
    """Return predictive_cells.csv: one row per target and judged cell, best predicted first within a target."""
    rows = []
    for target, v in (record.answer or {}).get("targets", {}).items():
        for cell, c in v["cells"].items():
            pick = cell == v["pick"]
            rows.append({"target": target, "cell": cell, "predicted_dev_gain": c["mean"], "lo90": c["lo"],
                         "hi90": c["hi"], "status": status_of(c, pick), "full_seeds": c["full_seeds"],
                         "reached": c["reached"], "contender": cell in v["contenders"],
                         "test_gain": test_gain(df, cell, target, record.metric, scale) if pick else math.nan})
    out = pd.DataFrame(rows, columns=["target", "cell", "predicted_dev_gain", "lo90", "hi90", "status", "full_seeds",
                                      "reached", "contender", "test_gain"])
    return out.sort_values(["target", "predicted_dev_gain"], ascending=[True, False], kind="stable")


def _pm(x: float) -> str:
    return f"{x:+.2f}" if math.isfinite(x) else "-"


def decision_line(d: dict[str, Any]) -> str:
    """Return one line on a decision: what it chose and why, or why the search stopped."""
    head = f"- after round {d['round']} ({100 * d['grid_share']:.1f}% of the grid's compute spent): "
    runs = ", ".join(f"{v['cell']} seed {v['seed']} {'continued ' if v['from'] > 0 else ''}to "
                     f"{100 * v['to']:.0f}% ({v['value']:.3g} points/s)" for v in d["values"])
    if d["stop"]:
        return head + f"stopped: {d['stop']}" + (f" (the best runs left: {runs})" if runs else "")
    if d.get("restart"):
        return head + "every cell run so far errored: a new first design among the other cells"
    return head + "ran " + runs + "; picks " + ", ".join(f"{t} {c}" for t, c in d["picks"].items())


def markdown(record: PredictiveRecord, cells: pd.DataFrame, unit: str) -> str:
    """Return predictive.md: the sweep in one paragraph, the picks, the cells never run, the decisions."""
    spent = record.spent_total()
    grid = record.grid or {}
    runs = sum(len(r["runs"]) for r in record.rounds if not r["test"])
    share = spent["meta_steps"] / grid["meta_steps"] if grid.get("meta_steps") else math.nan
    lines = ["# Predictive sweep", "",
             f"{len(record.cells)} cells x {len(record.seeds)} seed(s), {len(record.baseline)} baseline trial(s); the "
             f"map model fitted to dev {record.metric} over {', '.join(record.dev_langs)}. {runs} runs in "
             f"{len(record.rounds) - 1} rounds, then the picks' test; {spent['meta_steps']} meta steps "
             f"({100 * share:.1f}% of the grid's {grid.get('meta_steps', '?')}), {spent['trial_seconds']:.0f} "
             f"trial-seconds. Stopped: {(record.answer or {}).get('stopped', 'not yet')}. Gains in {unit} over the "
             f"baseline; intervals 90%.", "",
             "## Picks per target (chosen on dev; test scored for these only)", ""]
    picks = cells[cells["status"] == "pick"]
    table = [[r.target, r.cell, f"{_pm(r.predicted_dev_gain)} [{_pm(r.lo90)}, {_pm(r.hi90)}]", _pm(r.test_gain),
              ", ".join(cells[(cells["target"] == r.target) & cells["contender"] & (cells["cell"] != r.cell)]["cell"])
              or "none"] for r in picks.itertuples()]
    lines += markdown_table(["target", "pick", "predicted dev gain [90%]", "test gain", "may still be best"], table,
                            "llrrl") + [""]
    never = cells[cells["status"] == "predicted"]
    lines += ["## Cells never run: predicted from the others", ""]
    if never.empty:
        lines += ["Every cell ran.", ""]
    else:
        table = [[r.target, r.cell, _pm(r.predicted_dev_gain), f"[{_pm(r.lo90)}, {_pm(r.hi90)}]",
                  "yes" if r.contender else "no"] for r in never.itertuples()]
        lines += markdown_table(["target", "cell", "predicted dev gain", "90% interval", "may still be best"], table,
                                "llrrl") + [""]
    lines += ["## Decisions", ""] + [decision_line(d) for d in record.decisions] + [""]
    return "\n".join(lines)


def map_matrix(cells: pd.DataFrame, targets: list[str], order: list[str]) -> tuple[pd.DataFrame, ...]:
    """Return (cell x target predicted gains as fractions of 100 points, the never-run mask, the pick mask, the
    texts: gain and interval half-width)."""
    shown = [c for c in order if c in set(cells["cell"])]
    matrix = pd.DataFrame(np.nan, index=pd.Index(shown, name="cell"), columns=pd.Index(targets, name="target"))
    never = pd.DataFrame(False, index=matrix.index, columns=matrix.columns)
    pick = never.copy()
    text = pd.DataFrame("", index=matrix.index, columns=matrix.columns)
    for r in cells.itertuples():
        matrix.loc[r.cell, r.target] = r.predicted_dev_gain / 100
        never.loc[r.cell, r.target] = r.status == "predicted"
        pick.loc[r.cell, r.target] = r.status == "pick"
        text.loc[r.cell, r.target] = f"{r.predicted_dev_gain:+.1f}\n±{(r.hi90 - r.lo90) / 2:.1f}"
    return matrix, never, pick, text


def write_predictive(record: PredictiveRecord, df: pd.DataFrame, scale: float, out: Path,
                     write_csv: Callable[[pd.DataFrame, Path], None]) -> dict[str, Path]:
    """Return {file name: path} of predictive_cells.csv, predictive_map.png/.svg and predictive.md written to `out`
    (only the record's paragraph and decisions while the sweep has no answer yet)."""
    unit = "percentage points" if scale == 100.0 else f"{record.metric} points"
    cells = cell_rows(record, df, scale)
    written = {}
    write_csv(cells, out / "predictive_cells.csv")
    written["predictive_cells.csv"] = out / "predictive_cells.csv"
    if not cells.empty:
        matrix, never, pick, text = map_matrix(cells, list(record.dev_langs), list(record.cells))
        matrix.attrs = {"metric": f"dev {record.metric}", "scale": 100.0}
        note = ("The map model's predicted dev gain over the baseline and its 90% interval half-width. Dotted, "
                "italic: never run, predicted from the other cells and targets. Framed, bold: the target's pick "
                "(test in predictive.md). White: the cell trained on that target's dev set.")
        for path in plot_heatmap(matrix, out / "predictive_map", title="Predicted map (dev, every cell)",
                                 aux_marked=False, significant=pick, note=note, stopped=never, text=text):
            written[path.name] = path
    write_text_whole(out / "predictive.md", markdown(record, cells, unit))
    written["predictive.md"] = out / "predictive.md"
    return written
