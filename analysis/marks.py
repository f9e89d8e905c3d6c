"""Significance marks for the cells a table or figure shows: the variant each cell shows, its bootstrap row from
`analysis.stats.significance`, and p-values adjusted again over exactly those cells (one family per figure/table)."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence

import numpy as np
import pandas as pd

from xlamaml.analysis.aggregate import pick_variants, resolve_metric, variant_stats, ensure_variants
from xlamaml.analysis.stats import adjust_family, legend


def shown_variants(df: pd.DataFrame, keys: Sequence[str], methods: Sequence[str] | None = None,
                   split: str = "test", metric: str | None = None) -> pd.DataFrame:
    """Return the `keys` columns and `variant` of each row a figure or table shows (one variant per key, by dev)."""
    metric = resolve_metric(df, split, metric)
    df = ensure_variants(df)
    stats = variant_stats(df, split, metric)
    if methods is not None:
        stats = stats[stats["method"].isin(list(methods))]
    picked = pick_variants(df, stats, list(keys), metric)
    return picked.drop_duplicates("variant")[[*keys, "variant"]].reset_index(drop=True)


def family(sig: pd.DataFrame, shown: pd.DataFrame, keys: Sequence[str], targets: Sequence[str],
           correction: str) -> pd.DataFrame:
    """Return the significance rows of the shown variants on `targets`, adjusted over those cells alone."""
    if sig.empty or shown.empty:
        return sig.iloc[0:0].assign(**{k: [] for k in keys})
    rows = sig[sig["target"].isin(list(targets))].merge(shown, on="variant", suffixes=("", "_shown"))
    return adjust_family(rows, correction)


def marks_for(rows: pd.DataFrame, index: pd.Index, columns: pd.Index, row_key: Callable[[pd.Series], Hashable],
              col_key: str) -> pd.DataFrame:
    """Return a boolean frame (index x columns): True where the family's row for that cell is significant."""
    marks = pd.DataFrame(False, index=index, columns=columns)
    for _, r in rows[rows["significant"]].iterrows():
        row = row_key(r)
        col = r[col_key]
        if row in marks.index and col in marks.columns:
            marks.loc[row, col] = True
    return marks


def family_legend(rows: pd.DataFrame, correction: str) -> str:
    """Return the legend line of a family, or '' when it holds no tested cell."""
    size = int(np.isfinite(rows["p_value"].to_numpy(dtype=float)).sum()) if len(rows) else 0
    resamples = int(rows["resamples"].iloc[0]) if len(rows) else 0
    return legend(correction, size, resamples) if size else ""
