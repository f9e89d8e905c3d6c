"""Benchmark: the paired bootstrap of `analysis.stats` at the paper's pairs-sweep size, on synthetic outcomes.

    python benchmarks/stats_bootstrap.py                   # 226 variants x 15 targets x 5,010 items x 3 seeds, 10,000
    python benchmarks/stats_bootstrap.py --smoke-test      # 10 variants x 4 targets x 500 items, 1,000 resamples

Every variant gets a cell per target plus `avg` and `avg_excl_aux` (as `xlamaml analyze` builds them); per-item
differences are -1/0/+1 with a 20% disagreement rate, XNLI-like (every language scores the same pair ids). Prints
the seconds of `bootstrap` (not of building the synthetic cells) and the peak resident memory. A benchmark, not a
test: it prints, it asserts nothing.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from xlamaml.analysis.stats import Cell, Part, bootstrap


def synthetic_cells(variants: int, targets: int, items: int, seeds: int, seed: int = 0) -> list[Cell]:
    """Return the cells of `variants` variants: one per target and the two averages, sharing item ids."""
    rng = np.random.default_rng(seed)
    uids = tuple(str(i) for i in range(items))
    cells = []
    for v in range(variants):
        # (targets, seeds, items): -1, 0 or +1, with a small per-variant gain.
        diffs = rng.choice(np.array([-1, 0, 1], dtype=np.int8), size=(targets, seeds, items),
                           p=[0.1 - 0.002 * (v % 10), 0.8, 0.1 + 0.002 * (v % 10)])
        parts = [Part(f"l{t}", uids, diffs[t]) for t in range(targets)]
        cells += [Cell({"variant": v, "target": p.lang}, (p,)) for p in parts]
        cells.append(Cell({"variant": v, "target": "avg"}, tuple(parts)))
        cells.append(Cell({"variant": v, "target": "avg_excl_aux"}, tuple(parts[:-2])))
    return cells


def main() -> None:
    """Print the bootstrap's seconds and peak memory on synthetic cells of the chosen size; return None."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", type=int, default=226)
    parser.add_argument("--targets", type=int, default=15)
    parser.add_argument("--items", type=int, default=5010)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--resamples", type=int, default=10_000)
    parser.add_argument("--smoke-test", action="store_true", help="a small case, seconds")
    args = parser.parse_args()
    if args.smoke_test:
        args.variants, args.targets, args.items, args.resamples = 10, 4, 500, 1000
    cells = synthetic_cells(args.variants, args.targets, args.items, args.seeds)
    t0 = time.perf_counter()
    result = bootstrap(cells, resamples=args.resamples)
    seconds = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    significant = int(((result.ci_low > 0) | (result.ci_high < 0)).sum())
    print(f"{args.variants} variants x {args.targets} targets (+ avg, avg*) = {len(cells)} cells, {args.items} items, "
          f"{args.seeds} seeds, {args.resamples:,} resamples: {seconds:.1f} s, peak resident {peak_mb:.0f} MB "
          f"({significant} intervals exclude 0)")


if __name__ == "__main__":
    main()
