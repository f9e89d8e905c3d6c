"""The heatmaps of an adaptive experiment: the aux x target map (`aux_matrix`) and the support x query map
(`pairs_matrix`) show the stopped cells' last dev gains, hatched apart from the test gains of the finished cells.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import pandas as pd

from xlamaml.analysis.adaptive_load import Adaptive, stopped_gain
from xlamaml.analysis.heatmap import delta_matrix, pairs_matrix as finished_pairs_matrix
from xlamaml.analysis.langs import AVERAGES, label_langs, label_sort_key, order_langs
from xlamaml.trainables.errors import InputError, XlamamlError


def _stopped_of(part: pd.DataFrame, methods: list[str]) -> pd.DataFrame:
    """Return one row per stopped variant of `methods` in the tidy table `part` (its first row)."""
    rows = part[(part["status"] == "stopped") & part["method"].isin(methods)]
    return rows.drop_duplicates("assignment")


def _note(ad: Adaptive, cells: list[str]) -> str:
    rungs = sorted({ad.stopped[c][0] for c in cells if c in ad.stopped})
    after = " or ".join(str(r) for r in rungs)
    return (f"hatched (dots): stopped after rung {after}, last dev estimate (gain over the baseline on the same dev "
            "items; not test, no significance)")


def heatmap_method(df: pd.DataFrame, rank: Callable[[str], int]) -> str | None:
    """Return the method an adaptive experiment's aux heatmap draws: 'xla-maml' when it finished or was stopped,
    else the first other."""
    methods = set(df.loc[df["status"].isin(["done", "stopped"]), "method"]) - {"baseline"}
    ranked = sorted(methods, key=lambda m: (m != "xla-maml", rank(m), m))
    return ranked[0] if ranked else None


def aux_matrix(part: pd.DataFrame, method: str, ad: Adaptive) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Return (the aux x target matrix: test gains of the finished cells, last dev gains of the stopped ones whose
    aux has no finished cell; the stopped mask; its note)."""
    try:
        matrix = delta_matrix(part, method=method)
    except XlamamlError:
        matrix = None
    if matrix is None:
        base = part[(part["status"] == "done") & (part["method"] == "baseline") & (part["split"] == "test")]
        columns = [lang for lang in order_langs(base["lang"]) if lang not in AVERAGES]
        if not columns:
            raise InputError("no finished baseline reports test: no heatmap")
        matrix = pd.DataFrame(index=pd.Index([], dtype=object), columns=columns, dtype=float)
        metric = ad.metric
        matrix.attrs = {"kind": "aux_target", "method": method, "split": "test", "metric": metric, "target": None,
                        "scale": ad.scale, "setting": ""}
    attrs = dict(matrix.attrs)
    stopped = _stopped_of(part, [method])
    shown: dict[str, tuple[str, float]] = {}  # aux -> (cell, its mean dev gain): the best stopped cell per aux
    for cell, aux in zip(map(ad.cell_of, stopped["assignment"]), stopped["aux"]):
        if aux in matrix.index:
            continue
        score = np.nanmean([stopped_gain(ad, cell, t) for t in ad.targets]) if ad.targets else math.nan
        if aux not in shown or score > shown[aux][1]:
            shown[aux] = (cell, score)
    rows = {aux: {t: stopped_gain(ad, cell, t) for t in matrix.columns} for aux, (cell, _) in shown.items()}
    if rows:
        matrix = pd.concat([matrix, pd.DataFrame.from_dict(rows, orient="index")[list(matrix.columns)]])
    matrix = matrix.loc[sorted(matrix.index, key=label_sort_key)].astype(float)
    matrix.index.name, matrix.columns.name = "auxiliary language", "target language"
    matrix.attrs = attrs
    mask = pd.DataFrame(False, index=matrix.index, columns=matrix.columns)
    mask.loc[list(rows)] = True
    return matrix, mask, _note(ad, [c for c, _ in shown.values()]) if rows else ""


def pairs_matrix(part: pd.DataFrame, ad: Adaptive) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Return (the support x query matrix of avg_excl_aux gains: test for the finished cells, last dev for the
    stopped ones; the stopped mask; its note)."""
    try:
        matrix = finished_pairs_matrix(part)
    except XlamamlError:
        matrix = pd.DataFrame(dtype=float)
        matrix.attrs = {"kind": "support_query", "method": "xla-maml (x-maml on the diagonal)", "split": "test",
                        "metric": ad.metric, "target": "avg_excl_aux", "scale": ad.scale, "setting": ""}
    attrs = dict(matrix.attrs)
    stopped = _stopped_of(part, ["xla-maml", "x-maml"])
    filled: list[tuple[str, str]] = []
    cells: list[str] = []
    for cell, support, query in zip(map(ad.cell_of, stopped["assignment"]), stopped["support"], stopped["query"]):
        present = support in matrix.index and query in matrix.columns and math.isfinite(matrix.loc[support, query])
        if present:
            continue
        matrix.loc[support, query] = stopped_gain(ad, cell, "avg_excl_aux")
        filled.append((support, query))
        cells.append(cell)
    order = sorted(set(matrix.index) | set(matrix.columns), key=label_sort_key)
    matrix = matrix.reindex(index=[x for x in order if x in matrix.index],
                            columns=[x for x in order if x in matrix.columns]).astype(float)
    matrix.index.name, matrix.columns.name = "support language", "query language"
    matrix.attrs = attrs
    mask = pd.DataFrame(False, index=matrix.index, columns=matrix.columns)
    for s, q in filled:
        mask.loc[s, q] = True
    return matrix, mask, _note(ad, cells) if cells else ""


def has_pairs(part: pd.DataFrame) -> bool:
    """Return whether the finished or stopped XLA-MAML trials hold ordered pairs beyond one support language."""
    own = part[part["status"].isin(["done", "stopped"]) & (part["method"] == "xla-maml")]
    return len({s for s in own["support"].dropna() if len(label_langs(s)) == 1}) > 1
