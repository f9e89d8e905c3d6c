"""Replay every search strategy on recorded maps (benchmarks/maps/*.npz, written by benchmarks/record_map.py): the grid,
random cells, ASHA, Optuna TPE, the adaptive rule (xlamaml.search.schedule and xlamaml.search.adaptive.rule, the
code the sweep runs) and the predictive search (xlamaml.search.predictive, through benchmarks/sim_predictive.py), each
seeing only the outcomes it paid for and charged the recorded cost.

    python benchmarks/replay.py                                # every map in benchmarks/maps/, 200 replays each
    python benchmarks/replay.py --map benchmarks/maps/pairs.npz --reps 50 --fractions 0.1 0.25
    python benchmarks/replay.py --smoke-test                   # the smallest map, 2 replays, no TPE: seconds
    python benchmarks/replay.py --search                       # also adaptive layouts at 25% and 60% of the grid

Ground truth, per target: each cell's full-budget test gain over the baseline, the mean over all recorded seeds and
test items (the test items are never shown to a method). A method sees dev outcomes only: those of the (cell, seed)
runs it paid for, at the recorded fraction of the meta steps it stopped at (a budget between two recorded fractions
sees the lower one: ASHA's 1/3 reads the 25% record), on the first `dev_items` items a rung asks for. Every replay
resamples what is noise in the record: the order of the seeds (which seed a rung of one seed runs) and the dev items
(a bootstrap over each target's items, the same draw for every cell and the baseline, so comparisons stay paired).

Compute, one measure for every method, from the record itself: the mean recorded seconds per meta step and per scored
item (dev and test; the baseline's are left out), so a method pays its meta steps, dev at each report it uses, and test
once a trial finishes the full budget (benchmarks/sim_methods.py, as in the simulator). The table is the simulator's
(benchmarks/adaptive_sim.py): regret of each target's top pick on dev (true gain of the true best minus the pick's,
points), how often the true best is in the returned set and its size, at each fraction of the grid's compute.

A new strategy is a function (world, fraction, rep) -> Run in benchmarks/sim_methods.py's `methods()`: the simulator
and this replay then both run it, on the same table.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Callable

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # the map model's small matrices: BLAS threads only contend

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.adaptive_sim import goal_lines, markdown, paired_table, predictive_lines, search  # noqa: E402
from benchmarks.recorded_map import RecordedMap, add_map_arguments, chosen_maps, read_map  # noqa: E402
from benchmarks.sim_methods import simulate  # noqa: E402
from xlamaml.search.predictive.simulated import Cost, GainMap, Noise  # noqa: E402
from xlamaml.search.schedule import AdaptiveConfig  # noqa: E402



def recorded_cost(m: RecordedMap) -> Cost:
    """Return the map's cost: mean seconds per meta step and per scored item over its trials, its meta budget."""
    total = m.steps[-1]
    step_s = float(m.meta_s.sum() / (m.meta_s.shape[0] * m.meta_s.shape[1] * total))
    items = (m.dev_s.size * len(m.dev_langs) * m.dev.shape[-1]
             + m.test_s.size * len(m.test_langs) * m.test.shape[-1])
    item_s = float((m.dev_s.sum() + m.test_s.sum()) / items)
    return Cost(step_s=step_s, item_s=item_s, total_steps=total, per_report=max(1, total // 20))


def truth_map(m: RecordedMap, name: str) -> GainMap:
    """Return the map's ground truth as the simulator's GainMap: (targets, cells) full-budget test gains, points."""
    return GainMap(name, m.dev_langs, m.cells, m.test_gains)


class ReplayWorld:
    """One replay of a recorded map, with the simulator's World interface (search/predictive/simulated.py): `outcomes`
    returns recorded dev outcomes, the seeds in this replay's order and the items in its bootstrap draw."""

    def __init__(self, m: RecordedMap, gmap: GainMap, rep: int, resample: bool = True):
        self.map, self.rec, self.rep = gmap, m, rep
        rng = np.random.default_rng([rep, 7])
        n_s, d = len(m.seeds), m.dev.shape[-1]
        self.seed_order = rng.permutation(n_s) if resample else np.arange(n_s)
        # One bootstrap draw of item indices per target, shared by every cell and the baseline (paired).
        self.items = (rng.integers(0, d, (len(m.dev_langs), d)) if resample
                      else np.tile(np.arange(d), (len(m.dev_langs), 1)))
        self.noise = Noise(dev_items=d, test_items=m.test.shape[-1], seeds=n_s)
        self.base = np.take_along_axis(m.base_dev, self.items, axis=1)  # (targets, items)
        self.true = np.nan_to_num(gmap.gains, nan=-np.inf)
        self.fractions = np.asarray(m.fractions)

    def fraction_index(self, steps: int, total: int) -> int:
        """Return the recorded fraction a run stopped at `steps` of `total` sees: the largest at or below it."""
        f = steps / total
        return int(np.searchsorted(self.fractions, f + 1e-9, side="right") - 1) if f < 1 else len(self.fractions) - 1

    def outcomes(self, cell: int, steps: int, total: int) -> np.ndarray:
        """Return the (targets, seeds, dev items) 0/1 outcomes of a cell's runs after `steps` meta steps."""
        i = max(0, self.fraction_index(steps, total))
        x = self.rec.dev[cell][self.seed_order][:, i]  # (seeds, targets, items)
        x = np.take_along_axis(x, self.items[None], axis=2)
        return x.transpose(1, 0, 2)


def replay_inputs(m: RecordedMap, name: str) -> tuple[GainMap, Cost, Noise, Callable[[int], ReplayWorld]]:
    """Return what the simulator's functions take for a recorded map: its truth, cost, design and worlds."""
    gmap = truth_map(m, name)
    noise = Noise(dev_items=m.dev.shape[-1], test_items=m.test.shape[-1], seeds=len(m.seeds))
    return gmap, recorded_cost(m), noise, lambda rep: ReplayWorld(m, gmap, rep)


def replay(m: RecordedMap, name: str, fractions: list[float], reps: int, tpe: bool,
           adaptive: AdaptiveConfig, predictive: bool = True) -> dict:
    """Return the simulator's table (method, fraction) -> Score, replayed `reps` times on the recorded map."""
    gmap, cost, noise, worlds = replay_inputs(m, name)
    return simulate(gmap, cost, noise, adaptive, fractions, reps, tpe=tpe, make_world=worlds, predictive=predictive)


def describe(m: RecordedMap, name: str) -> str:
    """Return a few lines on what the map is and what a trial of it cost."""
    cost = recorded_cost(m)
    v = m.info.get("versions", {})
    g = m.test_gains
    chance = float(np.mean(np.nanmax(g, axis=1) - np.nanmean(g, axis=1)))
    spread = float(np.mean(np.nanmax(g, axis=1) - np.nanmin(g, axis=1)))
    return (f"## {name}: {len(m.cells)} cells x {len(m.seeds)} seeds, {len(m.dev_langs)} targets, "
            f"{m.dev.shape[-1]} dev / {m.test.shape[-1]} test items per target, {m.steps[-1]} meta steps; "
            f"recorded {m.info.get('recorded', '?')} on {v.get('cpu', '?')} ({v.get('cpu_flags', '')}) in "
            f"{m.info.get('wall_s', 0) / 60:.1f} min\ncost: {cost.step_s:.3f} s per meta step, "
            f"{1000 * cost.item_s:.2f} ms per scored item, set-up {float(np.mean(m.setup_s)):.1f} s per trial "
            f"(not charged); a grid trial {m.trial_seconds():.1f} s\ntruth: per target, best minus worst cell "
            f"{spread:.2f} points on average; a cell picked at random has a regret of {chance:.2f}")


def main(argv: list[str] | None = None) -> None:
    """Print, per recorded map, every method's regret against compute; return None."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=200, help="replays per map (seed order and dev items resampled)")
    p.add_argument("--fractions", type=float, nargs="+", default=[0.10, 0.25, 0.40, 0.60])
    p.add_argument("--no-tpe", action="store_true", help="leave out Optuna TPE (the slowest method)")
    p.add_argument("--no-predictive", action="store_true", help="leave out the predictive search")
    p.add_argument("--search", action="store_true", help="also compare adaptive layouts at 25%% and 60%% of the grid")
    add_map_arguments(p, "the smallest map, 2 replays, no TPE: seconds")
    args = p.parse_args(argv)
    if args.smoke_test:
        args.reps, args.no_tpe, args.fractions = 2, True, [0.25]
    for path in chosen_maps(args.map, args.smoke_test):
        t0 = time.perf_counter()
        m = read_map(path)
        name = path.stem
        print(describe(m, name) + f"\nreplays: {args.reps}\n")
        table = replay(m, name, sorted(args.fractions), args.reps, not args.no_tpe, AdaptiveConfig(),
                       not args.no_predictive)
        print(markdown(table))
        print("\nadaptive's regret minus the others' (paired over replays; negative: adaptive better)\n")
        print(paired_table(table, len(m.dev_langs)))
        print("\n" + goal_lines(table, 0.25 if "pairs" in name else 0.60))
        if not args.no_predictive:
            print("\npredictive's regret minus the others'\n\n"
                  + predictive_lines(table, len(m.dev_langs), 0.10 if "pairs" in name else 0.25))
        if args.search:
            gmap, cost, noise, worlds = replay_inputs(m, name)
            for goal in (0.25, 0.60):
                print("\n" + search(gmap, cost, noise, goal, args.reps, AdaptiveConfig(), make_world=worlds))
        print(f"\n({time.perf_counter() - t0:.1f} s)\n", flush=True)


if __name__ == "__main__":
    main()
