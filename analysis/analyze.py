"""An experiment directory -> every analysis file: tidy CSV, significance, Table 3, heatmaps, picks, power."""

from __future__ import annotations

import logging
import re
import tempfile
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from xlamaml.analysis import adaptive_heatmaps
from xlamaml.analysis.adaptive_load import Adaptive, load_adaptive
from xlamaml.analysis.adaptive_report import write_adaptive
from xlamaml.analysis.aggregate import (MissingBaselineError, NoResultsError, resolve_metric, scale_of, split_settings,
                                with_variants)
from xlamaml.analysis.corrections import check_correction
from xlamaml.analysis.heatmap import delta_matrix, gxlt_matrix, has_pairs, pairs_matrix, plot_heatmap
from xlamaml.analysis.marks import family, family_legend, marks_for, shown_variants
from xlamaml.analysis.outcomes import load_outcomes
from xlamaml.analysis.picks import best_pairs_dev, best_per_target_dev
from xlamaml.analysis.power import format_power, power_table
from xlamaml.analysis.predictive_report import write_predictive
from xlamaml.analysis.results import load_results
from xlamaml.analysis.stats import COLUMNS as SIG_COLUMNS
from xlamaml.analysis.stats import Cell, build_cells, significance
from xlamaml.analysis.tables import method_rank, paper_table, to_csv, to_latex, to_markdown
from xlamaml.experiment import storage
from xlamaml.experiment.records import read_predictive
from xlamaml.trainables.errors import InputError, MissingFileError, XlamamlError
from xlamaml.trainables.local_files import replacing, write_text_whole

log = logging.getLogger("xlamaml")


def heatmap_method(df: pd.DataFrame) -> str | None:
    """Return the method to draw: 'xla-maml' when it finished, else the first other non-baseline one, else None."""
    methods = set(df.loc[df["status"] == "done", "method"]) - {"baseline"}
    ranked = sorted(methods, key=lambda m: (m != "xla-maml", method_rank(m), m))
    return ranked[0] if ranked else None


@dataclass(frozen=True)
class Options:
    """How `analyze` tests and picks: correction, resamples, bootstrap seed, dev or test ranking, power."""

    correction: str = "holm"
    resamples: int = 10_000
    seed: int = 0
    rank_on: str = "dev"  # "test": picks ranked on test, labelled so in the files
    # Power per target when set; the value, if positive, is a gain in display units (percentage points for accuracy)
    # whose needed items and seeds are reported too.
    power: float | None = None
    data_dir: str | None = None  # where the data is when the recorded folder is not (an experiment moved elsewhere)


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    """Return `path` after writing `frame` there as CSV (no index), whole or not at all."""
    with replacing(path) as tmp:
        frame.to_csv(tmp, index=False)
    return path


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "_", label).strip("_")


def _write_tables(parts: dict[str, pd.DataFrame], sig: pd.DataFrame, opts: Options, out: Path) -> dict[str, Path]:
    tables, marks, legends = {}, {}, {}
    for label, part in parts.items():
        try:
            tables[label] = paper_table(part)
        except NoResultsError as e:
            log.warning("table, %s: %s", label, e)
            continue
        rows = family(sig[sig["setting"] == label], shown_variants(part, ["method", "aux"]), ["method", "aux"],
                      list(dict.fromkeys(tables[label].columns.get_level_values("lang"))), opts.correction)
        marks[label] = marks_for(rows, tables[label].index, pd.Index(rows["target"].unique()),
                                 lambda r: (r["method"], r["aux"]), "target")
        legends[label] = family_legend(rows, opts.correction)
    if not tables:
        return {}
    # One setting prints as a plain table; several as labelled blocks, like the paper's Table 3.
    if len(tables) == 1:
        shown, marks, legends = next(iter(tables.values())), {"": next(iter(marks.values()))}, \
            {"": next(iter(legends.values()))}
    else:
        shown = tables
    write_text_whole(out / "table.md", to_markdown(shown, marks=marks, legends=legends))
    write_text_whole(out / "table.tex", to_latex(shown))
    return {"table.md": out / "table.md", "table.csv": to_csv(shown, out / "table.csv"), "table.tex": out / "table.tex"}


def _matrix_marks(sig: pd.DataFrame, shown: pd.DataFrame, keys: list[str], matrix: pd.DataFrame,
                  row_key: Callable[[pd.Series], Hashable], col_key: str, targets: list[str],
                  correction: str) -> tuple[pd.DataFrame, str]:
    """Return (the cells of `matrix` significant within its own family, the legend line)."""
    rows = family(sig, shown, keys, targets, correction)
    return marks_for(rows, matrix.index, matrix.columns, row_key, col_key), family_legend(rows, correction)


def _write_heatmaps(parts: dict[str, pd.DataFrame], sig: pd.DataFrame, opts: Options, out: Path,
                    adaptive: Adaptive | None = None) -> dict[str, Path]:
    written = {}
    for i, (label, part) in enumerate(parts.items()):
        # An adaptive sweep's heatmaps show its stopped cells too (their last dev estimates, hatched).
        method = heatmap_method(part) if adaptive is None else adaptive_heatmaps.heatmap_method(part, method_rank)
        if method is None:
            continue
        stopped, stopped_note = None, ""
        try:
            if adaptive is None:
                matrix = delta_matrix(part, method=method)
            else:
                matrix, stopped, stopped_note = adaptive_heatmaps.aux_matrix(part, method, adaptive)
        except (MissingBaselineError, NoResultsError, InputError) as e:
            log.warning("heatmap, %s: %s", label, e)
            continue
        # Aux cells (hatched) are not transfer results: significance.csv has no row for them, as in the table.
        marks, note = _matrix_marks(sig[(sig["setting"] == label) & (sig["method"] == method)],
                                    shown_variants(part, ["aux"], [method]), ["aux"], matrix,
                                    lambda r: r["aux"], "target", list(matrix.columns), opts.correction)
        # The first setting (zero-shot when there is one, as in Figure 2) gets the plain name.
        stem = "heatmap" if not written else f"heatmap-{_slug(label) or i}"
        if stopped is None:
            paths = plot_heatmap(matrix, out / stem, significant=marks, note=note)
        else:
            paths = plot_heatmap(matrix, out / stem, significant=marks, note=_join(note, stopped_note),
                                 stopped=stopped)
        written.update({p.name: p for p in paths})
        if has_pairs(part) if adaptive is None else adaptive_heatmaps.has_pairs(part):
            written.update(_write_pairs(part, label, sig, opts, out, "" if stem == "heatmap" else f"-{_slug(label)}",
                                        adaptive))
    return written


def _join(*notes: str) -> str:
    return "\n".join(n for n in notes if n)


def _write_pairs(part: pd.DataFrame, label: str, sig: pd.DataFrame, opts: Options, out: Path,
                 suffix: str, adaptive: Adaptive | None = None) -> dict[str, Path]:
    """Return the pairs map's files: support x query, the avg* gain over the baseline, significance marked."""
    stopped, stopped_note = None, ""
    try:
        if adaptive is None:
            matrix = pairs_matrix(part)
        else:
            matrix, stopped, stopped_note = adaptive_heatmaps.pairs_matrix(part, adaptive)
    except XlamamlError as e:
        log.warning("pairs heatmap, %s: %s", label, e)
        return {}
    methods = ["xla-maml", "x-maml"]
    marks, note = _matrix_marks(sig[(sig["setting"] == label) & sig["method"].isin(methods)],
                                shown_variants(part, ["support", "query"], methods), ["support", "query"], matrix,
                                lambda r: r["support"], "query", ["avg_excl_aux"], opts.correction)
    if stopped is None:
        paths = plot_heatmap(matrix, out / f"pairs-heatmap{suffix}", significant=marks, note=note)
    else:
        paths = plot_heatmap(matrix, out / f"pairs-heatmap{suffix}", significant=marks,
                             note=_join(note, stopped_note), stopped=stopped)
    return {p.name: p for p in paths}


def _write_gxlt(df: pd.DataFrame, picks: pd.DataFrame | None, out: Path) -> dict[str, Path]:
    """Return the G-XLT heatmap of the top pick (context x question, F1 gain over the baseline), if any."""
    if not (df["split"] == "gxlt").any():
        return {}
    if picks is None or picks.empty:
        log.warning("gxlt-heatmap: no pick to draw (best_pairs.csv was not written); skipped")
        return {}
    try:
        matrix = gxlt_matrix(df, int(picks.iloc[0]["variant"]))
    except XlamamlError as e:
        log.warning("gxlt-heatmap: %s", e)
        return {}
    note = (f"{picks.iloc[0]['assignment']}, the top of best_pairs.csv ({picks.iloc[0]['ranked_on']}); no "
            "significance: G-XLT sets keep no per-item outcomes")
    return {p.name: p for p in plot_heatmap(matrix, out / "gxlt-heatmap", aux_marked=False, note=note)}


def _write_selections(df: pd.DataFrame, sig: pd.DataFrame, opts: Options, out: Path) -> dict[str, Path]:
    written, frames = {}, {}
    for name, select in (("best_pairs.csv", best_pairs_dev), ("best_per_target.csv", best_per_target_dev)):
        try:
            frame, notes = select(df, sig, opts.rank_on, opts.correction)
        except (MissingBaselineError, NoResultsError) as e:
            frame, notes = None, [f"{name}: {e}"]
        for line in notes:
            log.warning("%s", line)
        if frame is not None:
            write_csv(frame, out / name)
            written[name] = out / name
            frames[name] = frame
    written.update(_write_gxlt(df, frames.get("best_pairs.csv"), out))
    return written


def _significance(df: pd.DataFrame, opts: Options, out: Path) -> tuple[pd.DataFrame, dict[str, Path], list[Cell]]:
    """Return (the significance rows, {'significance.csv': path} when any, the test cells), logging each gap once."""
    outcomes, notes = load_outcomes(df, ("test",), opts.data_dir)
    try:
        sig, cell_notes = significance(df, outcomes, "test", resamples=opts.resamples,
                                       correction=opts.correction, seed=opts.seed)
        cells = build_cells(df, outcomes, "test")[0] if opts.power is not None else []
    except XlamamlError as e:
        log.warning("significance: %s; no statistics", e)
        return pd.DataFrame(columns=list(SIG_COLUMNS)), {}, []
    for line in notes.lines() + cell_notes:
        log.warning("significance: %s", line)
    if sig.empty:
        log.warning("significance.csv: no cell has per-item outcomes; not written")
        return sig, {}, cells
    write_csv(sig.drop(columns=["variant"]), out / "significance.csv")
    return sig, {"significance.csv": out / "significance.csv"}, cells


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


def analyze(exp_dir: str | Path, out_dir: str | Path, options: Options | None = None) -> dict[str, Path]:
    """Return {file name: path} of the analysis files written to `out_dir` for the experiment `exp_dir`
    (a local folder, or a URI such as s3://bucket/prefix/name that a sweep accepted as storage)."""
    opts = options or Options()
    check_correction(opts.correction)
    if opts.resamples < 1:
        raise InputError(f"resamples {opts.resamples}: expected a positive number of bootstrap resamples")
    if opts.rank_on not in ("dev", "test"):
        raise InputError(f"rank_on {opts.rank_on!r}: expected 'dev' or 'test'")
    if storage.is_uri(exp_dir):
        with tempfile.TemporaryDirectory(prefix="xlamaml-analyze-") as tmp:
            try:
                return _analyze(fetch_experiment(str(exp_dir), Path(tmp)), out_dir, str(exp_dir), opts)
            except XlamamlError as e:  # name the experiment's URI, not the temporary copy
                e.args = (str(e).replace(tmp, str(exp_dir).rstrip("/")),) + e.args[1:]
                raise
    return _analyze(Path(exp_dir), out_dir, str(exp_dir), opts)


def _analyze(exp_dir: Path, out_dir: str | Path, name: str, opts: Options) -> dict[str, Path]:
    """Return {file name: path} of the analysis files written to `out_dir` for the local experiment `exp_dir`."""
    df = load_results(exp_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(df, out / "results.csv")
    written = {"results.csv": out / "results.csv"}
    parts = split_settings(df)
    if not parts:
        # A sweep still running (or all failed) still gets its tidy table.
        log.warning("%s: no finished trial yet; wrote results.csv only", name)
        return written
    # Variant ids once for the whole table, so the significance rows and every figure's cells name the same ones.
    df = with_variants(df)
    parts = {label: df.loc[part.index] for label, part in parts.items()}
    sig, files, cells = _significance(df, opts, out)
    written.update(files)
    written.update(_write_tables(parts, sig, opts, out))
    adaptive = _adaptive(exp_dir, df, name)
    written.update(_write_heatmaps(parts, sig, opts, out, adaptive))
    written.update(_write_selections(df, sig, opts, out))
    if opts.power is not None:
        written.update(_write_power(df, cells, opts, out))
    if adaptive is not None:
        written.update(write_adaptive(adaptive, opts, out, write_csv))
    written.update(_predictive(exp_dir, df, name, out))
    return written


def _predictive(exp_dir: Path, df: pd.DataFrame, name: str, out: Path) -> dict[str, Path]:
    """Return the files of a predictive experiment's analysis ({} for another, or with a warning when its record
    cannot be read)."""
    try:
        record = read_predictive(str(exp_dir))
    except XlamamlError as e:
        log.warning("%s: predictive record: %s; no predictive analysis", name, e)
        return {}
    if record is None:
        return {}
    return write_predictive(record, df, scale_of(df, record.metric), out, write_csv)


def _adaptive(exp_dir: Path, df: pd.DataFrame, name: str) -> Adaptive | None:
    """Return the adaptive view of an adaptive experiment (None for a grid one, or with a warning when its record
    cannot be read)."""
    try:
        return load_adaptive(exp_dir, df)
    except XlamamlError as e:
        log.warning("%s: adaptive record: %s; no adaptive analysis", name, e)
        return None


def _write_power(df: pd.DataFrame, cells: list[Cell], opts: Options, out: Path) -> dict[str, Path]:
    """Return {'power.txt': path, 'power.csv': path}: what the experiment could detect, per target."""
    metric = resolve_metric(df, "test")
    scale = scale_of(df, metric)
    unit = "percentage points" if scale == 100.0 else f"{metric} points"
    # `--power` takes the gain in display units (points); the table keeps the metric's own units.
    table = power_table(cells, opts.power / scale if opts.power else None)
    write_csv(table, out / "power.csv")
    write_text_whole(out / "power.txt", format_power(table, scale, unit) + "\n")
    return {"power.txt": out / "power.txt", "power.csv": out / "power.csv"}
