"""An experiment directory -> every analysis file: tidy CSV, Table 3, the Figure 2 heatmap, best pairs."""

from __future__ import annotations

import logging
import re
import tempfile
from pathlib import Path

import pandas as pd

from analysis.aggregate import MissingBaselineError, NoResultsError, split_settings
from analysis.heatmap import delta_matrix, plot_heatmap
from analysis.results import load_results
from analysis.select import best_pairs, best_per_target
from analysis.tables import method_rank, paper_table, to_csv, to_latex, to_markdown
from trainables import storage
from trainables.errors import MissingFileError, XlamamlError

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


def fetch_experiment(location: str, local_dir: Path) -> Path:
    """Return a local copy of what the analysis reads of the experiment at the URI `location` (no checkpoints,
    no assets: those are the large files)."""
    def wanted(name: str) -> bool:
        parts = name.split("/")
        heavy = parts[0] == "assets" or any(p.startswith("checkpoint_") for p in parts)
        tune_state = parts[-1].endswith(".pkl") or parts[-1].startswith(("events.out.", "experiment_state",
                                                                          "basic-variant-state"))
        return not heavy and not tune_state

    names = [n for n in storage.list_files(location) if wanted(n)]
    if not names:
        raise MissingFileError(f"{location}: no experiment there (no files); expected a sweep's experiment URI")
    storage.download_files(location, names, local_dir)
    return local_dir


def analyze(exp_dir: str | Path, out_dir: str | Path) -> dict[str, Path]:
    """Return {file name: path} of the analysis files written to `out_dir` for the experiment `exp_dir`
    (a local folder, or a URI such as s3://bucket/prefix/name that a sweep accepted as storage)."""
    if storage.is_uri(exp_dir):
        with tempfile.TemporaryDirectory(prefix="xlamaml-analyze-") as tmp:
            try:
                return _analyze(fetch_experiment(str(exp_dir), Path(tmp)), out_dir, str(exp_dir))
            except XlamamlError as e:  # name the experiment's URI, not the temporary copy
                e.args = (str(e).replace(tmp, str(exp_dir).rstrip("/")),) + e.args[1:]
                raise
    return _analyze(Path(exp_dir), out_dir, str(exp_dir))


def _analyze(exp_dir: Path, out_dir: str | Path, name: str) -> dict[str, Path]:
    """Return {file name: path} of the analysis files written to `out_dir` for the local experiment `exp_dir`."""
    df = load_results(exp_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "results.csv", index=False)
    written = {"results.csv": out / "results.csv"}
    parts = split_settings(df)
    if not parts:
        # A sweep still running (or all failed) still gets its tidy table.
        log.warning("%s: no finished trial yet; wrote results.csv only", name)
        return written
    written.update(_write_tables(parts, out))
    written.update(_write_heatmaps(parts, out))
    written.update(_write_selections(df, out))
    return written
