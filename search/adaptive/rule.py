"""The decision an adaptive sweep takes after each rung: which cells continue, which stop and why.

Input: per target, per cell, the per-item dev outcomes (seeds, items) of the rung just finished. Default rule: rank
the cells judged on each target by their mean dev score (mean over seeds, then items) and fill the `keep` places
round-robin over the targets by rank position (every target's best, then every target's 2nd, ...), so every
target keeps its own leaders and a cell good for one target only survives as surely as one good on average. Ties
break by cell name, and the round goes through the targets in the order `scores` gives them: the output depends on
nothing else. The count is exactly `keep` (all cells if fewer).

Optional `bound` (a z value), applied after the quota: a kept cell is also stopped when, on every target it is
judged on, the upper bound of its paired difference to that target's top_k-th cell is below 0, i.e. it is clearly
worse than a cell already protected. The difference is paired over items: per item, the cell's seed-mean outcome
minus the top_k-th cell's. Its variance is the items' part, var(d_i) / items, plus the seeds' part, which items
cannot show: a seed moves a run's whole score (a per-run offset), so with s seeds each mean carries seed_var / s.
seed_var is pooled over the target's cells that ran two or more seeds (variance of per-seed means); with a single
seed everywhere it cannot be measured and `SEED_SD_POINTS` (1 point, the demo's seed std) stands in, so the bound never
pretends one seed is exact.

Numpy only: the sweep driver and the simulator (`benchmarks/adaptive_sim.py`) call the same code.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

import numpy as np

# Seed standard deviation of a run's mean score, in points, assumed when no cell of a target has two seeds: about
# the seed std of the demo experiment's accuracies (0.7 to 1.3 points).
SEED_SD_POINTS = 1.0


def points_per_unit(scores: Mapping[str, Mapping[str, np.ndarray]]) -> float:
    """Return 100 for outcomes in [0, 1] (accuracy: a point is 0.01), else 1 (MLQA's F1 and EM are 0-100 already)."""
    top = max((float(np.max(x)) for cells in scores.values() for x in cells.values() if np.size(x)), default=0.0)
    return 100.0 if top <= 1.0 else 1.0


@dataclass(frozen=True)
class Decision:
    """The cells entering the next rung, those stopped (with why), and the ranks and estimates behind it."""

    kept: list[str]  # cells entering the next rung, in the order chosen
    stopped: dict[str, str]  # cell -> one-line reason
    ranks: dict[str, dict[str, int]]  # cell -> target -> rank among the cells judged on that target (1 = best)
    estimates: dict[str, dict[str, float]]  # cell -> target -> mean dev score (metric units)


def seed_means(x: np.ndarray) -> np.ndarray:
    """Return the per-item mean over seeds of a (seeds, items) array (a 1-d array is one seed)."""
    x = np.asarray(x, dtype=float)
    return x if x.ndim == 1 else x.mean(axis=0)


def seed_variance(arrays: Collection[np.ndarray], scale: float = 100.0) -> float:
    """Return the pooled variance over seeds of per-seed mean scores, or that of SEED_SD_POINTS (in the outcomes'
    units: `scale` points a unit) if no array has two seeds."""
    parts = [np.asarray(a, dtype=float).mean(axis=1) for a in arrays if np.ndim(a) == 2 and len(a) >= 2]
    if not parts:
        return (SEED_SD_POINTS / scale) ** 2
    # Pooled: sum of squared deviations over the sum of degrees of freedom.
    return float(sum(((p - p.mean()) ** 2).sum() for p in parts) / sum(len(p) - 1 for p in parts))


def paired_difference(a: np.ndarray, b: np.ndarray, seed_var: float) -> tuple[float, float]:
    """Return (mean difference a - b, its standard error) paired over items, with the seeds' part of the variance."""
    d = seed_means(a) - seed_means(b)
    n = d.size
    seeds_a = 1 if np.ndim(a) == 1 else len(a)
    seeds_b = 1 if np.ndim(b) == 1 else len(b)
    item_var = float(d.var(ddof=1)) / n if n > 1 else 0.0
    return float(d.mean()), float(np.sqrt(item_var + seed_var * (1 / seeds_a + 1 / seeds_b)))


def _judged(scores: Mapping[str, Mapping[str, np.ndarray]],
            excluded: Mapping[str, Collection[str]]) -> dict[str, list[str]]:
    """Return target -> its judged cells, best first (mean score descending, then cell name)."""
    out = {}
    for target, cells in scores.items():
        skip = set(excluded.get(target, ()))
        means = {c: float(seed_means(x).mean()) for c, x in cells.items() if c not in skip}
        out[target] = sorted(means, key=lambda c: (-means[c], c))
    return out


def decide(scores: Mapping[str, Mapping[str, np.ndarray]], keep: int, *, top_k: int = 1,
           bound: float | None = None, excluded: Mapping[str, Collection[str]] | None = None) -> Decision:
    """Return which cells enter the next rung: `keep` of them round-robin over the targets' dev ranks."""
    excluded = excluded or {}
    judged = _judged(scores, excluded)
    estimates: dict[str, dict[str, float]] = {}
    ranks: dict[str, dict[str, int]] = {}
    for target, order in judged.items():
        for i, cell in enumerate(order):
            ranks.setdefault(cell, {})[target] = i + 1
            estimates.setdefault(cell, {})[target] = float(seed_means(scores[target][cell]).mean())
    every = sorted(set(ranks) | {c for cells in scores.values() for c in cells}
                   | {c for cells in excluded.values() for c in cells})
    scale = points_per_unit(scores)
    kept, depth = _round_robin(judged, keep)
    # A cell excluded on every target has no rank to compete with: it takes a place only if one is left.
    unranked = [c for c in every if c not in ranks]
    kept += unranked[:max(0, keep - len(kept))]
    stopped = {c: _quota_reason(c, ranks, estimates, judged, depth, scale) for c in every if c not in kept}
    if bound is not None:
        for cell, why in _bounded(scores, judged, kept, top_k, bound, scale).items():
            kept.remove(cell)
            stopped[cell] = why
    return Decision(kept, stopped, ranks, estimates)


def _round_robin(judged: Mapping[str, list[str]], keep: int) -> tuple[list[str], int]:
    """Return (up to `keep` cells: each target's rank-1 cell in target order, then each one's rank 2, ...; the last
    rank position the round reached)."""
    kept: list[str] = []
    seen: set[str] = set()
    reached = 0
    for position in range(max((len(order) for order in judged.values()), default=0)):
        for order in judged.values():
            if len(kept) >= keep:
                return kept, reached
            reached = position + 1
            if position < len(order) and order[position] not in seen:
                seen.add(order[position])
                kept.append(order[position])
    return kept, reached


def _quota_reason(cell: str, ranks: Mapping[str, Mapping[str, int]], estimates: Mapping[str, Mapping[str, float]],
                  judged: Mapping[str, list[str]], depth: int, scale: float) -> str:
    """Return the one-line reason a cell lost its place: its best rank and target, its gap to that target's best."""
    if cell not in ranks:
        return "judged on no target (excluded on every one) and no place left"
    target = min(ranks[cell], key=lambda t: (ranks[cell][t], -estimates[cell][t], t))
    gap = scale * (estimates[cell][target] - estimates[judged[target][0]][target])
    return (f"no place in the round over the targets' ranks (it reached rank {depth}): best rank "
            f"{ranks[cell][target]} of {len(judged[target])} ({target}), dev {gap:+.1f} points vs {target}'s best")


def _bounded(scores: Mapping[str, Mapping[str, np.ndarray]], judged: Mapping[str, list[str]], kept: list[str],
             top_k: int, z: float, scale: float) -> dict[str, str]:
    """Return kept cells (-> reason) clearly below the top_k-th cell on every target they are judged on."""
    refs = {t: order[min(top_k, len(order)) - 1] for t, order in judged.items() if order}
    seed_var = {t: seed_variance([scores[t][c] for c in order], scale) for t, order in judged.items()}
    out = {}
    for cell in kept:
        closest: tuple[float, str, float] | None = None  # (upper bound, target, difference)
        clear = True
        for t, ref in refs.items():
            if cell not in judged[t]:
                continue
            diff, se = paired_difference(scores[t][cell], scores[t][ref], seed_var[t])
            upper = diff + z * se
            if upper >= 0:
                clear = False
                break
            if closest is None or upper > closest[0]:
                closest = (upper, t, diff)
        if clear and closest is not None:
            upper, t, diff = closest
            out[cell] = (f"below every target's top {top_k} on dev at z={z:g}: closest {t}, "
                         f"{scale * diff:+.1f} points (upper bound {scale * upper:+.1f})")
    return out
