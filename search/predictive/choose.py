"""What a predictive sweep runs next, when it stops, and what it returns, from the map model's posterior
(`map_model.Posterior`).

Value of a run: the knowledge gradient of each target's top pick, summed over the targets the cell is judged on. A run
of cell c to fraction f is one more observation y = a_f g[t, c] + e (var v); before it is seen, every posterior mean
of target t moves by cov(g[t, .], g[t, c]) a / sqrt(var y) times one normal draw, and the value is how much the
target's best mean is expected to rise (Frazier, Powell and Dayanik 2009, correlated beliefs; the expectation exact,
from the upper envelope of the lines). Correlations come from the model's shared effects, so a run is worth more
when it informs many cells. A run is valued at the best per-run share of m such runs (KG(*), m in `repeats`): one
noisy run alone may be worth almost nothing where a few are worth much. Divided by the run's seconds, the largest
value is run next; the sweep stops when no run is worth `min_value` points per grid trial's seconds. Every trial
scores every target, so a run's value is a sum over targets: the multi-task part.

Picks: per target the judged cell with the highest posterior mean among those that finished at the full budget (a
pick's test is scored: a cell never run cannot be one). Contenders: the judged cells whose probability of beating the
pick is at least 5% under the posterior, run or not.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from xlamaml.search.predictive.map_model import Curve, Posterior, cell_levels

Z95_ONE_SIDED = 1.644854


@dataclass(frozen=True)
class Action:
    """A run the sweep may start: one more seed of a cell to a fraction of the meta steps, or (`continues`) its short
    run continued to the full budget."""

    cell: int
    fraction: float
    seconds: float
    continues: bool = False


def _cdf(x: float) -> float:
    """Return the standard normal distribution function at x."""
    return 0.5 * (1 + math.erf(x / math.sqrt(2))) if math.isfinite(x) else float(x > 0)


def _pdf(x: float) -> float:
    """Return the standard normal density at x (0 at infinities)."""
    return math.exp(-0.5 * x * x) / math.sqrt(2 * math.pi) if math.isfinite(x) else 0.0


def expected_max_gain(mean: np.ndarray, slope: np.ndarray) -> float:
    """Return E[max_i(mean_i + slope_i Z)] - max_i mean_i for Z ~ N(0, 1), exactly: how much the best posterior mean
    is expected to rise when every mean moves along `slope` with one normal draw. The upper envelope of the lines,
    then a normal integral per segment (Frazier, Powell and Dayanik 2009, Algorithm 1)."""
    if not mean.size:
        return 0.0
    order = np.lexsort((mean, slope))  # by slope, then mean: of equal slopes the last has the highest mean
    a, b = mean[order], slope[order]
    keep = np.append(b[1:] != b[:-1], True)
    a, b = a[keep], b[keep]
    lines: list[tuple[float, float, float]] = []  # (intercept, slope, z from which the line is on top)
    for ai, bi in zip(a.tolist(), b.tolist()):
        start = -math.inf
        while lines:
            a0, b0, z0 = lines[-1]
            start = (a0 - ai) / (bi - b0)  # where the steeper new line overtakes the last one
            if start <= z0:
                lines.pop()
                start = -math.inf
            else:
                break
        lines.append((ai, bi, start))
    ends = [z for _, _, z in lines[1:]] + [math.inf]
    total = sum(ai * (_cdf(hi) - _cdf(lo)) + bi * (_pdf(lo) - _pdf(hi)) for (ai, bi, lo), hi in zip(lines, ends))
    return float(total - mean.max())


def knowledge_gradient(post: Posterior, judged: np.ndarray, cell: int, a: float, v: np.ndarray,
                       columns: dict[int, np.ndarray] | None = None) -> float:
    """Return the expected rise (points, summed over the targets `cell` is judged on) of the targets' best posterior
    mean from one observation y = a g + e (var v[t]) of the cell. The observation moves every cell of the target
    through its posterior covariance with this one (correlated beliefs: a run of de>hi informs every cell with
    support de or query hi). `columns`: target -> covariance column, cached by the caller."""
    total = 0.0
    for t in np.flatnonzero(judged[:, cell]):
        cells = np.flatnonzero(judged[t])
        col = columns[t] if columns is not None and t in columns else post.covariance(t, cell)
        if columns is not None:
            columns[t] = col
        var_y = a ** 2 * post.sd[t, cell] ** 2 + v[t]
        if var_y <= 1e-12:
            continue
        total += expected_max_gain(post.mean[t, cells], a * col[cells] / np.sqrt(var_y))
    return total


_erf = np.vectorize(math.erf)  # elementwise on arrays (numpy has no erf of its own)


def independent_value(post: Posterior, judged: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Return (cells,): each cell's knowledge gradient from one full-budget run with its beliefs taken as independent
    of the others' (closed form, all cells at once), summed over targets: a cheap screen for the exact value."""
    mean = np.where(judged, post.mean, -np.inf)
    sd = np.where(judged, post.sd, 0.0)
    s = sd ** 2 / np.sqrt(sd ** 2 + v[:, None])
    top2 = np.sort(mean, axis=1)[:, -2:] if mean.shape[1] > 1 else np.repeat(mean, 2, axis=1)
    other = np.where(mean >= top2[:, [1]], top2[:, [0]], top2[:, [1]])  # the best mean among the other cells
    with np.errstate(divide="ignore", invalid="ignore"):
        z = -np.abs(mean - other) / s
        kg = s * (z * 0.5 * (1 + _erf(z / math.sqrt(2))) + np.exp(-0.5 * z ** 2) / math.sqrt(2 * math.pi))
    return np.where(judged & (s > 0) & np.isfinite(kg), kg, 0.0).sum(axis=0)


def best_actions(post: Posterior, judged: np.ndarray, actions: Sequence[Action], curve: Curve, run_var: np.ndarray,
                 count: int = 1, repeats: Sequence[int] = (1,), screen: int = 24) -> list[tuple[Action, float]]:
    """Return up to `count` (action, knowledge gradient per second in points) of distinct cells, best first, those of
    value 0 left out. `run_var` (targets,) is the noise variance of one run's full-budget dev estimate. Only the
    actions of the `screen` cells of highest independent value per second get the exact (correlated) value: on a
    15 x 15 map that is 10x fewer envelopes."""
    seconds = {}
    for act in actions:
        seconds[act.cell] = min(seconds.get(act.cell, math.inf), act.seconds)
    cheap = independent_value(post, judged, run_var)
    ranked = sorted(seconds, key=lambda c: (-cheap[c] / seconds[c], c))
    kept = set(ranked[:screen])
    scored = []
    columns: dict[int, dict[int, np.ndarray]] = {}  # cell -> target -> covariance column (shared by fractions)
    for act in (a for a in actions if a.cell in kept):
        a, extra = curve.at(act.fraction)
        # KG(*): the value of m such runs per run, at its best m; one noisy run alone is often worth almost
        # nothing while a few are (Frazier and Powell 2010), and a myopic rule would then never explore.
        kg = max(knowledge_gradient(post, judged, act.cell, a, (run_var + extra) / m, columns.setdefault(act.cell, {}))
                 / m for m in repeats)
        if act.seconds > 0 and kg > 0:
            scored.append((kg / act.seconds, act))
    out: list[tuple[Action, float]] = []
    for value, act in sorted(scored, key=lambda x: (-x[0], x[1].cell, x[1].fraction)):
        if len(out) < count and all(act.cell != b.cell for b, _ in out):
            out.append((act, value))
    return out


def picks(post: Posterior, judged: np.ndarray, finished: np.ndarray) -> dict[int, int]:
    """Return target -> its pick: the judged cell finished at the full budget (`finished` (cells,) bool) with the
    highest posterior mean; a target with none finished has no pick."""
    out = {}
    for t in range(len(post.targets)):
        ok = np.flatnonzero(judged[t] & finished)
        if ok.size:
            out[t] = int(ok[np.argmax(post.mean[t, ok])])
    return out


def contenders(post: Posterior, judged: np.ndarray, pick: int, t: int) -> list[int]:
    """Return the judged cells of target t (run or not) with at least a 5% posterior chance of beating the pick."""
    d = post.mean[t] - post.mean[t, pick]
    se = np.sqrt(post.sd[t] ** 2 + post.sd[t, pick] ** 2)
    ok = judged[t] & (d + Z95_ONE_SIDED * se >= 0)
    ok[pick] = True
    return [int(c) for c in np.flatnonzero(ok)]


def initial_cells(cells: Sequence[str], count: int, seed: int = 0) -> list[int]:
    """Return `count` cells that cover the most method, support and query levels (greedy; ties broken at random from
    `seed`), so the first fit sees every level it can and no fixed cell is always among the first."""
    levels = [cell_levels(c) for c in cells]
    tie = np.random.default_rng(seed).permutation(len(cells))
    seen: set[tuple[str, str]] = set()
    chosen: list[int] = []
    for _ in range(min(count, len(cells))):
        gains = [(-1 if i in chosen else sum((k, lv[k]) not in seen for k in ("method", "support", "query")), tie[i])
                 for i, lv in enumerate(levels)]
        i = max(range(len(cells)), key=lambda j: gains[j])
        chosen.append(i)
        seen |= {(k, levels[i][k]) for k in ("method", "support", "query")}
    return chosen
