"""Low budget: an adaptive sweep's rung 0 against a finished grid (benchmarks/calibrate_sim.py, section 3). Raw
statistics (Spearman of rung-0 dev estimates with full-budget gains, slopes of one on the other), then the
simulator's `rank_corr` and `shrink` fitted so that search/predictive/simulated.py's World draws the same statistics
(indirect inference: the raw values carry item and seed noise that the flags do not).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from benchmarks.grid_noise import Grid, Trial, gain_rows
from xlamaml.search.predictive.simulated import (GainMap, Noise, World, calibrate_tau, latent_spearman, spearman, spearman_rows,
                                   tau_scale)
from xlamaml.experiment.records import AdaptiveRecord, Rung


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


def rung0(record: AdaptiveRecord) -> tuple[dict[str, Any], Rung]:
    """Return (the first decision, its rung) of an adaptive record; SystemExit when rung 0 is not done."""
    if not record.decisions:
        raise SystemExit("the adaptive record has no decision yet (rung 0 not done)")
    dec = record.decisions[0]
    return dec, record.rungs[int(dec["rung"])]


def low_budget(g: Grid, record: AdaptiveRecord, adaptive_trials: list[Trial], fraction: Optional[float],
               seed: Optional[int]) -> tuple[LowBudget, list[tuple[str, str, float, float, float]]]:
    """Return the raw low-budget statistics and the (target, cell, rung-0 gain, full dev gain, test gain) rows."""
    dec, rung = rung0(record)
    est = dec["estimates"]
    frac = fraction if fraction is not None else rung.fraction
    steps = rung.steps
    items = rung.dev_items or len(g.base.items["dev", g.targets[0]])
    if seed is None:
        seed = int(rung.seeds[0]) if rung.seeds else min(min(s) for s in g.cells.values())
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
    """Return name -> (mean, sd over reps) of the low-budget statistics of the simulator's World, measured the way
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
            out["rho_" + name].append(float(np.nanmean(spearman_rows(r0, other, m))))
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
    tau, _ = calibrate_tau(gmap, rank_corr)
    return latent_spearman(gmap, tau * tau_scale(new_at, at))
