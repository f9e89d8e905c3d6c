"""The simulated world that benchmarks/adaptive_sim.py and benchmarks/calibrate_sim.py share, and that `xlamaml plan`
runs a predictive sweep on (simulated_search.py): true gains, noise, and every measurement a method may take of them,
drawn lazily and seeded per repetition.

Ground truth: a gain matrix, target x cell, in points over the baseline. Synthetic ones are shaped like the paper's
Figure 2: mostly small gains (0 to 5 points), a few harmful query languages, near-ties, cells that share a query
language alike (gain = query effect + support effect + query x target affinity + a small rest); a cell is judged on
every target but those it trained on (`Assignment.trained_on`: its auxiliary languages; English never counts). A
measured one is a CSV in long layout, header `target,cell,gain` (gain in points, one row per judged pair); a cell
with no row for a target is not judged on it (its training data is that target's dev set).

Noise (every value a field of `Noise`, a flag of adaptive_sim.py):
- dev items per target at the full budget (`dev_items`, 500: eval.dev_max_examples); a rung scores the first ones.
- per-item outcomes: the baseline's are 0/1 at an accuracy of 55-75%; a run flips each item away from the baseline's
  outcome with a paired disagreement rate `disagree` (0.17), flips chosen so that the run's mean shift is its gain.
  Seeds of a cell share a part of their flips (`seed_share`, 0.5: seeds of one cell change many of the same items);
  cells flip independently of each other.
- seed noise: a per-(cell, seed) offset of the run's gain, sd `seed_sd` (0.8 points).
- low budgets: a run at a fraction f of the meta steps measures f**shrink * (gain + tau(f) * Z), Z a fixed normal
  per (target, cell) with the target's spread of gains, tau(f)**2 proportional to (1 - f) / f, scaled so that the
  mean Spearman correlation of that signal with the full-budget gains is `rank_corr` at `rank_corr_at` (0.7 at 25%).
  `shrink` 0.5: gains at 25% are half.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import pandas as pd

from xlamaml.search.predictive import prior
from xlamaml.trainables.assignment import parse_assignment


@dataclass(frozen=True)
class GainMap:
    """Ground truth: gains (targets, cells) in points, NaN where a cell is not judged on a target."""

    name: str
    targets: list[str]
    cells: list[str]
    gains: np.ndarray

    @property
    def judged(self) -> np.ndarray:
        """Return the (targets, cells) mask of judged pairs."""
        return ~np.isnan(self.gains)

    def excluded(self) -> dict[str, list[str]]:
        """Return target -> the cells not judged on it (decide's `excluded`)."""
        return {t: [c for j, c in enumerate(self.cells) if np.isnan(self.gains[i, j])]
                for i, t in enumerate(self.targets)}


@dataclass(frozen=True)
class Noise:
    """How measurements scatter around the true gains (see the module docstring)."""

    dev_items: int = 500
    test_items: int = 5010
    disagree: float = 0.17
    seed_sd: float = 0.8
    seed_share: float = 0.5
    rank_corr: float = 0.7
    rank_corr_at: float = 0.25
    shrink: float = 0.5
    seeds: int = 3


@dataclass(frozen=True)
class Cost:
    """Seconds per meta step and per evaluated item, and the meta stage's steps and report interval."""

    step_s: float = 0.465
    item_s: float = 0.0078
    total_steps: int = 500
    per_report: int = 25

    def train(self, steps: int) -> float:
        """Return the seconds of `steps` meta steps."""
        return steps * self.step_s

    def evaluate(self, items: int) -> float:
        """Return the seconds of scoring `items` items."""
        return items * self.item_s


LANGS = ["ar", "bg", "de", "el", "en", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur", "vi", "zh"]


# ---------------------------------------------------------------------------------------------------- gain maps


def _query_effects(rng: np.random.Generator, langs: list[str]) -> np.ndarray:
    """Return each query language's main effect: mostly 0-4 points, three harmful ones."""
    a = rng.normal(1.8, 1.2, len(langs))
    a[rng.choice(len(langs), 3, replace=False)] = -rng.uniform(0.5, 3.0, 3)
    return a


def not_trained_on(targets: list[str], cells: list[str], gains: np.ndarray) -> np.ndarray:
    """Return `gains` (targets, cells) with NaN where the cell trained on the target (`Assignment.trained_on`: one of
    its auxiliary languages; English never is), so that such pairs are not judged."""
    trained = np.array([[parse_assignment(c).trained_on(t) for c in cells] for t in targets], dtype=bool)
    return np.where(trained, np.nan, gains)


def synthetic_pairs(seed: int = 0, langs: list[str] = LANGS) -> GainMap:
    """Return a Figure-2-like pairs map: every ordered pair (X-MAML on the diagonal), targets = the languages."""
    rng = np.random.default_rng(seed)
    n = len(langs)
    a, b = _query_effects(rng, langs), rng.normal(0, 0.5, n)
    affinity = rng.normal(0, 0.8, (n, n))  # query x target
    cells, gains = [], []
    for s in range(n):
        for q in range(n):
            cells.append(f"x-maml:{langs[q]}" if s == q else f"xla-maml:{langs[s]}>{langs[q]}")
            g = a[q] + b[s] + affinity[q] + rng.normal(0, 0.3, n)
            gains.append(np.clip(g, -6, 8))
    return GainMap("pairs", list(langs), cells, not_trained_on(list(langs), cells, np.array(gains).T))


def synthetic_aux(seed: int = 0, langs: list[str] = LANGS) -> GainMap:
    """Return a Figure-2-like en -> aux map: one cell per auxiliary language, targets = every language."""
    rng = np.random.default_rng(seed + 1000)
    n = len(langs)
    a = _query_effects(rng, langs)
    affinity = rng.normal(0, 0.8, (n, n))
    cells, gains = [], []
    for q in range(n):
        if langs[q] == "en":
            continue
        cells.append(f"xla-maml:en>{langs[q]}")
        g = a[q] + affinity[q] + rng.normal(0, 0.3, n)
        gains.append(np.clip(g, -6, 8))
    return GainMap("en->aux", list(langs), cells, not_trained_on(list(langs), cells, np.array(gains).T))


def synthetic_map(targets: list[str], cells: list[str], seed: int = 0) -> GainMap:
    """Return a Figure-2-like map over any cells and targets (what `xlamaml plan` assumes without a prior map): a
    cell's gain is its query languages' mean effect (mostly 0-4 points, three harmful languages) + its non-English
    support languages' mean effect (sd 0.5) + the query x target affinity (sd 0.8) + a rest (sd 0.3), clipped to
    [-6, 8]; NaN where the cell trained on the target."""
    rng = np.random.default_rng(seed + 2000)
    parsed = [parse_assignment(c) for c in cells]
    langs = list(dict.fromkeys([*LANGS, *targets, *(x for p in parsed for x in (*p.support, *p.query))]))
    where = {x: i for i, x in enumerate(langs)}
    a, b = _query_effects(rng, langs), rng.normal(0, 0.5, len(langs))
    affinity = rng.normal(0, 0.8, (len(langs), len(langs)))  # query x target
    cols = [where[t] for t in targets]
    gains = []
    for p in parsed:
        q = [where[x] for x in p.query]
        s = [where[x] for x in p.support if x != "en"]
        g = a[q].mean() + (b[s].mean() if s else 0.0) + affinity[q][:, cols].mean(axis=0)
        gains.append(np.clip(g + rng.normal(0, 0.3, len(targets)), -6, 8))
    return GainMap("synthetic", list(targets), list(cells), not_trained_on(list(targets), list(cells),
                                                                            np.array(gains).T))


def gain_map(rows: list[tuple[str, str, float]], name: str) -> GainMap:
    """Return the GainMap of (target, cell, gain) rows in points; pairs without a row are NaN (not judged)."""
    targets = list(dict.fromkeys(t for t, _, _ in rows))
    cells = list(dict.fromkeys(c for _, c, _ in rows))
    gains = np.full((len(targets), len(cells)), np.nan)
    for t, c, v in rows:
        gains[targets.index(t), cells.index(c)] = v
    return GainMap(name, targets, cells, gains)


def read_gains(path: str) -> GainMap:
    """Return the gain map of a CSV with header target,cell,gain (points); missing pairs are not judged; a bad row is
    a ValueError naming the file and line (the reader `xlamaml prior --gains` uses)."""
    return gain_map([(t, c, g) for (t, c), g in prior.read_gains(path).items()], path)


# ---------------------------------------------------------------------------------------------- rank correlation


def spearman_rows(x: np.ndarray, y: np.ndarray, mask: Optional[np.ndarray] = None) -> np.ndarray:
    """Return each row's Spearman correlation of x and y over its masked entries (all by default), computed by pandas:
    average ranks for ties, NaN for a row with fewer than two entries or constant ranks."""
    x, y = np.atleast_2d(np.asarray(x, float)), np.atleast_2d(np.asarray(y, float))
    keep = np.ones(x.shape, bool) if mask is None else np.atleast_2d(mask)
    ranks_x = pd.DataFrame(np.where(keep, x, np.nan)).rank(axis=1)
    ranks_y = pd.DataFrame(np.where(keep, y, np.nan)).rank(axis=1)
    return ranks_x.corrwith(ranks_y, axis=1).to_numpy()


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Return Spearman's correlation of two vectors (average ranks for ties; NaN when either is constant)."""
    return float(spearman_rows(x, y)[0])


def mean_spearman(x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> float:
    """Return the mean over rows with more than two masked entries of Spearman's correlation of x and y over them."""
    return float(np.nanmean(spearman_rows(x, y, mask)[np.asarray(mask).sum(axis=1) > 2]))


def tau_scale(f: float, at: float) -> float:
    """Return tau(f) / tau(at): the budget perturbation's scale at fraction f relative to that at fraction `at`."""
    return math.sqrt(((1 - f) / f) / ((1 - at) / at))


def latent_spearman(gmap: GainMap, tau: float, draws: int = 20) -> float:
    """Return the mean Spearman of gains + tau Z with the gains (judged pairs, per target) over fixed draws of Z."""
    return float(np.mean([mean_spearman(g + tau * z, g, gmap.judged) for g, z in _latent_draws(gmap, draws)]))


def _latent_draws(gmap: GainMap, draws: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Return `draws` pairs (gains with NaN as 0, Z times each target's spread of gains), the same for every call."""
    rng = np.random.default_rng(12345)
    g = np.nan_to_num(gmap.gains)
    sd = np.nanstd(gmap.gains, axis=1, keepdims=True)
    return [(g, rng.normal(0, 1, g.shape) * sd) for _ in range(draws)]


_TAU: dict[tuple[int, float], tuple[float, float]] = {}


def calibrate_tau(gmap: GainMap, target: float, draws: int = 20) -> tuple[float, float]:
    """Return (tau at the calibration fraction, the mean Spearman it gives) so the latter is `target`."""
    if (id(gmap), target) not in _TAU:
        _TAU[id(gmap), target] = _calibrate_tau(gmap, target, draws)
    return _TAU[id(gmap), target]


def _calibrate_tau(gmap: GainMap, target: float, draws: int) -> tuple[float, float]:
    """Return calibrate_tau's answer, computed (bisection on the mean Spearman over fixed draws)."""
    zs = _latent_draws(gmap, draws)

    def corr(tau: float) -> float:
        """Return the mean Spearman at `tau` over the fixed draws."""
        return float(np.mean([mean_spearman(g + tau * z, g, gmap.judged) for g, z in zs]))

    lo, hi = 0.0, 20.0
    for _ in range(30):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if corr(mid) > target else (lo, mid)
    return (lo + hi) / 2, corr((lo + hi) / 2)


# ------------------------------------------------------------------------------------------------------ the world


class World:
    """One repetition: the true gains and every measurement any method may take, drawn lazily and shared."""

    def __init__(self, gmap: GainMap, noise: Noise, tau_at: float, rep: int):
        self.map, self.noise, self.tau_at, self.rep = gmap, noise, tau_at, rep
        rng = np.random.default_rng([rep, 1])
        n_t, n_c = gmap.gains.shape
        self.p0 = rng.uniform(0.55, 0.75, n_t)
        self.base = (rng.random((n_t, noise.dev_items)) < self.p0[:, None]).astype(np.int8)
        self.z = rng.normal(0, 1, (n_t, n_c)) * np.nanstd(gmap.gains, axis=1, keepdims=True)
        self.offsets = rng.normal(0, noise.seed_sd, (n_c, noise.seeds))
        self.true = np.nan_to_num(gmap.gains, nan=-np.inf)
        self._cache: dict[tuple[int, int], np.ndarray] = {}

    def tau(self, f: float) -> float:
        """Return the budget perturbation's scale at fraction f (0 at the full budget)."""
        return self.tau_at * tau_scale(f, self.noise.rank_corr_at) if f < 1 else 0.0

    def outcomes(self, cell: int, steps: int, total: int) -> np.ndarray:
        """Return the (targets, seeds, dev items) 0/1 outcomes of a cell's runs after `steps` meta steps."""
        key = (cell, steps)
        if key not in self._cache:
            f = steps / total
            rng = np.random.default_rng([self.rep, 2, cell, steps])
            gain = f ** self.noise.shrink * (np.nan_to_num(self.map.gains[:, cell]) + self.tau(f) * self.z[:, cell])
            g = (gain[:, None] + self.offsets[cell][None, :]) / 100  # (targets, seeds)
            r, p0 = self.noise.disagree, self.p0[:, None]
            up = np.clip((r + g) / (2 * (1 - p0)), 0, 1)[..., None]  # 0 -> 1
            down = np.clip((r - g) / (2 * p0), 0, 1)[..., None]  # 1 -> 0
            n_t, n_s, n_i = len(self.p0), self.noise.seeds, self.noise.dev_items
            shared = rng.random((n_t, 1, n_i))
            own = rng.random((n_t, n_s, n_i))
            u = np.where(rng.random((n_t, 1, n_i)) < self.noise.seed_share, shared, own)
            b = self.base[:, None, :]
            self._cache[key] = np.where(b == 1, u >= down, u < up).astype(np.int8)
        return self._cache[key]
