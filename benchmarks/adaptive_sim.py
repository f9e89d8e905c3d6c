"""Simulation: adaptive pair search (`sweep.mode: adaptive`) against the full grid, random subsets, ASHA and TPE.

    python benchmarks/adaptive_sim.py                        # pairs map (225 cells) and en -> aux map (14 cells)
    python benchmarks/adaptive_sim.py --smoke-test           # a few seconds
    python benchmarks/adaptive_sim.py --gains gains.csv      # a measured gain matrix instead of the synthetic ones
    python benchmarks/adaptive_sim.py --search               # also the adaptive configurations behind the defaults

The simulated world (search/predictive/simulated.py): a ground-truth gain matrix, target x cell, in points over the
baseline (synthetic ones shaped like the paper's Figure 2, or `--gains FILE`: a CSV `target,cell,gain`, one row per
judged pair; a cell with no row for a target is not judged on it), and noise, every value a flag printed with the
table: dev items per target (`--dev-items`), the paired disagreement of a run's per-item outcomes with the
baseline's (`--disagree`), the part of their flips a cell's seeds share (`--seed-share`), a per-(cell, seed) offset
(`--seed-sd`, points), and low budgets that rank cells with a Spearman correlation of `--rank-corr` at
`--rank-corr-at` of the meta steps, their gains shrunk by f**`--shrink`. Where the defaults come from, and results:
benchmarks/RESULTS.md.

Compute, one measure for every method: meta steps * `--step-seconds` + evaluated items * `--item-seconds` (0.465 s
and 0.0078 s: a cached first-order step and an evaluated item). A trial pays its meta steps, dev (every target, its
items) at each report a method uses, and test (every target, `--test-items`) once it finishes at the full budget.
The grid (100%) reports dev once, at the end: the leanest grid, so the fractions are never flattered.

Methods at equal compute: the grid (all cells, all seeds, full budget); random subsets of cells at the full budget;
ASHA (async successive halving on the average dev gain, reduction factor 3, trials (cell, seed) in random order, the
first trials to reach a rung not stopped, run until the budget is spent); Optuna TPE over the cell (categorical) with
MedianPruner, intermediate values the dev estimates at ASHA's rung budgets, the next unused seed of a cell per trial,
run until the budget is spent; adaptive: xlamaml.search.schedule's `schedule` and xlamaml.search.adaptive.rule's
`decide`, the code the sweep runs, its keep ratio the largest whose (exact) cost fits the fraction.

Per method and fraction: mean regret of each target's top pick on dev (true gain of the true best minus that of the
pick, points, averaged over targets and repetitions; no finished cell on a target picks the baseline, gain 0), how
often the true best is in the returned set (finished cells whose paired difference to the pick on dev is not below 0
at 95%, two-sided: mean + 1.96 se >= 0, se as in `decide`'s bound) and the set's mean size.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Optional

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # the map model's small matrices: BLAS threads only contend

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.sim_methods import Score, fit_keep, run_adaptive, run_grid, score, simulate  # noqa: E402
from xlamaml.search.predictive.simulated import (Cost, GainMap, Noise, World, calibrate_tau, read_gains,  # noqa: E402
                                   synthetic_aux, synthetic_pairs)
from xlamaml.search.schedule import AdaptiveConfig  # noqa: E402


def markdown(table: dict[tuple[str, float], Score]) -> str:
    """Return the table: method, target fraction, achieved fraction, regret, best-in-set rate, set size."""
    lines = ["| method | compute (target) | compute (achieved) | regret (points) | true best in set | set size "
             "| knob |", "|---|---|---|---|---|---|---|"]
    for (name, f), s in sorted(table.items(), key=lambda kv: (kv[0][0] != "grid", kv[0][0], kv[0][1])):
        # ± : standard error over targets x repetitions taken as independent (they are not quite): a scale only.
        se = np.std(s.regret, ddof=1) / math.sqrt(len(s.regret)) if len(s.regret) > 1 else 0.0
        notes = list(dict.fromkeys(n for n in s.notes if n))
        knob = "; ".join(notes[:2]) + (f"; ... ({len(notes)} settings over the repetitions)" if len(notes) > 2 else "")
        target = f"{f:.0%}" if f else "defaults"
        lines.append(f"| {name} | {target} | {np.mean(s.fraction):.1%} | {np.mean(s.regret):.2f} ± {se:.2f} | "
                     f"{np.mean(s.best_in_set):.0%} | {np.mean(s.set_size):.1f} | {knob} |")
    return "\n".join(lines)


# Candidate rung layouts for --search: (steps, dev items, seeds per rung); keep is fitted to each compute fraction.
LAYOUTS: list[tuple[list[float], list[Optional[int]], list[Optional[int]]]] = [
    ([0.05, 1.0], [500, None], [1, None]),
    ([0.1, 1.0], [100, None], [1, None]),
    ([0.1, 1.0], [200, None], [1, None]),
    ([0.1, 1.0], [500, None], [1, None]),
    ([0.25, 1.0], [200, None], [1, None]),
    ([0.25, 1.0], [500, None], [1, None]),
    ([0.1, 0.3, 1.0], [500, None, None], [1, 1, None]),
    ([0.1, 0.5, 1.0], [200, None, None], [1, 1, None]),
    ([0.1, 0.5, 1.0], [500, None, None], [1, 1, None]),
    ([0.1, 0.5, 1.0], [500, None, None], [1, 2, None]),
    # Every seed from rung 0: where seeds move a run more than languages do (the recorded maps, benchmarks/maps/).
    ([0.1, 1.0], [500, None], [None, None]),
    ([0.1, 0.5, 1.0], [500, None, None], [None, None, None]),
    ([0.05, 0.5, 1.0], [500, None, None], [None, None, None]),
]


def search(gmap: GainMap, cost: Cost, noise: Noise, fraction: float, reps: int, base: AdaptiveConfig,
           make_world: Optional[Callable[[int], World]] = None) -> str:
    """Return a markdown table of adaptive layouts (and bounds) at one compute fraction, for choosing defaults
    (`make_world`: rep -> world, a recorded map's replay instead of the simulated World)."""
    if make_world is None:
        tau, _ = calibrate_tau(gmap, noise.rank_corr)
        make_world = lambda rep: World(gmap, noise, tau, rep)  # noqa: E731
    grid_s = run_grid(make_world(0), cost).seconds
    lines = [f"adaptive layouts on {gmap.name} at {fraction:.0%} of the grid's compute ({reps} reps)", "",
             "| steps | dev items | seeds | bound | keep | compute | regret | true best in set | set size |",
             "|---|---|---|---|---|---|---|---|---|"]
    for steps, items, seeds in LAYOUTS:
        for bound in (None, 2.0):
            # per_target 0: the layouts compete on the keep ratio alone.
            a = fit_keep(replace(base, steps=steps, dev_items=items, seeds=seeds, bound=bound, per_target=0.0), gmap,
                         cost, noise, fraction * grid_s)
            if a is None:
                continue
            s = Score()
            for rep in range(reps):
                world = make_world(rep)
                run = run_adaptive(world, cost, a)
                score(world, run, cost, s)
                s.fraction.append(run.seconds / grid_s)
            lines.append(f"| {steps} | {items} | {seeds} | {bound} | {a.keep} | {np.mean(s.fraction):.1%} | "
                         f"{np.mean(s.regret):.2f} | {np.mean(s.best_in_set):.0%} | {np.mean(s.set_size):.1f} |")
    return "\n".join(lines)


def main() -> None:
    """Print, per gain map, the methods' table, adaptive's paired differences and the goal (and --search's layouts);
    return None."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gains", help="CSV target,cell,gain (points) instead of the synthetic maps")
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.10, 0.15, 0.25, 0.40, 0.60])
    parser.add_argument("--dev-items", type=int, default=Noise.dev_items)
    parser.add_argument("--test-items", type=int, default=Noise.test_items)
    parser.add_argument("--disagree", type=float, default=Noise.disagree)
    parser.add_argument("--seed-sd", type=float, default=Noise.seed_sd, help="points")
    parser.add_argument("--seed-share", type=float, default=Noise.seed_share)
    parser.add_argument("--rank-corr", type=float, default=Noise.rank_corr)
    parser.add_argument("--rank-corr-at", type=float, default=Noise.rank_corr_at)
    parser.add_argument("--shrink", type=float, default=Noise.shrink)
    parser.add_argument("--seeds", type=int, default=Noise.seeds)
    parser.add_argument("--step-seconds", type=float, default=Cost.step_s)
    parser.add_argument("--item-seconds", type=float, default=Cost.item_s)
    parser.add_argument("--total-steps", type=int, default=Cost.total_steps)
    parser.add_argument("--per-report", type=int, default=Cost.per_report)
    parser.add_argument("--no-tpe", action="store_true", help="leave out Optuna TPE (the slowest method)")
    parser.add_argument("--search", action="store_true", help="also compare adaptive layouts at 25%% and 60%%")
    parser.add_argument("--search-only", action="store_true", help="only the layouts (--search without the table)")
    parser.add_argument("--smoke-test", action="store_true", help="one small map, two reps: seconds")
    args = parser.parse_args()
    noise = Noise(args.dev_items, args.test_items, args.disagree, args.seed_sd, args.seed_share, args.rank_corr,
                  args.rank_corr_at, args.shrink, args.seeds)
    cost = Cost(args.step_seconds, args.item_seconds, args.total_steps, args.per_report)
    if args.gains:
        maps = [read_gains(args.gains)]
    elif args.smoke_test:
        maps = [synthetic_aux()]
    else:
        maps = [synthetic_pairs(), synthetic_aux()]
    if args.smoke_test:
        args.reps, args.fractions = 2, [0.25, 0.6]
    args.fractions = sorted(args.fractions)
    print(f"noise: {noise}\ncost: {cost}\nreps: {args.reps}")
    for gmap in maps:
        t0 = time.perf_counter()
        tau, corr = calibrate_tau(gmap, noise.rank_corr)
        adaptive = AdaptiveConfig()
        print(f"\n## {gmap.name}: {len(gmap.cells)} cells x {len(gmap.targets)} targets; adaptive {adaptive}; "
              f"tau at {noise.rank_corr_at:.0%} = {tau:.2f} (mean Spearman {corr:.3f})\n")
        if not args.search_only:
            table = simulate(gmap, cost, noise, adaptive, args.fractions, args.reps, tpe=not args.no_tpe,
                             predictive_to=None)
            print(markdown(table))
            print("\nadaptive's regret minus the others' (paired over repetitions; negative: adaptive better)\n")
            print(paired_table(table, len(gmap.targets)))
            print("\n" + goal_lines(table, 0.25 if len(gmap.cells) >= 100 else 0.60))
            print("\n" + predictive_lines(table, len(gmap.targets), 0.10 if len(gmap.cells) >= 100 else 0.25))
        if args.search or args.search_only:  # (keep fitted with per_target as configured)
            for goal in (0.25, 0.60):
                print("\n" + search(gmap, cost, noise, goal, args.reps, adaptive))
        print(f"\n({time.perf_counter() - t0:.1f} s)")


def per_rep(s: Score, n_targets: int) -> np.ndarray:
    """Return a score's regret averaged over targets, one value per repetition."""
    return np.asarray(s.regret).reshape(-1, n_targets).mean(axis=1)


def paired_table(table: dict[tuple[str, float], Score], n_targets: int, method: str = "adaptive") -> str:
    """Return `method`'s regret minus each other method's at the same fraction: mean ± se over repetitions (paired:
    every method measures the same simulated runs)."""
    others = sorted({name for name, f in table if 0 < f < 1} - {method})
    lines = ["| compute | " + " | ".join(f"{method} - {o}" for o in others) + f" | {method} - grid (100%) |",
             "|---" * (len(others) + 2) + "|"]
    grid = per_rep(table["grid", 1.0], n_targets)
    for (name, f), s in sorted(table.items()):
        if name != method or f >= 1:
            continue
        mine, cells = per_rep(s, n_targets), []
        for o in others + ["grid"]:
            theirs = grid if o == "grid" else per_rep(table[o, f], n_targets) if (o, f) in table else None
            if theirs is None:
                cells.append("n/a")
                continue
            d = mine - theirs
            cells.append(f"{d.mean():+.2f} ± {d.std(ddof=1) / math.sqrt(len(d)) if len(d) > 1 else 0:.2f}")
        lines.append(f"| {f:.0%} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def predictive_lines(table: dict[tuple[str, float], Score], n_targets: int, limit: float) -> str:
    """Return the predictive search's comparisons: paired against the others, its goal (regret at most the grid's
    own at <= `limit` of its compute) and the model's picks on the grid's outcomes against the grid's own picks."""
    if not any(name == "predictive" for name, _ in table):
        return ""
    out = [paired_table(table, n_targets, "predictive"), "", goal_lines(table, limit, "predictive", 0.0)]
    if ("grid, model's picks", 1.0) in table:
        d = per_rep(table["grid, model's picks", 1.0], n_targets) - per_rep(table["grid", 1.0], n_targets)
        se = d.std(ddof=1) / math.sqrt(len(d)) if len(d) > 1 else 0.0
        out.append(f"at 100% of the compute, the model's picks minus the grid's own: {d.mean():+.2f} ± {se:.2f} "
                   f"points of regret ({'better' if d.mean() < 0 else 'not better'})")
    return "\n".join(out)


def goal_lines(table: dict[tuple[str, float], Score], limit: float, method: str = "adaptive",
               slack: float = 0.1) -> str:
    """Return whether `method` meets its goal: regret at most the grid's + `slack` points within `limit` of its
    compute (adaptive: + 0.1 points at <= 25% / 60%; predictive: no slack at <= 10% / 25%)."""
    grid = float(np.mean(table["grid", 1.0].regret))
    out = []
    for (name, f), s in sorted(table.items()):
        if name.startswith(method) and np.mean(s.fraction) <= limit + 1e-9:
            r = float(np.mean(s.regret))
            out.append(f"goal ({name}, {np.mean(s.fraction):.1%} of the grid <= {limit:.0%}): regret {r:.2f} vs "
                       f"grid {grid:.2f} + {slack:.2f} -> {'met' if r <= grid + slack else 'NOT met'}")
    return "\n".join(out)


if __name__ == "__main__":
    main()
