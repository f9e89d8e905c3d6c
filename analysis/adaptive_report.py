"""What `xlamaml analyze` writes for an adaptive sweep (an experiment with an adaptive record): adaptive_picks.csv
(adaptive_picks), adaptive_stops.csv (adaptive_stops), adaptive_compute.csv (adaptive_compute), and adaptive.md: the
sweep in one paragraph, then the three as Markdown tables.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from xlamaml.analysis.adaptive_compute import compute
from xlamaml.analysis.adaptive_load import Adaptive
from xlamaml.analysis.adaptive_picks import picks
from xlamaml.analysis.adaptive_stops import stops
from xlamaml.analysis.corrections import CORRECTIONS
from xlamaml.analysis.markdown import markdown_table
from xlamaml.analysis.stats import TEST_NAME
from xlamaml.trainables.local_files import write_text_whole

log = logging.getLogger("xlamaml")


def _fmt(v: Any, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)) or v is pd.NA:
        return "-"
    if isinstance(v, (float, np.floating)):
        return f"{float(v):+.{digits}f}"
    return str(v)


def _interval(lo: Any, hi: Any) -> str:
    if not all(isinstance(x, (int, float, np.floating)) and math.isfinite(float(x)) for x in (lo, hi)):
        return "-"
    return f"[{float(lo):+.2f}, {float(hi):+.2f}]"


def _p(v: Any) -> str:
    return f"{float(v):.3g}" if isinstance(v, (int, float, np.floating)) and math.isfinite(float(v)) else "-"


def markdown(ad: Adaptive, pick_rows: pd.DataFrame, stop_rows: pd.DataFrame, comp: pd.DataFrame, opts: Any,
             notes: list[str]) -> str:
    """Return adaptive.md: the sweep in one paragraph, then the picks, the stopped cells and the compute."""
    r = ad.record
    unit = "percentage points" if ad.scale == 100.0 else f"{ad.metric} points"
    rungs = "; ".join(f"rung {g.index}: {g.cells} cells x {len(g.seeds)} seed(s), {g.steps} meta steps, "
                      f"{g.dev_items} dev items" for g in r.rungs)
    lines = ["# Adaptive sweep", "",
             f"{len(r.cells)} cells, {len(r.baseline)} baseline trial(s), ranked on dev {ad.metric} over "
             f"{', '.join(ad.targets)}. {rungs}. Final survivors (scored test): "
             f"{', '.join(ad.survivors) or 'none yet'}. Gains in {unit}; {TEST_NAME}, 95% intervals, "
             f"{opts.resamples:,} resamples.", "",
             "## Picks per target (judged on dev)", "",
             "The final survivor not trained on the target with the highest dev gain over the baseline; its test "
             f"gain, p adjusted over the targets ({CORRECTIONS[opts.correction]}); the survivors whose dev "
             "difference from the pick has a 95% interval holding 0 (the pick included).", ""]
    picked = [[x["target"], x["pick"], _fmt(x["dev_gain"]), _interval(x["dev_ci_low"], x["dev_ci_high"]),
               _fmt(x["test_gain"]), _interval(x["test_ci_low"], x["test_ci_high"]), _p(x["p_value"]),
               _p(x["p_adjusted"]) + (" *" if x["significant"] is True else ""),
               f"{x['indistinguishable_count']} of {x['candidates']}: {x['indistinguishable']}"]
              for _, x in pick_rows.iterrows()]
    lines += markdown_table(["target", "pick", "dev gain", "dev 95% CI", "test gain", "test 95% CI", "p", "p adj.",
                             "indistinguishable on dev"], picked) if picked else ["No target has a final survivor."]
    lines += ["", "## Stopped cells", "",
              "Never scored test; their gains are their last rung's dev estimates against the baseline on the same "
              "dev items (a cell trained on a target is not judged on it: '(excl.)').", ""]
    if len(stop_rows):
        body = []
        for _, x in stop_rows.iterrows():
            excl = set(str(x["excluded_targets"]).split(";"))
            gains = ", ".join(f"{t} {_fmt(x[f'dev_gain_{t}'])}" + (" (excl.)" if t in excl else "")
                              for t in ad.targets)
            body.append([x["cell"], str(x["stopped_after_rung"]), f"{x['rung_steps']} steps, {x['rung_dev_items']} "
                         f"items, {x['rung_seeds']} seed(s)", gains,
                         f"{x['best_rank']} ({x['best_rank_target']})" if pd.notna(x["best_rank"]) else "-",
                         str(x["reason"])])
        lines += markdown_table(["cell", "after rung", "its budget", "last dev gain", "best rank", "reason"], body)
    else:
        lines += ["No cell was stopped."]
    lines += ["", "## Compute", "", "Spent (from the record) against the full grid (`xlamaml plan` counts); the "
              "grid's trial-seconds are estimated from this experiment's rates.", ""]
    lines += markdown_table(["quantity", "adaptive", "grid", "share", "grid from"],
                            [[x["quantity"], _num(x["adaptive"]), _num(x["grid"]),
                              f"{100 * x['share']:.1f}%" if math.isfinite(x["share"]) else "-", x["grid_source"]]
                             for _, x in comp.iterrows()])
    if notes:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def _num(v: Any) -> str:
    if not isinstance(v, (int, float, np.integer, np.floating)) or not math.isfinite(float(v)):
        return "-"
    return f"{int(v):,}" if float(v).is_integer() else f"{float(v):,.1f}"


def write_adaptive(ad: Adaptive, opts: Any, out: Path, write_csv: Callable[[pd.DataFrame, Path], Path],
                   grid_counts: Callable[[Path], Any] | None = None) -> dict[str, Path]:
    """Return {name: path} of adaptive_picks.csv, adaptive_stops.csv, adaptive_compute.csv and adaptive.md."""
    pick_rows, notes = picks(ad, opts)
    stop_rows = stops(ad)
    comp, comp_notes = compute(ad, grid_counts)
    notes += comp_notes
    for line in notes:
        log.warning("%s", line)
    written = {}
    for name, frame in (("adaptive_picks.csv", pick_rows), ("adaptive_stops.csv", stop_rows),
                        ("adaptive_compute.csv", comp)):
        written[name] = write_csv(frame, out / name)
    write_text_whole(out / "adaptive.md", markdown(ad, pick_rows, stop_rows, comp, opts, notes))
    written["adaptive.md"] = out / "adaptive.md"
    return written
