"""The paper's Figure 2: a method's gain over the baseline per auxiliary x target language, as a heatmap.

`delta_matrix` builds the aux x target matrix, `support_query_matrix` the support x query matrix of a
pair sweep, `marked_cells` says which cells score a language the method saw as auxiliary data, and
`plot_heatmap` draws either matrix to PNG and SVG. Matrices carry their metric, split and scale in
`DataFrame.attrs`, so the plot can print percentage points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: sweeps run on machines without a display

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from xlamaml.analysis.aggregate import (baseline_means, baseline_reference, check_one_setting, ensure_variants,  # noqa: E402
                                pick_variants, resolve_metric, scale_of, setting_labels, target_langs,
                                variant_stats, with_variants)
from xlamaml.analysis.langs import label_langs, label_sort_key, trained_on  # noqa: E402
from xlamaml.trainables.errors import InputError  # noqa: E402
from xlamaml.trainables.local_files import replacing  # noqa: E402


@dataclass(frozen=True)
class _Compared:
    df: pd.DataFrame  # the tidy table with its `variant` column
    metric: str
    base: pd.Series  # the baseline's mean over seeds per language
    own: pd.DataFrame  # the method's variant stats (variant_stats rows)


def _compare(df: pd.DataFrame, method: str, split: str, metric: str | None) -> _Compared:
    """Return the method's stats and the baseline's means, or raise an XlamamlError saying which is missing."""
    metric = resolve_metric(df, split, metric)
    check_one_setting(df)
    df = with_variants(df)
    stats = variant_stats(df, split, metric)
    base = baseline_means(stats)
    own = stats[stats["method"] == method]
    if own.empty:
        found = ", ".join(sorted(set(stats["method"]) - {"baseline"})) or "none"
        raise InputError(f"no finished {method} trial with {split}/<lang>/{metric} (other methods: {found})")
    return _Compared(df, metric, base, own)


def _attrs(df: pd.DataFrame, kind: str, method: str, split: str, metric: str, target: str | None) -> dict:
    return {"kind": kind, "method": method, "split": split, "metric": metric, "target": target,
            "scale": scale_of(df, metric), "setting": next(iter(setting_labels(df).values()), "")}


def delta_matrix(df: pd.DataFrame, method: str = "xla-maml", split: str = "test",
                 metric: str | None = None) -> pd.DataFrame:
    """Return the aux x target matrix of `method`'s mean over seeds minus the baseline's, per target."""
    c = _compare(df, method, split, metric)
    own = pick_variants(c.df, c.own, ["aux"], c.metric)
    targets = target_langs(own)
    means = own.pivot(index="aux", columns="lang", values="mean").reindex(columns=targets)
    matrix = means - c.base.reindex(targets)
    matrix = matrix.loc[sorted(matrix.index, key=label_sort_key)]
    matrix.index.name, matrix.columns.name = "auxiliary language", "target language"
    matrix.attrs = _attrs(c.df, "aux_target", method, split, c.metric, None)
    return matrix


def support_query_matrix(df: pd.DataFrame, target: str = "avg_excl_aux", method: str = "xla-maml",
                         split: str = "test", metric: str | None = None) -> pd.DataFrame:
    """Return the support x query matrix of `method`'s gain over the baseline on `target` (a lang or average)."""
    c = _compare(df, method, split, metric)
    own = pick_variants(c.df, c.own, ["support", "query"], c.metric)
    cells = []
    for _, group in own.groupby("variant", sort=False):
        row = group.iloc[0]
        value = group.loc[group["lang"] == target, "mean"]
        if value.empty:
            continue
        ref = baseline_reference(c.base, target, row["aux"], target_langs(group))
        cells.append({"support": row["support"], "query": row["query"], "delta": float(value.iloc[0]) - ref})
    if not cells:
        raise InputError(f"no finished {method} trial reports {split}/{target}/{c.metric}")
    matrix = pd.DataFrame(cells).pivot(index="support", columns="query", values="delta")
    matrix = matrix.loc[sorted(matrix.index, key=label_sort_key), sorted(matrix.columns, key=label_sort_key)]
    matrix.index.name, matrix.columns.name = "support language", "query language"
    matrix.attrs = _attrs(c.df, "support_query", method, split, c.metric, target)
    return matrix


def marked_cells(matrix: pd.DataFrame) -> pd.DataFrame:
    """Return a boolean frame like `matrix`: True where the scored target was auxiliary data of that cell."""
    target = matrix.attrs.get("target")
    if matrix.attrs.get("kind") == "support_query":
        # A pair trains on both its languages (English never counts: Assignment.trained_on); averages are never one.
        hit = [[trained_on(f"{s}+{q}", target) for q in matrix.columns] for s in matrix.index]
    else:
        hit = [[trained_on(aux, t) for t in matrix.columns] for aux in matrix.index]
    return pd.DataFrame(hit, index=matrix.index, columns=matrix.columns, dtype=bool)


def _cell_text(value: float) -> str:
    # `+ 0.0` turns a rounded -0.0 into 0.0.
    return f"{round(value, 1) + 0.0:.1f}"


def pairs_matrix(df: pd.DataFrame, target: str = "avg_excl_aux", split: str = "test",
                 metric: str | None = None) -> pd.DataFrame:
    """Return the support x query matrix of a pairs sweep's gain over the baseline on `target`: XLA-MAML a -> b
    off the diagonal, X-MAML a (support = query = a) on it."""
    matrix = support_query_matrix(df, target, "xla-maml", split, metric)
    if "x-maml" in set(df.loc[df["status"] == "done", "method"]):
        diagonal = support_query_matrix(df, target, "x-maml", split, metric)
        attrs = matrix.attrs
        matrix = matrix.combine_first(diagonal)
        order = sorted(set(matrix.index) | set(matrix.columns), key=label_sort_key)
        matrix = matrix.reindex(index=[x for x in order if x in matrix.index],
                                columns=[x for x in order if x in matrix.columns])
        matrix.index.name, matrix.columns.name = "support language", "query language"
        matrix.attrs = {**attrs, "method": "xla-maml (x-maml on the diagonal)"}
    return matrix


def has_pairs(df: pd.DataFrame) -> bool:
    """Return whether the finished XLA-MAML trials hold ordered pairs beyond one support language (a pairs sweep)."""
    own = df[(df["status"] == "done") & (df["method"] == "xla-maml")]
    supports = {s for s in own["support"].dropna() if len(label_langs(s)) == 1}
    return len(supports) > 1


def gxlt_matrix(df: pd.DataFrame, variant: int, metric: str = "f1") -> pd.DataFrame:
    """Return the context x question matrix of MLQA's G-XLT: the variant's mean over seeds minus the baseline's."""
    df = ensure_variants(df)
    rows = df[(df["status"] == "done") & (df["split"] == "gxlt") & (df["metric"] == metric)]
    own = rows[rows["variant"] == variant]
    base = rows[rows["method"] == "baseline"]
    if own.empty or base.empty:
        raise InputError(f"no G-XLT {metric} of both the variant and the baseline (gxlt/<context>-<question>/{metric})")
    delta = own.groupby("lang")["value"].mean() - base.groupby("lang")["value"].mean()
    cells = [dict(zip(("context", "question"), lang.split("-", 1)), delta=v) for lang, v in delta.dropna().items()]
    matrix = pd.DataFrame(cells).pivot(index="context", columns="question", values="delta")
    matrix = matrix.loc[sorted(matrix.index, key=label_sort_key), sorted(matrix.columns, key=label_sort_key)]
    matrix.index.name, matrix.columns.name = "context language", "question language"
    first = own.iloc[0]
    matrix.attrs = {**_attrs(df, "gxlt", str(first["assignment"]), "gxlt", metric, None), "scale": 1.0}
    return matrix


def plot_heatmap(matrix: pd.DataFrame, path_stem: str | Path, title: str | None = None,
                 aux_marked: bool = True, significant: pd.DataFrame | None = None,
                 note: str | None = None, stopped: pd.DataFrame | None = None,
                 text: pd.DataFrame | None = None) -> list[Path]:
    """Return the PNG and SVG paths written for `matrix` (cells in percentage points for fractions); cells True in
    `significant` are framed and bold, explained by `note` under the figure. Cells True in `stopped` (an adaptive
    sweep's stopped cells, showing a dev estimate, not test; a predictive sweep's cells never run) are dotted and
    italic; `note` should say so. `text`: each cell's own text instead of its value (a predicted gain and interval)."""
    if matrix.empty:
        raise InputError("empty matrix: nothing to plot")
    scale = float(matrix.attrs.get("scale", 1.0))
    values = matrix.to_numpy(dtype=float) * scale
    marked = marked_cells(matrix).to_numpy() if aux_marked else np.zeros(values.shape, dtype=bool)
    strong = (significant.reindex(index=matrix.index, columns=matrix.columns).fillna(False).to_numpy(dtype=bool)
              if significant is not None else np.zeros(values.shape, dtype=bool))
    dotted = (stopped.reindex(index=matrix.index, columns=matrix.columns).fillna(False).to_numpy(dtype=bool)
              if stopped is not None else np.zeros(values.shape, dtype=bool))
    finite = values[np.isfinite(values) & ~marked]
    # Symmetric limits centre the diverging map on zero: white means no change.
    lim = float(np.abs(finite).max()) if finite.size else 1.0
    lim = lim if lim > 0 else 1.0
    nrows, ncols = values.shape
    # Grows with the matrix (15 x 15 for Figure 2); a floor keeps the title and colorbar of small ones readable.
    fig = Figure(figsize=(max(0.6 * ncols + 2.6, 6.5), max(0.48 * nrows + 1.8, 3.2)), layout="constrained")
    ax = fig.add_subplot()
    cmap = matplotlib.colormaps["RdBu"].with_extremes(bad="white")
    image = ax.imshow(np.ma.masked_where(~np.isfinite(values) | marked, values), cmap=cmap,
                      vmin=-lim, vmax=lim, aspect="auto")
    for i in range(nrows):
        for j in range(ncols):
            value = values[i, j]
            if marked[i, j]:
                # The paper leaves these cells apart: the target's own data was used for meta-training.
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor="0.88", edgecolor="0.6",
                                       hatch="///", linewidth=0))
                if math.isfinite(value):
                    ax.text(j, i, _cell_text(value), ha="center", va="center", fontsize=7, color="0.35",
                            style="italic")
            elif math.isfinite(value):
                label = str(text.iloc[i, j]) if text is not None else _cell_text(value)
                ax.text(j, i, label, ha="center", va="center", fontsize=8 if text is None else 7,
                        color="white" if abs(value) > 0.6 * lim else "black",
                        weight="bold" if strong[i, j] else "normal", **({"style": "italic"} if dotted[i, j] else {}))
                if strong[i, j]:
                    ax.add_patch(Rectangle((j - 0.45, i - 0.45), 0.9, 0.9, fill=False, edgecolor="black",
                                           linewidth=1.4))
                if dotted[i, j]:
                    # A dev estimate of a cell the adaptive sweep stopped early: coloured, but set apart.
                    ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="0.45", hatch=".",
                                           linewidth=0))
    ax.set_xticks(range(ncols), [str(c) for c in matrix.columns])
    ax.set_yticks(range(nrows), [str(r) for r in matrix.index])
    ax.set_xlabel(matrix.columns.name or "target language")
    ax.set_ylabel(matrix.index.name or "auxiliary language")
    ax.tick_params(length=0)
    metric = matrix.attrs.get("metric", "metric")
    unit = "percentage points" if scale == 100.0 else metric
    fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02).set_label(f"Δ {metric} vs baseline ({unit})")
    ax.set_title(title if title is not None else _default_title(matrix))
    if note:
        # Under the figure, so every reader of a significance mark sees the test and correction behind it.
        fig.supxlabel(note, fontsize=7, wrap=True)
    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [Path(f"{stem}.png"), Path(f"{stem}.svg")]
    with replacing(paths[0]) as tmp:
        fig.savefig(tmp, dpi=150, bbox_inches="tight")
    # Text stays text in the SVG (not glyph outlines), so the numbers can be edited and searched.
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "xlamaml"}), replacing(paths[1]) as tmp:
        fig.savefig(tmp, bbox_inches="tight")
    return paths


def _default_title(matrix: pd.DataFrame) -> str:
    a = matrix.attrs
    what = f"{a.get('method', 'method')} − baseline, {a.get('split', '')} {a.get('metric', '')}".strip()
    if a.get("kind") == "support_query":
        what += f" on {a.get('target')}"
    return f"{what} ({a['setting']})" if a.get("setting") else what

