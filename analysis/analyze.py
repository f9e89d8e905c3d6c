"""An experiment directory -> every analysis file: tidy CSV, Table 3, the Figure 2 heatmap, best pairs."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pandas as pd

from analysis.aggregate import MissingBaselineError, NoResultsError, split_settings
from analysis.heatmap import delta_matrix, plot_heatmap
from analysis.results import load_results
from analysis.select import best_pairs, best_per_target
from analysis.tables import method_rank, paper_table, to_csv, to_latex, to_markdown

log = logging.getLogger("xlamaml")


def heatmap_method(df: pd.DataFrame) -> str | None:
    """Return the method to draw: 'xla-maml' when it finished, else the first other non-baseline one, else None."""
    methods = set(df.loc[df["status"] == "done", "method"]) - {"baseline"}
    ranked = sorted(methods, key=lambda m: (m != "xla-maml", method_rank(m), m))
    return ranked[0] if ranked else None


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "_", label).strip("_")


def _write_tables(parts: dict[str, pd.DataFrame], out: Path) -> dict[str, Path]:
    tables = {}
    for label, part in parts.items():
        try:
            tables[label] = paper_table(part)
        except NoResultsError as e:
            log.warning("table, %s: %s", label, e)
    if not tables:
        return {}
    # One setting prints as a plain table; several as labelled blocks, like the paper's Table 3.
    shown = tables if len(tables) > 1 else next(iter(tables.values()))
    (out / "table.md").write_text(to_markdown(shown), encoding="utf-8")
    (out / "table.tex").write_text(to_latex(shown), encoding="utf-8")
    return {"table.md": out / "table.md", "table.csv": to_csv(shown, out / "table.csv"), "table.tex": out / "table.tex"}


def _write_heatmaps(parts: dict[str, pd.DataFrame], out: Path) -> dict[str, Path]:
    written = {}
    for i, (label, part) in enumerate(parts.items()):
        method = heatmap_method(part)
        if method is None:
            continue
        try:
            matrix = delta_matrix(part, method=method)
        except (MissingBaselineError, NoResultsError) as e:
            log.warning("heatmap, %s: %s", label, e)
            continue
        # The first setting (zero-shot when there is one, as in Figure 2) gets the plain name.
        stem = "heatmap" if not written else f"heatmap-{_slug(label) or i}"
        written.update({p.name: p for p in plot_heatmap(matrix, out / stem)})
    return written


def _write_selections(df: pd.DataFrame, out: Path) -> dict[str, Path]:
    written = {}
    for name, select in (("best_pairs.csv", lambda: best_pairs(df, top=None)),
                         ("best_per_target.csv", lambda: best_per_target(df))):
        try:
            frame = select()
        except (MissingBaselineError, NoResultsError) as e:
            log.warning("%s: %s", name, e)
            continue
        frame.to_csv(out / name, index=False)
        written[name] = out / name
    return written


def analyze(exp_dir: str | Path, out_dir: str | Path) -> dict[str, Path]:
    """Return {file name: path} of the analysis files written to `out_dir` for the experiment `exp_dir`."""
    df = load_results(exp_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "results.csv", index=False)
    written = {"results.csv": out / "results.csv"}
    parts = split_settings(df)
    if not parts:
        # A sweep still running (or all failed) still gets its tidy table.
        log.warning("%s: no finished trial yet; wrote results.csv only", exp_dir)
        return written
    written.update(_write_tables(parts, out))
    written.update(_write_heatmaps(parts, out))
    written.update(_write_selections(df, out))
    return written
