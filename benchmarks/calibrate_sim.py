"""Measure benchmarks/adaptive_sim.py's noise flags on real runs: a finished grid sweep (and an adaptive one).

    python benchmarks/calibrate_sim.py GRID_EXP [--adaptive ADAPTIVE_EXP] [--out gains.csv] [--fit-reps 10]
    python benchmarks/calibrate_sim.py --smoke-test          # a synthetic experiment written to a temp dir: seconds
    python benchmarks/calibrate_sim.py --map benchmarks/maps/pairs.npz [--map-fraction 0.1]   # a recorded map

    # e.g. after `python benchmarks/adaptive_vs_grid.py` (6 languages, 36 pair cells x seeds 42, 43 + a baseline):
    python benchmarks/calibrate_sim.py runs/adaptive-vs-grid-small-grid \\
        --adaptive runs/adaptive-vs-grid-small-adaptive --out gains.csv
    python benchmarks/adaptive_sim.py --gains gains.csv <the printed flags>

GRID_EXP: a grid sweep's folder; every trial folder holds params.json ({"trial": {"assignment", "seed"}}),
result.json (one JSON report a line; the last has dev/<lang>/acc and test/<lang>/acc) and
predictions/{dev,test}-<lang>.items.tsv (header `uid<TAB>acc`, per-item 0/1). One trial is the baseline (assignment
`baseline`). Targets: the languages with dev items. A cell is not judged on a target whose dev data its meta stage
trained on (`Assignment.trained_on`: the target is one of its auxiliary languages, its support and query languages
less English; English never is); every statistic below is over judged (cell, target) pairs unless it says otherwise.
The folders are read with the project's readers (params.json, result.json, the per-item outcome files and the
adaptive record xlamaml_adaptive.json).

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
  map with the measured disagreement, seed sd and share, the rung's fraction and items, the simulator's World
  (search/predictive/simulated.py) draws the same statistics for a grid of (rank_corr at the rung's fraction, shrink); the
  pair whose mean simulated statistics are nearest the measured ones (Spearman and slope through the origin against
  the grid's mean test gain) is printed, with the equivalent rank correlation at 25% (tau(f) scales as
  sqrt((1 - f) / f)).
- `--out`: the grid's gain matrix, CSV `target,cell,gain`: 2-seed (all seeds) mean test accuracy minus the
  baseline's, in points, one row per judged pair; excluded pairs have no row (simulation.read_gains: a cell with no
  row for a target is not judged on it).

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
from pathlib import Path
from typing import Optional

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.grid_noise import (Grid, SeedStats, build_grid, disagreement, effective_disagree,  # noqa: E402
                                   finished, gain_rows, read_experiment, seed_stats, signal_check)
from benchmarks.low_budget import FIT_ON, corr_at, fit_low_budget, low_budget  # noqa: E402
from xlamaml.search.predictive.simulated import GainMap, Noise, gain_map  # noqa: E402
from xlamaml.experiment.records import ADAPTIVE_FILE, AdaptiveRecord, Rung, read_adaptive, write_adaptive  # noqa: E402
from xlamaml.experiment.reports import RESULT_FILE  # noqa: E402
from xlamaml.trainables.errors import XlamamlError  # noqa: E402
from xlamaml.trainables.tasks.outcomes import SUFFIX, write_outcomes  # noqa: E402


def write_fake(root: Path, langs: list[str], seeds: list[int], dev: int, test: int, adaptive: bool) -> None:
    """Write a fake grid experiment (and an adaptive one's record) in the layout read_experiment expects; return
    None."""
    rng = np.random.default_rng(0)
    cells = [f"x-maml:{a}" if a == b else f"xla-maml:{a}>{b}" for a in langs for b in langs]
    base = {(s, l): (rng.random(n) < 0.6).astype(int) for s, n in (("dev", dev), ("test", test)) for l in langs}
    gain = {c: rng.normal(0.02, 0.02) for c in cells}

    def trial(name: str, cell: str, seed: int, g: float) -> None:
        """Write one trial folder (params.json, per-item outcomes, result.json); return None."""
        d = root / name
        (d / "predictions").mkdir(parents=True)
        (d / "params.json").write_text(json.dumps({"trial": {"assignment": cell, "seed": seed}}))
        report = {}
        for (split, lang), b in base.items():
            flip = rng.random(len(b)) < 0.15
            x = np.where(flip, (rng.random(len(b)) < 0.6 + g).astype(int), b) if cell != "baseline" else b
            write_outcomes(d / "predictions" / f"{split}-{lang}{SUFFIX}", [str(i) for i in range(len(x))], {"acc": x})
            report[f"{split}/{lang}/acc"] = float(x.mean())
        (d / RESULT_FILE).write_text(json.dumps(report) + "\n")

    trial("baseline_s42", "baseline", seeds[0], 0.0)
    for c in cells:
        for s in seeds:
            trial(f"{c.replace(':', '_').replace('>', '-')}_s{s}", c, s, gain[c])
    if adaptive:
        ad = root.parent / (root.name + "-adaptive")
        ad.mkdir()
        est = {c: {l: float(base["dev", l].mean() + 0.3 * gain[c] + rng.normal(0, 0.02)) for l in langs}
               for c in cells}
        # Rung 0: a tenth of 40 meta steps on every dev item, the first seed; then the full budget.
        rungs = [Rung(0, 4, None, (seeds[0],), len(cells), 0.1), Rung(1, 40, None, tuple(seeds), len(cells), 1.0)]
        write_adaptive(str(ad), AdaptiveRecord(cells, [{"assignment": "baseline", "seed": seeds[0]}], rungs, "acc",
                                               [{"rung": 0, "kept": cells, "stopped": {}, "ranks": {},
                                                 "estimates": est, "excluded": {}}]))


def report_disagreement(g: Grid) -> dict[str, float]:
    """Return split -> the paired disagreement with the baseline over judged pairs, after printing section 1."""
    print("\n## 1. paired disagreement with the baseline (fraction of items whose 0/1 outcome differs)")
    dis = {}
    for split in ("dev", "test"):
        r, k, n = disagreement(g, split)
        ra, ka, _ = disagreement(g, split, judged_only=False)
        dis[split] = r
        print(f"{split}: {r:.3f} over {k} (trial, judged target) pairs x {n} items ({ra:.3f} over all {ka}, "
              "trained-on targets included)")
    return dis


def report_seeds(g: Grid) -> dict[str, SeedStats]:
    """Return split -> its seed statistics, after printing section 2."""
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
              f"{s.seed_disagree / s.cross_disagree:.2f} (effective --seed-share "
              f"{1 - s.seed_disagree / s.cross_disagree:.2f})")
    return st


def write_rows(path: str, rows: list[tuple[str, str, float]]) -> None:
    """Write (target, cell, gain) rows as a CSV target,cell,gain (4 decimals); return None."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["target", "cell", "gain"])
        w.writerows([(t, c, f"{v:.4f}") for t, c, v in rows])


def report_gains(g: Grid, seeds: list[int], out: Optional[str], out_shrunk: Optional[str]) -> GainMap:
    """Return the grid's test gain map, after writing it (and its shrunk version) and printing section 4."""
    rows = gain_rows(g, "test")
    gm = gain_map(rows, out or "measured")
    if out:
        write_rows(out, rows)
    vals = np.array([v for _, _, v in rows])
    print(f"\n## 4. gain matrix (test, mean of {len(seeds)} seeds minus the baseline, points): {len(rows)} rows "
          f"({len(gm.cells)} cells x {len(gm.targets)} targets, excluded pairs omitted)"
          + (f" -> {out}" if out else ""))
    print(f"gains: mean {vals.mean():+.2f}, sd {vals.std():.2f}, min {vals.min():+.2f}, max {vals.max():+.2f}; "
          f"per-target sd {np.mean(np.nanstd(gm.gains, axis=1)):.2f}; per-target best - second "
          f"{np.mean([np.diff(np.sort(r[~np.isnan(r)])[-2:])[0] for r in gm.gains if (~np.isnan(r)).sum() > 1]):.2f}")
    sc = signal_check(g)
    print(f"signal check (per target across its judged cells, mean over {sc['targets']} targets): dev vs test gain "
          f"Pearson {sc['pearson']:.2f}, Spearman {sc['spearman']:.2f}; test gains' within-target sd "
          f"{sc['test_sd']:.2f} points, of which signal (sqrt of the dev-test covariance; signed) "
          f"{sc['signal_sd']:.2f}")
    if out_shrunk:
        rel = min(1.0, max(0.0, sc["signal_sd"] ** 2 / sc["test_sd"] ** 2 if sc["signal_sd"] > 0 else 0.0))
        means = {t: float(np.mean([v for tt, _, v in rows if tt == t])) for t in gm.targets}
        write_rows(out_shrunk, [(t, c, means[t] + rel * (v - means[t])) for t, c, v in rows])
        print(f"shrunk gain matrix (reliability {rel:.2f}) -> {out_shrunk}")
    return gm


def report_low_budget(g: Grid, gm: GainMap, args: argparse.Namespace, fits_for: dict[str, Noise], n_test: int,
                      n_seeds: int) -> dict[str, str]:
    """Return label -> the fitted low-budget flags ({} when not measured), after printing section 3's results."""
    try:
        record = read_adaptive(args.adaptive)
        if record is None:
            raise SystemExit(f"no {ADAPTIVE_FILE} in {args.adaptive}")
        lb, lrows = low_budget(g, record, read_experiment(Path(args.adaptive)), args.rung_fraction, args.rung_seed)
    except (XlamamlError, SystemExit) as e:
        print(f"not measured: {e}")
        return {}
    print(f"rung 0: {lb.fraction:.0%} of the meta steps, seed {lb.seed}, {lb.dev_items} dev items; "
          f"{lb.targets} targets x {lb.cells_per_target:.0f} judged cells ({lb.pairs} pairs)")
    print(f"raw Spearman (mean over targets) rung-0 dev vs full-budget dev, same seed: {lb.rho_dev:.2f} "
          f"(per target: {', '.join(f'{k} {v:.2f}' for k, v in lb.rho_dev_each.items())}); "
          f"vs the grid's {n_seeds}-seed mean test gain: {lb.rho_test:.2f}")
    print(f"raw slope of rung-0 dev gain on full dev gain: {lb.slope0_dev:.2f} through the origin, "
          f"{lb.slope_dev:.2f} OLS; on the mean test gain: {lb.slope0_test:.2f} / {lb.slope_test:.2f}; "
          f"naive shrink log(slope)/log(f) = "
          + (f"{math.log(lb.slope0_dev) / math.log(lb.fraction):.2f}" if lb.slope0_dev > 0 else "n/a"))
    r0, full = np.array([r[2] for r in lrows]), np.array([r[3] for r in lrows])
    m0, mf = float(r0.mean()), float(full.mean())
    if m0 > 0 and mf > 0:
        print(f"mean rung-0 dev gain / mean full dev gain (same items, seed): {m0 / mf:.2f}; the shrink that "
              f"gives it, log(ratio)/log(f): {math.log(m0 / mf) / math.log(lb.fraction):.2f} (a common shift: "
              "it says nothing of the ranking)")
    print(f"rung-0 dev gains: mean {r0.mean():+.2f}, sd {r0.std():.2f} points (full dev gains: mean "
          f"{full.mean():+.2f}, sd {full.std():.2f})")
    t1 = time.perf_counter()
    rgrid = [0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95] if not args.smoke_test else [0.3, 0.7]
    sgrid = [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5] if not args.smoke_test else [0.5]
    fits = {}
    for label, nz in fits_for.items():
        rc, sh, grid_rows = fit_low_budget(gm, nz, lb, n_test, args.fit_reps, rgrid, sgrid)
        fits[label] = f" --rank-corr {rc} --rank-corr-at {lb.fraction:g} --shrink {sh}"
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
    return fits


def main() -> None:
    """Print the simulator's noise flags measured on a grid (and adaptive) experiment; return None."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("grid", nargs="?", help="the finished grid sweep's folder")
    parser.add_argument("--adaptive", help="the adaptive sweep's folder (rung 0 done): rank correlation and shrink")
    parser.add_argument("--out", help="write the grid's gain matrix here (CSV target,cell,gain; points)")
    parser.add_argument("--out-shrunk", help="also write the gain matrix shrunk toward each target's mean by the "
                        "signal check's reliability (signal variance / test gains' variance, pooled): a guess at the "
                        "true gains when the measured ones are mostly noise")
    parser.add_argument("--rung-fraction", type=float, help="rung 0's fraction of the meta steps (default: the "
                        "record's)")
    parser.add_argument("--rung-seed", type=int, help="rung 0's seed (default: the record's, else the grid's first)")
    parser.add_argument("--fit-reps", type=int, default=10, help="simulated repetitions per candidate in the fit")
    parser.add_argument("--allow-unfinished", action="store_true", help="use the trials that finished so far")
    parser.add_argument("--map", help="a recorded map (benchmarks/maps/*.npz) instead of experiment folders: its "
                        "trials as the grid, its dev at --map-fraction with the first seed as rung 0")
    parser.add_argument("--map-fraction", type=float, default=0.1, help="the map's fraction that is rung 0")
    parser.add_argument("--smoke-test", action="store_true", help="a small fake experiment: seconds")
    args = parser.parse_args()
    t0 = time.perf_counter()
    tmp = None
    if args.map:
        from benchmarks.map_experiment import write_experiments
        from benchmarks.recorded_map import read_map

        tmp = tempfile.TemporaryDirectory()
        grid, adaptive = write_experiments(read_map(args.map), Path(tmp.name), args.map_fraction)
        args.grid, args.adaptive = str(grid), str(adaptive)
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

    dis = report_disagreement(g)
    st = report_seeds(g)
    gm = report_gains(g, seeds, args.out, args.out_shrunk)

    noise = Noise(dev_items=n_dev, test_items=n_test, disagree=round(dis["dev"], 3),
                  seed_sd=round(st["test"].offset_sd, 2), seed_share=round(max(0.0, st["dev"].share), 2),
                  seeds=len(seeds))
    eff = Noise(dev_items=n_dev, test_items=n_test, disagree=round(effective_disagree(st["dev"]), 3),
                seed_sd=noise.seed_sd,
                seed_share=round(max(0.0, 1 - st["dev"].seed_disagree / st["dev"].cross_disagree), 2),
                seeds=len(seeds))
    flags = {label: f"--disagree {nz.disagree} --seed-sd {nz.seed_sd} --seed-share {nz.seed_share}"
             for label, nz in (("literal", noise), ("effective", eff))}
    print("\n## 3. low budget")
    if args.adaptive:
        for label, more in report_low_budget(g, gm, args, {"literal": noise, "effective": eff}, n_test,
                                             len(seeds)).items():
            flags[label] += more
    else:
        print("not measured (no --adaptive)")
    print(f"\nflags for adaptive_sim.py: {flags['literal']}   (this experiment's design: --dev-items {n_dev} "
          f"--test-items {n_test} --seeds {len(seeds)})")
    print(f"effective flags (cells flip independently in the sim but share flips in the runs: matched on cell-vs-cell "
          f"and seed-vs-seed disagreement instead of run-vs-baseline): {flags['effective']}")
    print(f"({time.perf_counter() - t0:.1f} s)")
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    main()
