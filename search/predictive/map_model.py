"""A model of a transfer map: every cell's gain on every target as structured effects, fitted to the dev estimates a
sweep has paid for, with a posterior mean and standard deviation for every judged (target, cell), run or not.

The latent gain of cell c on target t, in points over the baseline:

    g[t, c] = intercept + target[t] + method[m] + support[s] + query[q] + cell[c]
              + target x support[t, s] + target x query[t, q] + side . beta + r[t, c]

m, s, q are the cell's method and its support and query languages (`trainables.assignment`; an en -> aux map has one
support, English, so its auxiliary language is the query). Every group of effects is a random effect, normal with
mean 0 and a variance of its own (fitted: type-II maximum likelihood by EM), so a group the data do not support
shrinks to nothing; `side` are per-(target, cell) covariates from side information (standardised URIEL+ distances,
the encoder's similarity of the two languages), whose slopes are one more such group (side information that does
not predict the gains shrinks away). r is the part no structure explains.

An observation is a dev estimate of g[t, c] from s seeds after a fraction f of the meta steps:
    y = a_f * g[t, c] + e,   var(e) = v (items and seeds, measured) + tau_f^2 (what a short run adds)
A short run sees a shrunk, noisier view of the full-budget gain: (a_f, tau_f) is the learning curve (`Curve`),
measured on the recorded maps or on the sweep's own runs that passed two budgets. Only the highest fraction
observed for a (t, c) is used: a run's later estimate supersedes its earlier one.

Given the observations the effects' posterior is normal (ridge regression with per-observation noise), and for one
observed (t, c) the residual r has a closed-form posterior given the effects, so every (t, c) gets an exact mean and
variance without a column per residual. Numpy only: the sweep, the replay and the simulator call the same code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from xlamaml.trainables.assignment import parse_assignment

GROUPS = ("target", "method", "support", "query", "cell", "target x support", "target x query")
EFFECTS = (*GROUPS, "side")  # the groups, then the side-information slopes (one variance for them all, fitted too)
INTERCEPT_SD = 10.0  # prior sd (points) of the intercept: wide, not fitted
VAR_FLOOR = 1e-4  # points^2: a group's variance never reaches 0 (EM would stay there)


@dataclass(frozen=True)
class Curve:
    """What a run stopped at fraction f of the meta steps sees of the full-budget gain: y = scale * g + extra noise."""

    scale: Mapping[float, float] = field(default_factory=dict)  # fraction -> a_f (1 at the full budget)
    extra_var: Mapping[float, float] = field(default_factory=dict)  # fraction -> tau_f^2, points^2

    def at(self, f: float) -> tuple[float, float]:
        """Return (a_f, tau_f^2) at fraction f: the recorded fraction at or below it, (1, 0) at the full budget,
        the simulator's prior (f ** 0.5, 4 (1 - f) / f points^2) where nothing was measured."""
        if f >= 1 - 1e-9:
            return 1.0, 0.0
        known = [x for x in self.scale if x <= f + 1e-9]
        if not known:
            return f ** 0.5, 4.0 * (1 - f) / f
        x = max(known)
        return float(self.scale[x]), float(self.extra_var.get(x, 0.0))


@dataclass(frozen=True)
class Observation:
    """One dev estimate of a (target, cell) gain, points: its value, its measured variance and its fraction."""

    target: str
    cell: str
    value: float
    var: float
    fraction: float = 1.0


@dataclass
class Posterior:
    """The fitted map: posterior mean and sd (targets, cells) of the full-budget gains, NaN where not judged."""

    targets: list[str]
    cells: list[str]
    mean: np.ndarray
    sd: np.ndarray
    variances: dict[str, float]  # group -> fitted variance (points^2), "residual" included
    # For covariances: g = u theta + (known) + an independent part; theta ~ N(., cov).
    u: np.ndarray | None = None  # (targets * cells, parameters)
    cov: np.ndarray | None = None  # (parameters, parameters)
    own_var: np.ndarray | None = None  # (targets * cells,) variance of the independent part (the residual's)

    def interval(self, z: float = 1.645) -> tuple[np.ndarray, np.ndarray]:
        """Return the (lower, upper) bounds mean -/+ z sd (z = 1.645: a 90% interval)."""
        return self.mean - z * self.sd, self.mean + z * self.sd

    def covariance(self, t: int, c: int) -> np.ndarray:
        """Return the (cells,) posterior covariance of target t's gains with g[t, c] (points^2)."""
        n_c = len(self.cells)
        rows = slice(t * n_c, (t + 1) * n_c)
        out = self.u[rows] @ (self.cov @ self.u[t * n_c + c])
        out[c] += self.own_var[t * n_c + c]
        return out


def cell_levels(cell: str) -> dict[str, str]:
    """Return a cell's method, support and query labels (x-maml: support and query are its one language)."""
    a = parse_assignment(cell)
    query = "+".join(a.query)
    support = "+".join(a.support) if a.method != "x-maml" else query
    return {"method": a.method, "support": support, "query": query, "cell": cell}


def _levels(targets: Sequence[str], cells: Sequence[str]) -> dict[str, np.ndarray]:
    """Return group -> (targets, cells) array of level labels."""
    per_cell = [cell_levels(c) for c in cells]
    out = {}
    for g in GROUPS:
        rows = []
        for t in targets:
            if g == "target":
                rows.append([t] * len(cells))
            elif " x " in g:
                part = g.split(" x ")[1]
                rows.append([f"{t}|{lv[part]}" for lv in per_cell])
            else:
                rows.append([lv[g] for lv in per_cell])
        out[g] = np.array(rows, dtype=object)
    return out


@dataclass
class Design:
    """The columns of the effects for every (target, cell): one-hot per group level, then side covariates."""

    targets: list[str]
    cells: list[str]
    x: np.ndarray  # (targets * cells, columns), row t * len(cells) + c
    group_of: np.ndarray  # (columns,) group index into EFFECTS (the last: a side covariate); -1 the intercept

    @classmethod
    def build(cls, targets: Sequence[str], cells: Sequence[str], side: np.ndarray | None = None) -> "Design":
        """Return the design of a map; `side` is (targets, cells, k) covariates (standardised here) or None."""
        levels = _levels(targets, cells)
        cols, groups = [np.ones((len(targets) * len(cells), 1))], [-1]
        seen: set[tuple[int, ...]] = set()
        for gi, g in enumerate(GROUPS):
            lv = levels[g].ravel()
            names = list(dict.fromkeys(lv))
            # A group with one level is the intercept; one that splits the (target, cell) entries exactly as an
            # earlier group does (an en -> aux map: query is cell, target x support is target) would only split its
            # variance in two: both are left out.
            idx = {n: i for i, n in enumerate(names)}
            partition = tuple(idx[v] for v in lv)  # level codes in order of first appearance: label-free
            if len(names) < 2 or partition in seen:
                continue
            seen.add(partition)
            onehot = np.zeros((lv.size, len(names)))
            onehot[np.arange(lv.size), [idx[v] for v in lv]] = 1
            cols.append(onehot)
            groups += [gi] * len(names)
        if side is not None and side.size:
            s = side.reshape(len(targets) * len(cells), -1).astype(float)
            sd = s.std(axis=0)
            keep = sd > 0
            cols.append((s[:, keep] - s[:, keep].mean(axis=0)) / sd[keep])
            groups += [len(GROUPS)] * int(keep.sum())
        return cls(list(targets), list(cells), np.hstack(cols), np.array(groups))


def fit(design: Design, observations: Sequence[Observation], curve: Curve = Curve(),
        start: Mapping[str, float] | None = None, iterations: int = 50, judged: np.ndarray | None = None,
        offset_var: Mapping[str, float] | None = None, run_var: Mapping[str, float] | None = None) -> Posterior:
    """Return the posterior of every (target, cell) gain given the observations (EM on the groups' variances,
    from `start` or 1 point^2 each; stops early once they settle).

    `offset_var` (target -> points^2): the part of the dev estimates' error that every cell of a target shares (the
    same dev items against the same baseline outcomes; `shared_item_var` measures it). It does not move a target's
    ranking, but an absolute gain is only known up to it: it enters as a per-target offset of the observations with
    that known variance, outside the latent gains.

    `run_var` (cell -> points^2): the part of a cell's observations' error that all of its targets share (a run's seed
    moves every target it is scored on together; over s seeds, the shared seed variance over s). It enters as a
    per-cell offset of the observations, so that an average over many targets of one run is not taken for more
    than one run's worth. The observations' own variances must then leave that part out (`dev_observation`'s
    `shared_seed_var`)."""
    n_t, n_c = len(design.targets), len(design.cells)
    tix = {t: i for i, t in enumerate(design.targets)}
    cix = {c: i for i, c in enumerate(design.cells)}
    best: dict[tuple[int, int], Observation] = {}
    for o in observations:  # the highest fraction of each (t, c); at equal fractions the lowest variance
        key = (tix[o.target], cix[o.cell])
        if key not in best or (o.fraction, -o.var) > (best[key].fraction, -best[key].var):
            best[key] = o
    keys = sorted(best)
    rows = np.array([t * n_c + c for t, c in keys], dtype=int)
    obs = [best[k] for k in keys]
    a = np.array([curve.at(o.fraction)[0] for o in obs])
    y = np.array([o.value for o in obs])
    v = np.array([o.var + curve.at(o.fraction)[1] for o in obs])
    present = [g for i, g in enumerate(EFFECTS) if (design.group_of == i).any()]
    variances = {g: 1.0 for g in present} | {"residual": 1.0} | {k: val for k, val in (start or {}).items()
                                                                  if k in present or k == "residual"}
    # Parameters: the design's effects, then one dev offset per target (known prior variance; observations only).
    # Observation-only offsets with known variances: one per target (shared dev items), one per cell (shared runs).
    offsets = np.array([float((offset_var or {}).get(t, 0.0)) for t in design.targets]
                       + [float((run_var or {}).get(c, 0.0)) for c in design.cells])
    e_off = np.zeros((len(obs), n_t + n_c))
    e_off[np.arange(len(obs)), [t for t, _ in keys]] = 1
    e_off[np.arange(len(obs)), [n_t + c for _, c in keys]] = 1
    used = offsets > 0  # an offset of variance 0 is no parameter at all
    offsets, e_off = offsets[used], e_off[:, used]
    # (observations, p + offsets): y = z theta + a r + e
    z = np.hstack([design.x[rows] * a[:, None], e_off])
    gi = np.concatenate([design.group_of, np.full(int(used.sum()), -3)])

    def solve(var: Mapping[str, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return (theta's posterior mean, covariance, each observation's total noise) under the variances."""
        prior = _prior_var(gi, var, offsets)
        noise = a ** 2 * var["residual"] + v
        return *_effects_posterior(z, y, noise, prior), noise

    for _ in range(max(1, iterations)):
        m, cov, noise = solve(variances)
        new = dict(variances)
        for g_index, g in enumerate(EFFECTS):
            cols = gi == g_index
            if cols.any():
                new[g] = max(VAR_FLOOR, float((m[cols] ** 2 + np.diag(cov)[cols]).sum() / cols.sum()))
        if len(obs):
            k = a * variances["residual"] / noise  # E[r | y, theta] = k (y - z theta)
            r_mean = k * (y - z @ m)
            r_var = variances["residual"] * (1 - k * a) + k ** 2 * _quad(z, cov)
            new["residual"] = max(VAR_FLOOR, float(np.mean(r_mean ** 2 + r_var)))
        # Settled: every variance within 0.1% of its last value, or too small to matter (shrinking to the floor).
        settled = all(abs(np.log(new[g] / variances[g])) < 1e-3 or max(new[g], variances[g]) < 1e-3 for g in new)
        variances = new
        if settled:
            break
    m, cov, noise = solve(variances)
    # Every entry as g = u theta + (k y) + an independent part of variance own: unobserved u = [x, 0], own = the
    # residual's variance; observed (E[r | theta, y] = k (y - z theta)) u = [x, 0] - k z, own = var(r | theta, y).
    u = np.hstack([design.x, np.zeros((n_t * n_c, len(offsets)))])
    own = np.full(n_t * n_c, variances["residual"])
    mean = u @ m
    if len(obs):
        k = a * variances["residual"] / noise
        u[rows] -= k[:, None] * z
        mean[rows] = u[rows] @ m + k * y
        own[rows] = variances["residual"] * (1 - k * a)
    var = _quad(u, cov) + own
    mean, sd = mean.reshape(n_t, n_c), np.sqrt(np.maximum(var, 0)).reshape(n_t, n_c)
    if judged is not None:
        mean, sd = np.where(judged, mean, np.nan), np.where(judged, sd, np.nan)
    return Posterior(design.targets, design.cells, mean, sd, variances, u, cov, own)


def _quad(x: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """Return each row's quadratic form x_i cov x_i (through one matrix product: a three-operand einsum is ~50x
    slower at 3,000 x 700)."""
    return ((x @ cov) * x).sum(axis=1)


def _prior_var(group_of: np.ndarray, variances: Mapping[str, float], offsets: np.ndarray) -> np.ndarray:
    """Return each parameter's prior variance: its group's (side slopes one group), the intercept's or a dev
    offset's (-3)."""
    out = np.empty(group_of.size)
    for i, g in enumerate(group_of):
        out[i] = INTERCEPT_SD ** 2 if g == -1 else variances[EFFECTS[g]] if g >= 0 else 0.0
    out[group_of == -3] = offsets
    return out


def _effects_posterior(x: np.ndarray, y: np.ndarray, noise: np.ndarray, prior: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Return the effects' posterior mean and covariance: y = x b + e, e ~ N(0, diag(noise)), b ~ N(0, diag(prior))."""
    if not len(y):
        return np.zeros(prior.size), np.diag(prior)
    if len(y) < prior.size:  # fewer observations than effects: invert in the observations' space (Woodbury)
        dx = x * prior  # (obs, params): x D
        gram = dx @ x.T + np.diag(noise)
        gain = np.linalg.solve(gram, dx).T  # (params, obs): D x' (x D x' + N)^-1
        cov = np.diag(prior) - gain @ dx
        mean = gain @ y
    else:
        cov = np.linalg.inv((x.T / noise) @ x + np.diag(1 / prior))
        mean = cov @ (x.T @ (y / noise))
    return mean, (cov + cov.T) / 2


def dev_observation(target: str, cell: str, outcomes: np.ndarray, base: np.ndarray, seed_var: float,
                    fraction: float = 1.0, scale: float = 100.0, shared_seed_var: float = 0.0) -> Observation:
    """Return the Observation of a cell's per-item dev outcomes (seeds, items) against the baseline's (items): the
    seed-mean gain in points, its variance over items plus `seed_var` (points^2) over the seeds, less the part of it
    every target of a run shares (`shared_seed_var`: fit's `run_var` carries that)."""
    x = np.atleast_2d(np.asarray(outcomes, dtype=float))
    d = scale * (x.mean(axis=0) - np.asarray(base, dtype=float))
    item_var = float(d.var(ddof=1)) / d.size if d.size > 1 else 0.0
    own = max(0.0, seed_var - shared_seed_var)
    return Observation(target, cell, float(d.mean()), item_var + own / len(x), fraction)


def shared_seed_var(per_seed: Sequence[np.ndarray]) -> float | None:
    """Return the part of the seed variance (points^2) that a run's targets share, from cells run with two or more
    seeds: each array (targets, seeds) of one cell's per-seed gains; the mean over cells and target pairs of the
    covariance of two targets' seed deviations. None when no cell has two seeds and two targets."""
    parts = []
    for g in per_seed:
        g = np.asarray(g, dtype=float)
        if g.ndim != 2 or g.shape[0] < 2 or g.shape[1] < 2:
            continue
        d = g - g.mean(axis=1, keepdims=True)
        c = d @ d.T / (g.shape[1] - 1)  # (targets, targets) covariance over seeds
        n = len(c)
        parts.append((c.sum() - np.trace(c)) / (n * (n - 1)))
    return max(0.0, float(np.mean(parts))) if parts else None


def shared_item_var(outcomes: Sequence[np.ndarray], base: np.ndarray, scale: float = 100.0) -> float:
    """Return the error variance (points^2) that the dev gains of different cells of one target share: the mean
    covariance over items of two cells' per-item gains (seed means minus the baseline), over the items' count."""
    d = np.stack([scale * (np.atleast_2d(np.asarray(x, float)).mean(axis=0) - base) for x in outcomes])
    if len(d) < 2 or d.shape[1] < 2:
        return 0.0
    c = np.cov(d)
    n = len(d)
    return max(0.0, float((c.sum() - np.trace(c)) / (n * (n - 1)))) / d.shape[1]
