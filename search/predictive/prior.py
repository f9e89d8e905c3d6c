"""A ranking of a map's cells per target before anything runs: from side information (URIEL+ distances, the encoder's
similarity), from a map measured before (the mean of each cell over the other targets), or from English alone.

Each ranker returns, per target, a score per judged cell (higher: expected better). `benchmarks/prior_rank.py`
judges them leave-one-target-out on the recorded maps (NDCG@3 and top-pick regret).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from xlamaml.search.predictive.side_info import composite_distance
from xlamaml.trainables.assignment import parse_assignment

RANKERS = ("uriel", "similarity", "english", "other-targets")


def aux_of(cell: str) -> list[str]:
    """Return the cell's auxiliary languages (English only when it is the only one: en -> en)."""
    return list(parse_assignment(cell).aux_langs) or ["en"]


def judged_mask(targets: Sequence[str], cells: Sequence[str]) -> np.ndarray:
    """Return the (targets, cells) mask of judged pairs: a cell is not judged on a language it trained on."""
    return np.array([[not parse_assignment(c).trained_on(t) for c in cells] for t in targets])


def uriel_scores(targets: Sequence[str], cells: Sequence[str]) -> np.ndarray:
    """Return (targets, cells): minus the mean composite URIEL+ distance from the target to the cell's auxiliary
    languages (closer ranks higher); NaN where not judged."""
    langs = sorted({*targets, *(x for c in cells for x in aux_of(c))})
    d, at = composite_distance(langs), {lang: i for i, lang in enumerate(langs)}
    out = np.array([[-np.mean([d[at[t], at[x]] for x in aux_of(c)]) for c in cells] for t in targets])
    return np.where(judged_mask(targets, cells), out, np.nan)


def similarity_scores(targets: Sequence[str], cells: Sequence[str],
                      similarity: Mapping[tuple[str, str], float]) -> np.ndarray:
    """Return (targets, cells): the mean encoder similarity of the target to the cell's auxiliary languages; NaN where
    not judged. A pair the table lacks is a KeyError naming it."""
    def sim(a: str, b: str) -> float:
        """Return the similarity of two languages (1 for one language with itself)."""
        if a == b:
            return 1.0
        if (a, b) not in similarity:
            raise KeyError(f"no encoder similarity for {a}-{b}")
        return similarity[a, b]

    out = np.array([[np.mean([sim(t, x) for x in aux_of(c)]) for c in cells] for t in targets])
    return np.where(judged_mask(targets, cells), out, np.nan)


def english_scores(targets: Sequence[str], cells: Sequence[str]) -> np.ndarray:
    """Return (targets, cells): 1 for a cell whose auxiliary language is English alone ("always English"), else 0;
    NaN where not judged."""
    out = np.array([[float(aux_of(c) == ["en"]) for c in cells] for _ in targets])
    return np.where(judged_mask(targets, cells), out, np.nan)


def other_target_scores(gains: Mapping[tuple[str, str], float], targets: Sequence[str],
                        cells: Sequence[str]) -> np.ndarray:
    """Return (targets, cells): each cell's mean gain over the targets of a map measured before (`gains`: (target,
    cell) -> points, judged pairs only) other than the target itself; -inf for a cell that map lacks there."""
    by_cell: dict[str, list[tuple[str, float]]] = {}
    for (t, c), g in gains.items():
        by_cell.setdefault(c, []).append((t, g))
    out = np.full((len(targets), len(cells)), -np.inf)
    for i, t in enumerate(targets):
        for j, c in enumerate(cells):
            others = [g for tt, g in by_cell.get(c, []) if tt != t]
            if others:
                out[i, j] = float(np.mean(others))
    return out


def ndcg_at(truth: np.ndarray, scores: np.ndarray, k: int = 3) -> float:
    """Return NDCG@k of ranking by `scores` (ties broken by the order given) against gains `truth` over one target's
    judged cells; relevance is the gain above the target's worst cell."""
    rel = truth - truth.min()
    order = np.argsort(-scores, kind="stable")[:k]
    ideal = np.sort(rel)[::-1][:k]
    discount = 1 / np.log2(np.arange(2, k + 2))
    best = float(ideal @ discount[:len(ideal)])
    return float(rel[order] @ discount[:len(order)]) / best if best > 0 else 1.0


def top_regret(truth: np.ndarray, scores: np.ndarray) -> float:
    """Return the true best gain minus that of the top-scored cell (first on ties), points."""
    return float(truth.max() - truth[int(np.argmax(scores))])


def read_gains(path: str) -> dict[tuple[str, str], float]:
    """Return (target, cell) -> gain (points) of a map measured before: a CSV with header target,cell,gain (the
    simulator's --gains layout); a bad row is a ValueError naming the file and line."""
    import csv

    out = {}
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or not {"target", "cell", "gain"} <= set(reader.fieldnames):
            raise ValueError(f"{path}: line 1: expected the header target,cell,gain; got {reader.fieldnames}")
        for i, row in enumerate(reader, start=2):
            try:
                out[row["target"], row["cell"]] = float(row["gain"])
            except (TypeError, ValueError):
                raise ValueError(f"{path}: line {i}: expected a gain in points, got {row.get('gain')!r}") from None
    return out


def rank(targets: Sequence[str], cells: Sequence[str], ranker: str = "uriel",
         gains: Mapping[tuple[str, str], float] | None = None,
         similarity: Mapping[tuple[str, str], float] | None = None) -> dict[str, list[tuple[str, float]]]:
    """Return target -> its judged cells with their scores, best first (ties: the order given), by `ranker`: 'uriel'
    (side information alone), 'similarity' (the encoder's, from `similarity`), 'english', or 'other-targets' (each
    cell's mean gain over the other targets of a map measured before, `gains`; a cell it lacks scores last)."""
    if ranker == "uriel":
        scores = uriel_scores(targets, cells)
    elif ranker == "similarity":
        if similarity is None:
            raise ValueError("ranker 'similarity' needs the encoder's similarity table")
        scores = similarity_scores(targets, cells, similarity)
    elif ranker == "english":
        scores = english_scores(targets, cells)
    elif ranker == "other-targets":
        if gains is None:
            raise ValueError("ranker 'other-targets' needs a map measured before (rows target,cell,gain)")
        scores = np.where(judged_mask(targets, cells), other_target_scores(gains, targets, cells), np.nan)
    else:
        raise ValueError(f"ranker {ranker!r}: expected one of {', '.join(RANKERS)}")
    out = {}
    for i, t in enumerate(targets):
        ok = [j for j in range(len(cells)) if not np.isnan(scores[i, j])]
        order = sorted(ok, key=lambda j: -scores[i, j])  # stable: ties keep the given order
        out[t] = [(cells[j], float(scores[i, j])) for j in order]
    return out
