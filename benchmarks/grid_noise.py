"""A finished grid experiment read through the project's readers (params.json, result.json, per-item outcomes), and
the noise statistics benchmarks/calibrate_sim.py measures on it: paired disagreement with the baseline, seed-to-seed
statistics (seed sd, offset, seed share, cross-cell share), the gain matrix and how much of it is signal.

A cell is judged on a target unless it trained on it (`Assignment.trained_on`: the target is one of its auxiliary
languages; English never is); every statistic is over judged (cell, target) pairs unless it says otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from xlamaml.search.predictive.simulated import spearman
from xlamaml.analysis.results import read_params
from xlamaml.analysis.trial_info import KNOWN_LANGS
from xlamaml.experiment.reports import is_final, trial_reports
from xlamaml.trainables.assignment import Assignment, flat_trial, parse_assignment
from xlamaml.trainables.tasks.outcomes import SUFFIX, read_outcomes

# ---------------------------------------------------------------------------------------------------------- reading


@lru_cache(maxsize=None)
def assignment(cell: str) -> Assignment:
    """Return the Assignment a cell's name writes (parsed once per name)."""
    return parse_assignment(cell, KNOWN_LANGS)


def cell_langs(cell: str) -> set[str]:
    """Return the languages a cell trained on (`Assignment.trained_on`: its auxiliary languages, never English)."""
    return set(assignment(cell).aux_langs)


@dataclass
class Trial:
    """One trial: its cell and seed, last report, and per-item 0/1 outcomes per split and language (uid-aligned)."""

    folder: str
    cell: str
    seed: int
    report: dict[str, Any]
    items: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)  # (split, lang) -> 0/1
    uids: dict[tuple[str, str], list[str]] = field(default_factory=dict)


def read_experiment(exp: Path, with_items: bool = True) -> list[Trial]:
    """Return the trials of an experiment folder (a folder without params.json: cell '?', never finished)."""
    out = []
    # Every folder but assets is a trial; one Ray has not started yet has no params.json (counted, unfinished).
    for d in sorted(p for p in exp.iterdir() if p.is_dir() and p.name != "assets" and not p.name.startswith(".")):
        if not (d / "params.json").exists():
            out.append(Trial(d.name, "?", -1, {}))
            continue
        params = flat_trial(read_params(d / "params.json"))
        reports = trial_reports(str(exp), d.name)
        t = Trial(d.name, str(params["assignment"]), int(params["seed"]), reports[-1] if reports else {})
        if with_items and (d / "predictions").is_dir():
            for f in sorted((d / "predictions").glob("*" + SUFFIX)):
                split, lang = f.name[: -len(SUFFIX)].split("-", 1)
                uids, values = read_outcomes(f)
                if "acc" not in values:
                    raise SystemExit(f"{f}: no acc column (calibrate_sim reads accuracy outcomes)")
                t.uids[split, lang], t.items[split, lang] = uids, values["acc"]
        out.append(t)
    return out


def finished(t: Trial) -> bool:
    """Return whether a trial's last report has test metrics."""
    return is_final(t.report)


# ------------------------------------------------------------------------------------------- the grid's statistics


@dataclass
class Grid:
    """A finished grid: baseline trial, cells -> seed -> trial, targets."""

    base: Trial
    cells: dict[str, dict[int, Trial]]
    targets: list[str]

    def judged(self, cell: str, target: str) -> bool:
        """Return whether a cell is judged on a target (it did not train on it: `Assignment.trained_on`)."""
        return not assignment(cell).trained_on(target)

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
    independently (simulation.World: 0 -> 1 with r / (2 (1 - p0)), 1 -> 0 with r / (2 p0))."""
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
