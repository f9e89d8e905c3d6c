"""TEMPORARY stand-in (not committed): round-robin keep by per-target rank."""
from __future__ import annotations
from dataclasses import dataclass
import numpy as np

@dataclass(frozen=True)
class Decision:
    kept: list
    stopped: dict
    ranks: dict
    estimates: dict

def decide(scores, keep, *, top_k=1, bound=None, excluded=None):
    excluded = excluded or {}
    cells = sorted({c for t in scores for c in scores[t]})
    est = {c: {} for c in cells}
    ranks = {c: {} for c in cells}
    order = {}
    for t, by in scores.items():
        judged = [c for c in sorted(by) if c not in set(excluded.get(t, ()))]
        means = {c: float(np.mean(by[c])) for c in by}
        for c, m in means.items():
            est[c][t] = m
        order[t] = sorted(judged, key=lambda c: (-means[c], c))
        for i, c in enumerate(order[t]):
            ranks[c][t] = i + 1
    kept = []
    for pos in range(len(cells)):
        for t in sorted(order):
            if len(kept) < keep and pos < len(order[t]) and order[t][pos] not in kept:
                kept.append(order[t][pos])
    for c in cells:
        if len(kept) < keep and c not in kept:
            kept.append(c)
    stopped = {}
    for c in cells:
        if c not in kept:
            best = min(ranks[c].items(), key=lambda kv: kv[1]) if ranks[c] else (None, None)
            stopped[c] = f"not among the {keep} kept: best rank {best[1]} ({best[0]})"
    return Decision(kept, stopped, ranks, est)
