"""Side information about languages, known before anything runs: URIEL+ typological distances (the table
uriel_xnli.csv beside this file, written by benchmarks/uriel_distances.py) and the base encoder's own similarity of
parallel sentences (computed once per sweep: `encoder_similarity`).

A composite distance is the equal-weight mean of the kinds known for every XNLI pair, each standardised over the
pairs (z-scores), as in langrankplus' composite of URIEL distances: smaller is closer.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from xlamaml.search.predictive.map_model import cell_levels

URIEL_CSV = Path(__file__).resolve().parent / "uriel_xnli.csv"
# The kinds every XNLI pair has (morphological lacks 50 pairs, script every pair with zh).
COMPOSITE_KINDS = ("featural", "genetic", "geographic", "inventory", "phonological", "syntactic")


@lru_cache(maxsize=4)
def uriel_table(path: str = str(URIEL_CSV)) -> dict[tuple[str, str, str], float]:
    """Return (lang_a, lang_b, kind) -> distance, both orders, from a table with header lang_a,lang_b,kind,distance
    (a missing distance is left out)."""
    out = {}
    with open(path, newline="", encoding="utf-8") as f:
        for i, row in enumerate(csv.DictReader(f), start=2):
            try:
                a, b, kind, d = row["lang_a"], row["lang_b"], row["kind"], row["distance"]
            except KeyError as e:
                raise ValueError(f"{path}: line {i}: expected columns lang_a,lang_b,kind,distance; no {e}") from None
            if d:
                out[a, b, kind] = out[b, a, kind] = float(d)
    return out


def composite_distance(langs: Sequence[str], kinds: Sequence[str] = COMPOSITE_KINDS) -> np.ndarray:
    """Return the (langs, langs) composite URIEL+ distance: per kind z-scored over the pairs, then the mean over the
    kinds; 0 on the diagonal (a language is closest to itself). A pair the table lacks is a KeyError naming it."""
    table = uriel_table()
    n = len(langs)
    out = np.zeros((n, n))
    for kind in kinds:
        values = np.array([v for (a, b, k), v in table.items() if k == kind])
        mu, sd = values.mean(), values.std() or 1.0
        for i, a in enumerate(langs):
            for j, b in enumerate(langs):
                if i != j:
                    if (a, b, kind) not in table:
                        raise KeyError(f"{URIEL_CSV.name}: no {kind} distance for {a}-{b}")
                    out[i, j] += (table[a, b, kind] - mu) / sd / len(kinds)
    np.fill_diagonal(out, out.min() - 1 if n > 1 else 0.0)
    return out


def cell_distances(targets: Sequence[str], cells: Sequence[str], similarity: Mapping[tuple[str, str], float]
                   | None = None) -> np.ndarray:
    """Return (targets, cells, k) covariates: the composite URIEL+ distance from the target to the cell's query and
    to its support languages (mean over a cell's several), then, given `similarity` ((a, b) -> the encoder's
    similarity), the same two for it."""
    langs = sorted({*targets, *(lang for c in cells for part in ("support", "query")
                               for lang in cell_levels(c)[part].split("+"))})
    d = composite_distance(langs)
    at = {lang: i for i, lang in enumerate(langs)}
    out = []
    for t in targets:
        row = []
        for c in cells:
            lv = cell_levels(c)
            feats = [float(np.mean([d[at[t], at[x]] for x in lv[part].split("+")])) for part in ("query", "support")]
            if similarity is not None:
                feats += [float(np.mean([similarity[t, x] if t != x else 1.0 for x in lv[part].split("+")]))
                          for part in ("query", "support")]
            row.append(feats)
        out.append(row)
    return np.array(out)
