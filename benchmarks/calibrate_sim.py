"""Measure benchmarks/adaptive_sim.py's noise flags on real runs: a finished grid sweep (and an adaptive one).

    python benchmarks/calibrate_sim.py GRID_EXP [--adaptive ADAPTIVE_EXP] [--out gains.csv] [--fit-reps 10]
    python benchmarks/calibrate_sim.py --smoke-test          # a synthetic experiment written to a temp dir: seconds

    # e.g. after `python benchmarks/adaptive_vs_grid.py` (6 languages, 36 pair cells x seeds 42, 43 + a baseline):
    python benchmarks/calibrate_sim.py runs/adaptive-vs-grid-small-grid \\
        --adaptive runs/adaptive-vs-grid-small-adaptive --out gains.csv
    python benchmarks/adaptive_sim.py --gains gains.csv <the printed flags>

GRID_EXP: a grid sweep's folder; every trial folder holds params.json ({"trial": {"assignment", "seed"}}),
result.json (one JSON report a line; the last has dev/<lang>/acc and test/<lang>/acc) and
predictions/{dev,test}-<lang>.items.tsv (header `uid<TAB>acc`, per-item 0/1). One trial is the baseline (assignment
`baseline`). Targets: the languages with dev items. A cell is not judged on a target whose dev data its meta stage
trained on (search/adaptive.py's `excluded`: the target is one of its support or query languages); every statistic
below is over judged (cell, target) pairs unless it says otherwise.

What is measured, and how it maps onto adaptive_sim.py's flags:

- `--disagree`: the sim flips a run's items away from the baseline's 0/1 outcomes with probability r in all (item
  mean over both directions). Measured: the fraction of items whose outcome differs between a cell's trial and the
  baseline trial, averaged over trials and judged targets (dev and test separately; the flag gets dev's, the split
  the sim's rungs read).
- `--seed-share`: in the sim, per item, with that probability the seeds of one cell draw their flip with one shared
  uniform (same outcome), else independently. So the two seeds disagree on an item with probability
  (1 - share) x (the rate they would with independent draws). Measured: share = 1 - observed seed-pair item
  disagreement / the disagreement expected from each seed's own flip rates (0->1 and 1->0 against the baseline) drawn
  independently, pooled over cells and judged targets. The same statistic between two different cells of one seed
  (the sim assumes 0: cells flip independently) is printed as the cross-cell share; a share above it is what seeds
  of one cell share beyond items that every run tends to flip.
- `--seed-sd`: the sim adds a per-(cell, seed) offset of sd seed_sd to the gain; with n items the item draws add
  variance on top. For two seeds, E[(acc1 - acc2)**2] = 2 seed_sd**2 + q / n, q the seed-pair item disagreement.
  Measured: the pooled seed sd sqrt(mean((acc1 - acc2)**2) / 2) (what one sees), and the offset part
  sqrt((mean((acc1 - acc2)**2) - mean(q / n)) / 2) (the flag); their ratio squared is the share of the seed-to-seed
  variance that is seed (offset) noise, the rest item noise. The sim's offset is common to all targets of a run: the
  part of the offset variance common to a cell's targets (mean cross-target product of the seed differences) is
  printed too.
- `--rank-corr`, `--rank-corr-at`, `--shrink` (needs the adaptive sweep): the sim scores a run at a fraction f of the
  meta steps as f**shrink x (gain + tau(f) Z) plus its item and seed noise, tau set so that the mean per-target
  Spearman correlation of gain + tau Z with gain (no item or seed noise) is rank_corr at f = rank_corr_at. Measured
  raw, per target over its judged cells: Spearman between the adaptive sweep's rung-0 dev estimates (its first
  decision's `estimates`; 1 seed, the rung's steps and dev items) and the grid's full-budget dev accuracy of the same
  cell and seed (and the grid's 2-seed mean test gain); the slope of rung-0 dev gains on full-budget gains (both
  minus the baseline's dev accuracy; through the origin, and ordinary least squares). Both raw values carry item and
  seed noise the sim's flags do not, so the flags are fitted by simulation (indirect inference): on the measured gain
  map with the measured disagreement, seed sd and share, the rung's fraction and items, adaptive_sim's World draws
  the same statistics for a grid of (rank_corr at the rung's fraction, shrink); the pair whose mean simulated
  statistics are nearest the measured ones (dev-vs-dev Spearman and slope through the origin) is printed, with the
  equivalent rank correlation at 25% (tau(f) scales as sqrt((1 - f) / f)).
- `--out`: the grid's gain matrix, CSV `target,cell,gain`: 2-seed (all seeds) mean test accuracy minus the
  baseline's, in points, one row per judged pair; excluded pairs have no row (adaptive_sim's read_gains: a cell with
  no row for a target is not judged on it).

Results on real experiments: benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.adaptive_sim import GainMap, Noise, World, calibrate_tau  # noqa: E402


# ---------------------------------------------------------------------------------------------------------------------
# Reading


def cell_langs(cell: str) -> set[str]:
    """Return the languages whose dev data a cell's meta stage trains on: `x-maml:l` -> {l}, `xla-maml:a>b` -> {a,b}."""
    if ":" not in cell:
        return set()
    spec = cell.split(":", 1)[1]
    out: set[str] = set()
    for part in spec.split(">"):
        out |= {x for x in part.split(",") if x}
    return out


@dataclass
class Trial:
    """One trial: its cell and seed, last report, and per-item 0/1 outcomes per split and language (uid-aligned)."""

    folder: str
    cell: str
    seed: int
    report: dict
    items: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)  # (split, lang) -> 0/1
    uids: dict[tuple[str, str], list[str]] = field(default_factory=dict)


def read_items(path: Path) -> tuple[list[str], np.ndarray]:
    """Return (uids, 0/1 outcomes) of a predictions/*.items.tsv file."""
    uids, vals = [], []
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        col = header.index("acc")
        for line in f:
            parts = line.rstrip("\n").split("\t")
            uids.append(parts[0])
            vals.append(float(parts[col]))
    return uids, np.asarray(vals)


def last_report(path: Path) -> dict:
    """Return the last JSON line of a result.json ({} if none)."""
    if not path.exists():
        return {}
    lines = [x for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
    return json.loads(lines[-1]) if lines else {}


def read_experiment(exp: Path, with_items: bool = True) -> list[Trial]:
    """Return the trials of an experiment folder (those with params.json)."""
    out = []
    # Every folder but assets is a trial; one Ray has not started yet has no params.json (counted, unfinished).
    for d in sorted(p for p in exp.iterdir() if p.is_dir() and p.name != "assets" and not p.name.startswith(".")):
        if not (d / "params.json").exists():
            out.append(Trial(d.name, "?", -1, {}))
            continue
        params = json.loads((d / "params.json").read_text(encoding="utf-8"))
        t = Trial(d.name, params["trial"]["assignment"], int(params["trial"]["seed"]), last_report(d / "result.json"))
        if with_items and (d / "predictions").is_dir():
            for f in sorted((d / "predictions").glob("*.items.tsv")):
                split, lang = f.name[: -len(".items.tsv")].split("-", 1)
                t.uids[split, lang], t.items[split, lang] = read_items(f)
        out.append(t)
    return out


def finished(t: Trial) -> bool:
    """Return whether a trial's last report has test metrics."""
    return any(k.startswith("test/") for k in t.report)


# ---------------------------------------------------------------------------------------------------------------------
# The grid's statistics


@dataclass
class Grid:
    """A finished grid: baseline trial, cells -> seed -> trial, targets."""

    base: Trial
    cells: dict[str, dict[int, Trial]]
    targets: list[str]

    def judged(self, cell: str, target: str) -> bool:
        """Return whether a cell is judged on a target (it did not train on that target's dev data)."""
        return target not in cell_langs(cell)

    def acc(self, split: str, cell: str, seed: int, target: str) -> float:
        """Return a trial's accuracy on a split and target from its items (fraction)."""
        return float(self.cells[cell][seed].items[split, target].mean())


def build_grid(trials: list[Trial]) -> Grid:
    """Return the grid of a list of trials; checks that every trial has the baseline's items in the same order."""
    bases = [t for t in trials if t.cell == "baseline"]
    if not bases:
        raise SystemExit("no baseline trial")
    base = min(bases, key=lambda t: t.seed)
    targets = sorted(lang for split, lang in base.items if split == "dev")
    cells: dict[str, dict[int, Trial]] = {}
    for t in trials:
        if t.cell == "baseline":
            continue
        for key, uids in base.uids.items():
            if t.uids.get(key) != uids:
                raise SystemExit(f"{t.folder}: {key[0]}-{key[1]} items differ from the baseline's")
        cells.setdefault(t.cell, {})[t.seed] = t
    return Grid(base, cells, targets)


def disagreement(g: Grid, split: str, judged_only: bool = True) -> tuple[float, int, int]:
    """Return (mean fraction of items where a trial's outcome differs from the baseline's, trials x targets, items)."""
    rates = []
    for cell, seeds in g.cells.items():
        for t in seeds.values():
            for lang in g.targets:
                if judged_only and not g.judged(cell, lang):
                    continue
                rates.append(float((t.items[split, lang] != g.base.items[split, lang]).mean()))
    return float(np.mean(rates)), len(rates), len(g.base.items[split, g.targets[0]])


def flip_rates(x: np.ndarray, base: np.ndarray) -> tuple[float, float]:
    """Return (P(1 | baseline 0), P(0 | baseline 1)) of a run's outcomes against the baseline's."""
    up = float(x[base == 0].mean()) if (base == 0).any() else 0.0
    down = float(1 - x[base == 1].mean()) if (base == 1).any() else 0.0
    return up, down


def expected_independent(a: np.ndarray, b: np.ndarray, base: np.ndarray) -> float:
    """Return the item disagreement of runs a and b if each flipped from the baseline independently at its rates."""
    ua, da = flip_rates(a, base)
    ub, db = flip_rates(b, base)
    p1 = float(base.mean())
    return p1 * (da * (1 - db) + db * (1 - da)) + (1 - p1) * (ua * (1 - ub) + ub * (1 - ua))


@dataclass
class SeedStats:
    """Seed-to-seed statistics of one split (points where they are accuracies)."""

    split: str
    pairs: int  # (cell, target) pairs with two seeds
    items: int
    seed_sd: float  # pooled over cells and targets: sqrt(mean(d**2) / 2), points
    offset_sd: float  # the part beyond item draws (the sim's --seed-sd), points
    offset_share: float  # offset variance / seed variance
    common_sd: float  # the part of the offset common to a cell's targets, points (sign kept under the root)
    share: float  # the sim's --seed-share: 1 - observed / independent seed-pair disagreement
    seed_disagree: float  # observed seed-pair item disagreement
    cross_share: float  # the same statistic between different cells of one seed (the sim: 0)
    cross_pairs: int
    cross_disagree: float  # observed item disagreement between different cells of one seed
    p_base: float  # the baseline's mean accuracy over the targets (fraction)


def seed_stats(g: Grid, split: str) -> SeedStats:
    """Return the seed statistics of a split over judged (cell, target) pairs with two seeds (the first two)."""
    d2, qn, obs, ind, pairs, cross_num, cross_den, n_cross = [], [], 0.0, 0.0, 0, 0.0, 0.0, 0
    common = []
    n = len(g.base.items[split, g.targets[0]])
    for cell, seeds in g.cells.items():
        ss = sorted(seeds)
        if len(ss) < 2:
            continue
        a, b = seeds[ss[0]], seeds[ss[1]]
        ds = []
        for lang in g.targets:
            if not g.judged(cell, lang):
                continue
            x, y, base = a.items[split, lang], b.items[split, lang], g.base.items[split, lang]
            d = 100 * (x.mean() - y.mean())
            q = float((x != y).mean())
            d2.append(d * d)
            qn.append(1e4 * q / len(x))
            obs += q
            ind += expected_independent(x, y, base)
            ds.append(d)
            pairs += 1
        ds = np.asarray(ds)
        if len(ds) > 1:  # mean cross-target product of seed differences: 2 x the common offset variance
            common.append(((ds.sum() ** 2 - (ds ** 2).sum()) / (len(ds) * (len(ds) - 1))) / 2)
    # Cross-cell: every pair of different cells, same (first) seed, on targets judged for both.
    names = sorted(g.cells)
    first = min(min(s) for s in g.cells.values())
    for i, c1 in enumerate(names):
        for c2 in names[i + 1:]:
            if first not in g.cells[c1] or first not in g.cells[c2]:
                continue
            for lang in g.targets:
                if not (g.judged(c1, lang) and g.judged(c2, lang)):
                    continue
                x, y = g.cells[c1][first].items[split, lang], g.cells[c2][first].items[split, lang]
                cross_num += float((x != y).mean())
                cross_den += expected_independent(x, y, g.base.items[split, lang])
                n_cross += 1
    var = float(np.mean(d2)) / 2
    off = max(0.0, (float(np.mean(d2)) - float(np.mean(qn))) / 2)
    cvar = float(np.mean(common)) if common else float("nan")
    return SeedStats(split, pairs, n, math.sqrt(var), math.sqrt(off), off / var if var else float("nan"),
                     math.copysign(math.sqrt(abs(cvar)), cvar), 1 - obs / ind if ind else float("nan"),
                     obs / pairs if pairs else float("nan"), 1 - cross_num / cross_den if cross_den else float("nan"),
                     n_cross, cross_num / n_cross if n_cross else float("nan"),
                     float(np.mean([g.base.items[split, lang].mean() for lang in g.targets])))


def independent_disagreement(r: float, p0: float) -> float:
    """Return the item disagreement of two runs that each flip from a baseline of accuracy p0 at rate r, gain 0,
    independently (adaptive_sim's World: 0 -> 1 with r / (2 (1 - p0)), 1 -> 0 with r / (2 p0))."""
    up, down = min(1.0, r / (2 * (1 - p0))), min(1.0, r / (2 * p0))
    return 2 * p0 * down * (1 - down) + 2 * (1 - p0) * up * (1 - up)


def effective_disagree(s: SeedStats) -> float:
    """Return the --disagree whose independent flips give two cells the observed cell-vs-cell item disagreement."""
    lo, hi = 0.0, 0.5
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if independent_disagreement(mid, s.p_base) < s.cross_disagree else (lo, mid)
    return (lo + hi) / 2


def gain_rows(g: Grid, split: str = "test") -> list[tuple[str, str, float]]:
    """Return (target, cell, gain) rows: all seeds' mean accuracy minus the baseline's, points, judged pairs only."""
    rows = []
    for lang in g.targets:
        base = float(g.base.items[split, lang].mean())
        for cell in sorted(g.cells):
            if not g.judged(cell, lang):
                continue
            mean = float(np.mean([t.items[split, lang].mean() for t in g.cells[cell].values()]))
            rows.append((lang, cell, 100 * (mean - base)))
    return rows


def signal_check(g: Grid) -> dict[str, float]:
    """Return how much of the within-target spread of the cells' gains is signal: per target, across its judged
    cells, the dev (all seeds' mean, dev items) and test gains (test items: independent item draws) covary only
    through the cells' true differences (and seed offsets, which dev and test share). Means over targets: Pearson and
    Spearman of dev vs test gains, the test gains' within-target sd, and the signal sd sqrt(mean covariance)."""
    dev = {(t, c): v for t, c, v in gain_rows(g, "dev")}
    test = {(t, c): v for t, c, v in gain_rows(g, "test")}
    pr, sr, cov, sd = [], [], [], []
    for lang in g.targets:
        cells = [c for (t, c) in test if t == lang]
        x, y = np.array([dev[lang, c] for c in cells]), np.array([test[lang, c] for c in cells])
        if len(cells) > 2:
            pr.append(float(np.corrcoef(x, y)[0, 1]))
            sr.append(spearman(x, y))
            cov.append(float(np.cov(x, y)[0, 1]))
            sd.append(float(y.std(ddof=1)))
    c = float(np.mean(cov))
    return {"pearson": float(np.mean(pr)), "spearman": float(np.mean(sr)), "test_sd": float(np.mean(sd)),
            "signal_sd": math.copysign(math.sqrt(abs(c)), c), "targets": len(pr)}


def gain_map(rows: list[tuple[str, str, float]], name: str) -> GainMap:
    """Return adaptive_sim's GainMap of (target, cell, gain) rows (missing pairs: NaN, not judged)."""
    targets = list(dict.fromkeys(t for t, _, _ in rows))
    cells = list(dict.fromkeys(c for _, c, _ in rows))
    gains = np.full((len(targets), len(cells)), np.nan)
    for t, c, v in rows:
        gains[targets.index(t), cells.index(c)] = v
    return GainMap(name, targets, cells, gains)


# ---------------------------------------------------------------------------------------------------------------------
# Low budget: the adaptive sweep's rung 0 against the grid


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Return Spearman's correlation (average ranks for ties)."""
    def ranks(v: np.ndarray) -> np.ndarray:
        order = np.argsort(v, kind="mergesort")
        r = np.empty(len(v))
        r[order] = np.arange(len(v), dtype=float)
        for u in np.unique(v):  # ties: average rank
            m = v == u
            if m.sum() > 1:
                r[m] = r[m].mean()
        return r
    rx, ry = ranks(np.asarray(x, float)), ranks(np.asarray(y, float))
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def slopes(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Return (slope through the origin, OLS slope) of y on x."""
    through = float((x * y).sum() / (x * x).sum())
    ols = float(np.polyfit(x, y, 1)[0])
    return through, ols


@dataclass
class LowBudget:
    """Rung-0 against full budget (raw, with item and seed noise)."""

    fraction: float
    steps: Optional[int]
    dev_items: int
    seed: int
    targets: int
    cells_per_target: float
    rho_dev: float  # mean over targets: rung-0 dev vs the grid's full-budget dev, same seed
    rho_test: float  # rung-0 dev vs the grid's all-seed mean test gain
    rho_dev_each: dict[str, float]
    slope0_dev: float  # through the origin, on full dev gain (same seed)
    slope_dev: float  # OLS
    slope0_test: float  # through the origin, on the grid's mean test gain
    slope_test: float
    pairs: int


def read_adaptive(exp: Path) -> dict:
    """Return the adaptive sweep's record (xlamaml_adaptive.json)."""
    path = exp / "xlamaml_adaptive.json"
    if not path.exists():
        raise FileNotFoundError(path)
    return json.loads(path.read_text(encoding="utf-8"))


def rung0(record: dict) -> tuple[dict, dict]:
    """Return (the first decision, its rung's entry) of an adaptive record, whichever keys it uses."""
    decisions = record.get("decisions") or []
    if not decisions:
        raise SystemExit("the adaptive record has no decision yet (rung 0 not done)")
    dec = decisions[0]
    rungs = record.get("rungs") or record.get("schedule") or []
    idx = dec.get("rung", dec.get("index", 0))
    rung = rungs[idx] if isinstance(rungs, list) and len(rungs) > idx and isinstance(rungs[idx], dict) else {}
    return dec, rung


def low_budget(g: Grid, record: dict, adaptive_trials: list[Trial], fraction: Optional[float],
               seed: Optional[int]) -> tuple[LowBudget, list[tuple[str, str, float, float, float]]]:
    """Return the raw low-budget statistics and the (target, cell, rung-0 gain, full dev gain, test gain) rows."""
    dec, rung = rung0(record)
    est = dec["estimates"]
    frac = fraction if fraction is not None else float(rung.get("fraction", rung.get("steps_fraction", 0.1)))
    steps = rung.get("steps") if isinstance(rung.get("steps"), int) else None
    items = rung.get("dev_items") or len(g.base.items["dev", g.targets[0]])
    if seed is None:
        seeds = rung.get("seeds")
        seed = int(seeds[0]) if isinstance(seeds, list) and seeds else min(min(s) for s in g.cells.values())
    # The baseline's dev accuracy on the rung's items: the adaptive sweep's own baseline if it has one.
    abase = [t for t in adaptive_trials if t.cell == "baseline" and t.items]
    base_trial = abase[0] if abase else g.base
    test_rows = {(t, c): v for t, c, v in gain_rows(g, "test")}
    rows, rho_d, rho_t, each = [], [], [], {}
    for lang in g.targets:
        b0 = float(base_trial.items["dev", lang][:items].mean())
        bfull = float(g.base.items["dev", lang].mean())
        cells = [c for c in sorted(est) if c in g.cells and g.judged(c, lang) and lang in est[c]
                 and seed in g.cells[c]]
        r0 = np.array([100 * (est[c][lang] - b0) for c in cells])
        full = np.array([100 * (g.acc("dev", c, seed, lang) - bfull) for c in cells])
        test = np.array([test_rows[lang, c] for c in cells])
        rows += [(lang, c, a, b, t) for c, a, b, t in zip(cells, r0, full, test)]
        if len(cells) > 2:
            each[lang] = spearman(r0, full)
            rho_d.append(each[lang])
            rho_t.append(spearman(r0, test))
    x0 = np.array([r[2] for r in rows])
    s0d, sd = slopes(np.array([r[3] for r in rows]), x0)
    s0t, st = slopes(np.array([r[4] for r in rows]), x0)
    per_target = len(rows) / max(1, len(each))
    return LowBudget(frac, steps, int(items), seed, len(each), per_target, float(np.nanmean(rho_d)),
                     float(np.nanmean(rho_t)), each, s0d, sd, s0t, st, len(rows)), rows


def simulated_stats(gmap: GainMap, noise: Noise, frac: float, items: int, reps: int,
                    total: int = 500) -> dict[str, tuple[float, float]]:
    """Return name -> (mean, sd over reps) of the low-budget statistics of adaptive_sim's World, measured the way
    low_budget measures the real runs: rung 0 = seed 0 at `frac` of the steps on the first `items` dev items; full
    dev = seed 0 at the full budget on the dev items; test = every seed's mean at the full budget on test items (the
    World's items after the dev ones: noise.dev_items holds dev + test). Names: rho_dev, rho_test, slope0_dev,
    slope0_test (Spearman means over targets; slopes through the origin of the rung-0 gain on the other)."""
    tau, _ = calibrate_tau(gmap, noise.rank_corr)
    steps = max(1, int(round(frac * total)))
    n_dev = noise.dev_items - noise.test_items
    out: dict[str, list[float]] = {k: [] for k in ("rho_dev", "rho_test", "slope0_dev", "slope0_test")}
    m = gmap.judged
    for rep in range(reps):
        w = World(gmap, noise, tau, 1000 + rep)
        base0, based, baset = (w.base[:, :items].mean(axis=1), w.base[:, :n_dev].mean(axis=1),
                               w.base[:, n_dev:].mean(axis=1))
        r0, dev, test = (np.full(gmap.gains.shape, np.nan) for _ in range(3))
        for c in range(len(gmap.cells)):
            r0[:, c] = 100 * (w.outcomes(c, steps, total)[:, 0, :items].mean(axis=1) - base0)
            full = w.outcomes(c, total, total)
            dev[:, c] = 100 * (full[:, 0, :n_dev].mean(axis=1) - based)
            test[:, c] = 100 * (full[:, :, n_dev:].mean(axis=(1, 2)) - baset)
        for name, other in (("dev", dev), ("test", test)):
            out["rho_" + name].append(np.nanmean([spearman(r0[i, m[i]], other[i, m[i]])
                                                  for i in range(len(gmap.targets))]))
            out["slope0_" + name].append(slopes(other[m], r0[m])[0])
    return {k: (float(np.mean(v)), float(np.std(v))) for k, v in out.items()}


FIT_ON = ("rho_test", "slope0_test")  # independent items: test items are not the rung's dev items


def fit_low_budget(gmap: GainMap, noise: Noise, lb: LowBudget, n_test: int, reps: int, rank_grid: list[float],
                   shrink_grid: list[float]) -> tuple[float, float, list[tuple[float, float, dict]]]:
    """Return (rank_corr at lb.fraction, shrink) whose simulated statistics are nearest the measured ones, and the
    grid's (rank_corr, shrink, statistics) rows. Distance: the gaps of FIT_ON's statistics over their simulated sds.
    (Dev-vs-dev statistics are printed, not fitted: a cell's rung-0 and full runs of one seed share dev items and
    their flips in the real runs, while the World draws them independently.)"""
    best, rows = None, []
    for rc in rank_grid:
        for sh in shrink_grid:
            nz = Noise(noise.dev_items + n_test, n_test, noise.disagree, noise.seed_sd, noise.seed_share, rc,
                       lb.fraction, sh, max(noise.seeds, 1))
            st = simulated_stats(gmap, nz, lb.fraction, lb.dev_items, reps)
            dist = sum(((st[k][0] - getattr(lb, k)) / max(st[k][1], 1e-3)) ** 2 for k in FIT_ON)
            st["dist"] = (dist, 0.0)
            rows.append((rc, sh, st))
            if best is None or dist < best[0]:
                best = (dist, rc, sh)
    return best[1], best[2], rows


def corr_at(gmap: GainMap, rank_corr: float, at: float, new_at: float) -> float:
    """Return the sim's latent mean Spearman at fraction new_at given rank_corr at fraction `at` (on gmap)."""
    from benchmarks.adaptive_sim import _spearman_rows
    tau, _ = calibrate_tau(gmap, rank_corr)
    tau_new = tau * math.sqrt(((1 - new_at) / new_at) / ((1 - at) / at))
    rng = np.random.default_rng(12345)
    g = np.nan_to_num(gmap.gains)
    sd = np.nanstd(gmap.gains, axis=1, keepdims=True)
    return float(np.mean([_spearman_rows(g + tau_new * rng.normal(0, 1, g.shape) * sd, g, gmap.judged)
                          for _ in range(20)]))


# ---------------------------------------------------------------------------------------------------------------------
# Smoke test: a small synthetic experiment on disk


def write_fake(root: Path, langs: list[str], seeds: list[int], dev: int, test: int, adaptive: bool) -> None:
    """Write a fake grid experiment (and an adaptive record) in the layout read_experiment expects."""
    rng = np.random.default_rng(0)
    cells = [f"x-maml:{a}" if a == b else f"xla-maml:{a}>{b}" for a in langs for b in langs]
    base = {(s, l): (rng.random(n) < 0.6).astype(int) for s, n in (("dev", dev), ("test", test)) for l in langs}
    gain = {c: rng.normal(0.02, 0.02) for c in cells}

    def trial(name: str, cell: str, seed: int, g: float) -> dict:
        d = root / name
        (d / "predictions").mkdir(parents=True)
        (d / "params.json").write_text(json.dumps({"trial": {"assignment": cell, "seed": seed}}))
        report = {}
        for (split, lang), b in base.items():
            flip = rng.random(len(b)) < 0.15
            x = np.where(flip, (rng.random(len(b)) < 0.6 + g).astype(int), b) if cell != "baseline" else b
            with open(d / "predictions" / f"{split}-{lang}.items.tsv", "w") as f:
                f.write("uid\tacc\n" + "".join(f"{i}\t{v:.1f}\n" for i, v in enumerate(x)))
            report[f"{split}/{lang}/acc"] = float(x.mean())
        (d / "result.json").write_text(json.dumps(report) + "\n")
        return report

    trial("baseline_s42", "baseline", seeds[0], 0.0)
    for c in cells:
        for s in seeds:
            trial(f"{c.replace(':', '_').replace('>', '-')}_s{s}", c, s, gain[c])
    if adaptive:
        ad = root.parent / (root.name + "-adaptive")
        ad.mkdir()
        est = {c: {l: float(base["dev", l].mean() + 0.3 * gain[c] + rng.normal(0, 0.02)) for l in langs}
               for c in cells}
        (ad / "xlamaml_adaptive.json").write_text(json.dumps({"decisions": [{"rung": 0, "estimates": est}]}))


# ---------------------------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("grid", nargs="?", help="the finished grid sweep's folder")
    parser.add_argument("--adaptive", help="the adaptive sweep's folder (rung 0 done): rank correlation and shrink")
    parser.add_argument("--out", help="write the grid's gain matrix here (CSV target,cell,gain; points)")
    parser.add_argument("--out-shrunk", help="also write the gain matrix shrunk toward each target's mean by the "
                        "signal check's reliability (signal variance / test gains' variance, pooled): a guess at the "
                        "true gains when the measured ones are mostly noise")
    parser.add_argument("--rung-fraction", type=float, help="rung 0's fraction of the meta steps (default: the "
                        "record's, else 0.1)")
    parser.add_argument("--rung-seed", type=int, help="rung 0's seed (default: the record's, else the grid's first)")
    parser.add_argument("--fit-reps", type=int, default=10, help="simulated repetitions per candidate in the fit")
    parser.add_argument("--allow-unfinished", action="store_true", help="use the trials that finished so far")
    parser.add_argument("--smoke-test", action="store_true", help="a small fake experiment: seconds")
    args = parser.parse_args()
    t0 = time.perf_counter()
    tmp = None
    if args.smoke_test:
        tmp = tempfile.TemporaryDirectory()
        root = Path(tmp.name) / "grid"
        write_fake(root, ["ar", "de", "sw"], [42, 43], 60, 80, adaptive=True)
        args.grid, args.adaptive = str(root), str(root.parent / "grid-adaptive")
        args.out = args.out or str(Path(tmp.name) / "gains.csv")
        args.fit_reps = 2
    if not args.grid:
        parser.error("GRID_EXP is required (or --smoke-test)")

    trials = read_experiment(Path(args.grid))
    done = [t for t in trials if finished(t)]
    print(f"grid {args.grid}: {len(trials)} trials, {len(done)} with test metrics in their last report")
    if len(done) < len(trials):
        if not args.allow_unfinished:
            raise SystemExit("the grid has not finished (--allow-unfinished to use what has)")
        trials = done
    g = build_grid(trials)
    n_dev, n_test = (len(g.base.items[s, g.targets[0]]) for s in ("dev", "test"))
    seeds = sorted({s for c in g.cells.values() for s in c})
    judged = sum(g.judged(c, l) for c in g.cells for l in g.targets)
    print(f"{len(g.cells)} cells x seeds {seeds}, baseline seed {g.base.seed}; targets {g.targets}; "
          f"{judged} judged (cell, target) pairs of {len(g.cells) * len(g.targets)}; items per target: dev {n_dev}, "
          f"test {n_test}")

    print("\n## 1. paired disagreement with the baseline (fraction of items whose 0/1 outcome differs)")
    dis = {}
    for split in ("dev", "test"):
        r, k, n = disagreement(g, split)
        ra, ka, _ = disagreement(g, split, judged_only=False)
        dis[split] = r
        print(f"{split}: {r:.3f} over {k} (trial, judged target) pairs x {n} items ({ra:.3f} over all {ka}, "
              "trained-on targets included)")

    print("\n## 2. seeds (first two seeds of each cell; judged (cell, target) pairs)")
    st = {s: seed_stats(g, s) for s in ("dev", "test")}
    for s in st.values():
        print(f"{s.split} ({s.pairs} pairs x {s.items} items): seed sd {s.seed_sd:.2f} points "
              f"(pooled sqrt(mean(d^2)/2)); beyond item draws (offset, --seed-sd) {s.offset_sd:.2f} points = "
              f"{s.offset_share:.0%} of the seed variance, item noise {1 - s.offset_share:.0%}; "
              f"offset part common to a cell's targets {s.common_sd:+.2f} points (signed root)")
        print(f"    seed-pair item disagreement {s.seed_disagree:.3f}; seed share (--seed-share) {s.share:.2f}; "
              f"cross-cell share (sim: 0) {s.cross_share:.2f} over {s.cross_pairs} (cell pair, target) pairs; "
              f"share beyond cross-cell {(s.share - s.cross_share) / (1 - s.cross_share):.2f}")
        print(f"    cell-vs-cell item disagreement (same seed) {s.cross_disagree:.3f}: the sim's independent flips "
              f"give it at --disagree {effective_disagree(s):.3f}; seed-pair / cell-pair disagreement "
              f"{s.seed_disagree / s.cross_disagree:.2f} (effective --seed-share {1 - s.seed_disagree / s.cross_disagree:.2f})")

    rows = gain_rows(g, "test")
    gm = gain_map(rows, args.out or "measured")
    if args.out:
        with open(args.out, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["target", "cell", "gain"])
            w.writerows([(t, c, f"{v:.4f}") for t, c, v in rows])
    vals = np.array([v for _, _, v in rows])
    print(f"\n## 4. gain matrix (test, mean of {len(seeds)} seeds minus the baseline, points): {len(rows)} rows "
          f"({len(gm.cells)} cells x {len(gm.targets)} targets, excluded pairs omitted)"
          + (f" -> {args.out}" if args.out else ""))
    print(f"gains: mean {vals.mean():+.2f}, sd {vals.std():.2f}, min {vals.min():+.2f}, max {vals.max():+.2f}; "
          f"per-target sd {np.mean(np.nanstd(gm.gains, axis=1)):.2f}; per-target best - second "
          f"{np.mean([np.diff(np.sort(r[~np.isnan(r)])[-2:])[0] for r in gm.gains if (~np.isnan(r)).sum() > 1]):.2f}")

    sc = signal_check(g)
    print(f"signal check (per target across its judged cells, mean over {sc['targets']} targets): dev vs test gain "
          f"Pearson {sc['pearson']:.2f}, Spearman {sc['spearman']:.2f}; test gains' within-target sd "
          f"{sc['test_sd']:.2f} points, of which signal (sqrt of the dev-test covariance; signed) "
          f"{sc['signal_sd']:.2f}")
    if args.out_shrunk:
        rel = min(1.0, max(0.0, sc["signal_sd"] ** 2 / sc["test_sd"] ** 2 if sc["signal_sd"] > 0 else 0.0))
        means = {t: float(np.mean([v for tt, _, v in rows if tt == t])) for t in gm.targets}
        with open(args.out_shrunk, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["target", "cell", "gain"])
            w.writerows([(t, c, f"{means[t] + rel * (v - means[t]):.4f}") for t, c, v in rows])
        print(f"shrunk gain matrix (reliability {rel:.2f}) -> {args.out_shrunk}")

    noise = Noise(dev_items=n_dev, test_items=n_test, disagree=round(dis["dev"], 3),
                  seed_sd=round(st["test"].offset_sd, 2), seed_share=round(max(0.0, st["dev"].share), 2),
                  seeds=len(seeds))
    flags = (f"--disagree {noise.disagree} --seed-sd {noise.seed_sd} --seed-share {noise.seed_share}")
    eff = Noise(dev_items=n_dev, test_items=n_test, disagree=round(effective_disagree(st["dev"]), 3),
                seed_sd=noise.seed_sd, seed_share=round(max(0.0, 1 - st["dev"].seed_disagree / st["dev"].cross_disagree), 2),
                seeds=len(seeds))
    eff_flags = f"--disagree {eff.disagree} --seed-sd {eff.seed_sd} --seed-share {eff.seed_share}"
    print("\n## 3. low budget")
    if args.adaptive:
        try:
            record = read_adaptive(Path(args.adaptive))
            atrials = read_experiment(Path(args.adaptive))
            lb, lrows = low_budget(g, record, atrials, args.rung_fraction, args.rung_seed)
        except (FileNotFoundError, SystemExit) as e:
            print(f"not measured: {e}")
            lb = None
        if lb is not None:
            print(f"rung 0: {lb.fraction:.0%} of the meta steps, seed {lb.seed}, {lb.dev_items} dev items; "
                  f"{lb.targets} targets x {lb.cells_per_target:.0f} judged cells ({lb.pairs} pairs)")
            print(f"raw Spearman (mean over targets) rung-0 dev vs full-budget dev, same seed: {lb.rho_dev:.2f} "
                  f"(per target: {', '.join(f'{k} {v:.2f}' for k, v in lb.rho_dev_each.items())}); "
                  f"vs the grid's {len(seeds)}-seed mean test gain: {lb.rho_test:.2f}")
            print(f"raw slope of rung-0 dev gain on full dev gain: {lb.slope0_dev:.2f} through the origin, "
                  f"{lb.slope_dev:.2f} OLS; on the mean test gain: {lb.slope0_test:.2f} / {lb.slope_test:.2f}; "
                  f"naive shrink log(slope)/log(f) = "
                  + (f"{math.log(lb.slope0_dev) / math.log(lb.fraction):.2f}" if lb.slope0_dev > 0 else "n/a"))
            r0 = np.array([r[2] for r in lrows])
            m0, mf = float(r0.mean()), float(np.mean([r[3] for r in lrows]))
            if m0 > 0 and mf > 0:
                print(f"mean rung-0 dev gain / mean full dev gain (same items, seed): {m0 / mf:.2f}; the shrink that "
                      f"gives it, log(ratio)/log(f): {math.log(m0 / mf) / math.log(lb.fraction):.2f} (a common shift: "
                      "it says nothing of the ranking)")
            print(f"rung-0 dev gains: mean {r0.mean():+.2f}, sd {r0.std():.2f} points (full dev gains: mean "
                  f"{np.mean([r[3] for r in lrows]):+.2f}, sd {np.std([r[3] for r in lrows]):.2f})")
            t1 = time.perf_counter()
            rgrid = [0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95] if not args.smoke_test else [0.3, 0.7]
            sgrid = [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5] if not args.smoke_test else [0.5]
            fits = {}
            for label, nz in (("literal", noise), ("effective", eff)):
                rc, sh, grid_rows = fit_low_budget(gm, nz, lb, n_test, args.fit_reps, rgrid, sgrid)
                fits[label] = (rc, sh)
                print(f"fit by simulation under the {label} flags ({args.fit_reps} reps per candidate; fitted on "
                      f"{' and '.join(FIT_ON)}): --rank-corr {rc} --rank-corr-at {lb.fraction:g} --shrink {sh}; "
                      f"latent rank correlation at 25% (measured map): {corr_at(gm, rc, lb.fraction, 0.25):.2f}")
                dmin = min(stt["dist"][0] for _, _, stt in grid_rows)
                ok = [(a, b) for a, b, stt in grid_rows if stt["dist"][0] <= dmin + 5.99]
                print(f"    consistent with the measurement (distance within 5.99 of the best, ~95% for 2 values; "
                      f"{len(ok)} of {len(grid_rows)} candidates): rank_corr {min(a for a, _ in ok):g}-"
                      f"{max(a for a, _ in ok):g}, shrink {min(b for _, b in ok):g}-{max(b for _, b in ok):g}")
                for a, b, stt in grid_rows:
                    if b == sh or a == rc:
                        print(f"    rank_corr {a:.2f} shrink {b:.2f}: simulated Spearman vs test "
                              f"{stt['rho_test'][0]:.2f} ± {stt['rho_test'][1]:.2f}, vs dev {stt['rho_dev'][0]:.2f}; "
                              f"slope on test {stt['slope0_test'][0]:.2f} ± {stt['slope0_test'][1]:.2f}, on dev "
                              f"{stt['slope0_dev'][0]:.2f}")
            print(f"(fits: {time.perf_counter() - t1:.0f} s)")
            rc, sh = fits["literal"]
            flags += f" --rank-corr {rc} --rank-corr-at {lb.fraction:g} --shrink {sh}"
            rc, sh = fits["effective"]
            eff_flags += f" --rank-corr {rc} --rank-corr-at {lb.fraction:g} --shrink {sh}"
    else:
        print("not measured (no --adaptive)")
    print(f"\nflags for adaptive_sim.py: {flags}   (this experiment's design: --dev-items {n_dev} --test-items "
          f"{n_test} --seeds {len(seeds)})")
    print(f"effective flags (cells flip independently in the sim but share flips in the runs: matched on cell-vs-cell "
          f"and seed-vs-seed disagreement instead of run-vs-baseline): {eff_flags}")
    print(f"({time.perf_counter() - t0:.1f} s)")
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    main()
