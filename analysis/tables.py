"""The paper's Table 3: one row per (method, aux), one column per target plus the averages, mean ± std.

`paper_table` returns numbers (the metric's own units, fractions for accuracy) with columns
(lang, stat) for stat in mean/std/n; `to_markdown`, `to_latex` and `to_csv` print them in percent.
Each of the three takes one table or a dict {setting label: table}, printed as blocks like the
paper's zero-shot and few-shot parts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from xlamaml.analysis.aggregate import (check_one_setting, pick_variants, resolve_metric, scale_of, setting_labels,
                                variant_stats, with_variants)
from xlamaml.analysis.langs import label_langs, label_sort_key, order_langs, trained_on
from xlamaml.analysis.markdown import markdown_table
from xlamaml.trainables.local_files import replacing
from xlamaml.trainables.methods import METHODS

STATS: tuple[str, ...] = ("mean", "std", "n")
Tables = pd.DataFrame | Mapping[str, pd.DataFrame]


def method_rank(method: str) -> int:
    """Return the method's position in METHODS (baseline, X-MAML, XLA-MAML); an unknown method comes after."""
    return METHODS.index(method) if method in METHODS else len(METHODS)


def _row_key(row: tuple[str, str]) -> tuple:
    method, aux = row
    # As in the paper: the baseline, then one auxiliary language, then pairs; X-MAML before XLA-MAML.
    return (method != "baseline", len(label_langs(aux)), method_rank(method), method, label_sort_key(aux))


def paper_table(df: pd.DataFrame, split: str = "test", metric: str | None = None) -> pd.DataFrame:
    """Return rows (method, aux), columns (lang, stat): mean/std/n over seeds; aux cells are NaN."""
    metric = resolve_metric(df, split, metric)
    check_one_setting(df)
    df = with_variants(df)
    stats = pick_variants(df, variant_stats(df, split, metric), ["method", "aux"], metric)
    wide = stats.pivot(index=["method", "aux"], columns="lang", values=list(STATS))
    langs = order_langs(stats["lang"])
    table = wide.swaplevel(axis=1).reindex(columns=pd.MultiIndex.from_product([langs, STATS], names=["lang", "stat"]))
    table = table.loc[sorted(table.index, key=_row_key)].astype(float)
    for method, aux in table.index:
        for lang in langs:
            if trained_on(aux, lang):
                # The paper prints '-' where a method scores a language it meta-trained on.
                table.loc[(method, aux), lang] = np.nan
    table.attrs = {"split": split, "metric": metric, "scale": scale_of(df, metric),
                   "setting": next(iter(setting_labels(df).values()), "")}
    return table


def _scale(table: pd.DataFrame) -> float:
    if "scale" in table.attrs:
        return float(table.attrs["scale"])
    means = table.xs("mean", axis=1, level="stat").to_numpy(dtype=float)
    means = means[np.isfinite(means)]
    return 100.0 if means.size and means.min() >= 0 and means.max() <= 1 else 1.0


def _cell(mean: float, std: float, scale: float, digits: int) -> str:
    if not math.isfinite(mean):
        return "-"
    if not math.isfinite(std):  # a single seed has no spread
        return f"{mean * scale:.{digits}f}"
    return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}"


def format_cells(table: pd.DataFrame, digits: int = 2) -> pd.DataFrame:
    """Return the table as strings: '67.78 ± 0.41' (percent for fractions), '-' for aux or missing cells."""
    scale = _scale(table)
    langs = list(dict.fromkeys(table.columns.get_level_values("lang")))
    out = pd.DataFrame(index=table.index, columns=langs + ["runs"], dtype=object)
    for row in table.index:
        for lang in langs:
            out.loc[row, lang] = _cell(table.loc[row, (lang, "mean")], table.loc[row, (lang, "std")], scale, digits)
        runs = table.loc[row].xs("n", level="stat").max()
        out.loc[row, "runs"] = str(int(runs)) if math.isfinite(runs) else "-"
    return out


def _header(lang: str, star: str) -> str:
    # The paper marks the average that leaves out auxiliary languages with '*'.
    return f"avg{star}" if lang == "avg_excl_aux" else lang


def _as_dict(tables: Tables) -> dict[str, pd.DataFrame]:
    if isinstance(tables, pd.DataFrame):
        return {"": tables}
    return dict(tables)


def _caption(table: pd.DataFrame) -> str:
    a = table.attrs
    unit = " (%)" if _scale(table) == 100.0 else ""
    what = f"{a.get('split', '')} {a.get('metric', '')}{unit}".strip()
    return (f"{what}: mean ± std over seeds; '-': the method's own auxiliary language; "
            "avg*: mean over targets not used as auxiliary data.")


MARK = " †"


def _marked(cells: pd.DataFrame, marks: pd.DataFrame | None) -> pd.DataFrame:
    """Return the formatted cells with MARK appended where `marks` (rows (method, aux), columns lang) is True."""
    if marks is None:
        return cells
    out = cells.copy()
    for row in out.index:
        for lang in out.columns:
            hit = row in marks.index and lang in marks.columns and bool(marks.loc[row, lang])
            if hit and out.loc[row, lang] != "-":
                out.loc[row, lang] = out.loc[row, lang] + MARK
    return out


def to_markdown(tables: Tables, digits: int = 2, marks: Mapping[str, pd.DataFrame] | None = None,
                legends: Mapping[str, str] | None = None) -> str:
    """Return the table(s) as GitHub Markdown, one block per setting, with a caption line; cells in `marks` (per
    setting label, '' for a single table) get ' †', explained by that setting's line in `legends`."""
    blocks = []
    for label, table in _as_dict(tables).items():
        cells = _marked(format_cells(table, digits), (marks or {}).get(label))
        header = ["method", "aux"] + [_header(c, "\\*") for c in cells.columns]
        lines = markdown_table(header, [[method, aux, *values] for (method, aux), values
                                        in zip(cells.index, cells.to_numpy())], "ll" + "r" * len(cells.columns))
        legend = (legends or {}).get(label)
        if legend:
            lines.append(f"\n†: differs from the baseline: {legend}.".replace("*", "\\*"))
        blocks.append((f"### {label}\n\n" if label else "") + "\n".join(lines))
    first = next(iter(_as_dict(tables).values()))
    return "\n\n".join(blocks) + f"\n\n{_caption(first).replace('*', chr(92) + '*')}\n"


def _tex(text: str) -> str:
    for char in "\\&%$#_{}":
        text = text.replace(char, "\\" + char)
    return text.replace("±", "$\\pm$")


def to_latex(tables: Tables, digits: int = 2) -> str:
    """Return the table(s) as a booktabs LaTeX tabular, one block per setting."""
    items = _as_dict(tables)
    cells = {label: format_cells(table, digits) for label, table in items.items()}
    columns = list(dict.fromkeys(c for frame in cells.values() for c in frame.columns))
    width = 2 + len(columns)
    lines = ["\\begin{tabular}{ll" + "r" * len(columns) + "}", "\\toprule",
             " & ".join(["method", "aux"] + [_tex(_header(c, "")) + ("$^*$" if c == "avg_excl_aux" else "")
                                              for c in columns]) + " \\\\", "\\midrule"]
    for i, (label, frame) in enumerate(cells.items()):
        if label:
            lines += (["\\midrule"] if i else []) + [f"\\multicolumn{{{width}}}{{l}}{{\\textit{{{_tex(label)}}}}} \\\\"]
        frame = frame.reindex(columns=columns, fill_value="-")
        lines += [" & ".join(_tex(str(v)) for v in [method, aux, *values]) + " \\\\"
                  for (method, aux), values in zip(frame.index, frame.to_numpy())]
    lines += ["\\bottomrule", "\\end{tabular}"]
    return "\n".join(lines) + "\n"


def csv_frame(tables: Tables) -> pd.DataFrame:
    """Return the table(s) flat: method, aux, runs, then `<lang>` and `<lang>_std` in display units."""
    frames = []
    for label, table in _as_dict(tables).items():
        scale = _scale(table)
        langs = list(dict.fromkeys(table.columns.get_level_values("lang")))
        flat = pd.DataFrame(index=table.index)
        flat["runs"] = table.xs("n", axis=1, level="stat").max(axis=1)
        for lang in langs:
            flat[lang] = table[(lang, "mean")] * scale
            flat[f"{lang}_std"] = table[(lang, "std")] * scale
        flat = flat.reset_index()
        if label:
            flat.insert(0, "setting", label)
        frames.append(flat)
    return pd.concat(frames, ignore_index=True)


def to_csv(tables: Tables, path: str | Path) -> Path:
    """Return `path` after writing the table(s) there as CSV (see `csv_frame`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as tmp:
        csv_frame(tables).to_csv(tmp, index=False)
    return path
