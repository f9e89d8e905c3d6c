"""Is the map model (xlamaml.search.predictive.map_model) calibrated on the recorded maps? Fit it to the dev outcomes of
some cells, predict the others, and count how often a held-out cell's 90% interval covers its recorded truth.

    python benchmarks/map_model_check.py                 # every map in benchmarks/maps/
    python benchmarks/map_model_check.py --map benchmarks/maps/pairs.npz --draws 100
    python benchmarks/map_model_check.py --smoke-test    # the smallest map, few draws: seconds

Truth, per (target, cell): the full-budget test gain over the baseline, the mean over every seed and test item. It is
itself measured with noise (its test items and seeds), so an interval is judged against it widened by that noise:
covered when |truth - mean| <= z * sqrt(sd^2 + truth variance). Two designs, each drawn `--draws` times:

- leave-cells-out: every seed of a random half of the cells at the full budget observed, the other half predicted;
- sparse: one seed of a random quarter of the cells observed (what a predictive sweep has seen early on).

It prints the coverage of the held-out cells' 90% intervals (goal 85-95%) and of the observed cells', the mean
held-out sd, and the group sds fitted on the whole grid.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # small matrices: BLAS threads only contend

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.recorded_map import RecordedMap, add_map_arguments, chosen_maps, read_map  # noqa: E402
from xlamaml.search.adaptive.rule import seed_variance  # noqa: E402
from xlamaml.search.predictive.map_model import (Design, Posterior, dev_observation, fit,  # noqa: E402
                                                 shared_item_var, shared_seed_var)
from xlamaml.search.predictive.side_info import cell_distances  # noqa: E402

Z90 = 1.644854


def truth_variance(m: RecordedMap) -> np.ndarray:
    """Return the (targets, cells) variance (points^2) of the truth: its test items' paired part plus the seeds'."""
    rows = m.test_rows
    out = np.full(m.judged.shape, np.nan)
    for ti, r in enumerate(rows):
        seed_var = seed_variance(list(m.test[:, :, r]), 100.0)  # pooled over every cell's seeds, fraction units
        for c in range(len(m.cells)):
            d = m.test[c, :, r].mean(axis=0) - m.base_test[r]
            out[ti, c] = 1e4 * (d.var(ddof=1) / d.size + seed_var / len(m.seeds))
    return np.where(m.judged, out, np.nan)


def dev_seed_var(m: RecordedMap, ti: int) -> float:
    """Return the pooled variance (points^2) over seeds of a run's full-budget dev accuracy on target `ti`."""
    return 1e4 * seed_variance(list(m.dev[:, :, -1, ti]), 100.0)


def run_shared_var(m: RecordedMap) -> float:
    """Return the part of the seed variance (points^2) a run's targets share, from the whole grid's full-budget dev:
    what a sweep would know from a prior map or from its own cells with several seeds."""
    per_cell = []
    for c in range(len(m.cells)):
        rows = np.flatnonzero(m.judged[:, c])
        acc = m.dev[c, :, -1][:, rows].mean(axis=2)  # (seeds, judged targets)
        per_cell.append(100 * (acc - m.base_dev[rows].mean(axis=1)).T)
    return shared_seed_var(per_cell) or 0.0


def observe(m: RecordedMap, cells: list[int], seeds: list[int], shared_run: float = 0.0,
            ) -> tuple[list, dict[str, float], dict[str, float]]:
    """Return the Observations of the given cells' full-budget dev outcomes from the given seeds (every target), per
    target the error variance their dev gains share (fit's offset_var), and per cell its runs' shared error
    (fit's run_var: `shared_run` over the seeds)."""
    out, shared = [], {}
    for ti, t in enumerate(m.dev_langs):
        sv = dev_seed_var(m, ti)  # the grid's seed variance: known from a prior map in a sweep
        judged = [c for c in cells if m.judged[ti, c]]
        for c in judged:
            out.append(dev_observation(t, m.cells[c], m.dev[c, seeds, -1, ti], m.base_dev[ti], sv,
                                       shared_seed_var=shared_run))
        shared[t] = shared_item_var([m.dev[c, seeds, -1, ti] for c in judged], m.base_dev[ti])
    return out, shared, {m.cells[c]: shared_run / len(seeds) for c in cells}


def coverage(post: Posterior, truth: np.ndarray, truth_var: np.ndarray, mask: np.ndarray) -> float:
    """Return the share of the masked entries whose 90% interval, widened by the truth's own noise, covers the truth."""
    hit = np.abs(truth - post.mean) <= Z90 * np.sqrt(post.sd ** 2 + truth_var)
    return float(hit[mask].mean())


def check(m: RecordedMap, name: str, draws: int, side: bool = False) -> str:
    """Return the coverage table of one map over `draws` random designs of each kind (`side`: with the URIEL+
    distances of target and cell languages as covariates)."""
    truth, tvar = m.test_gains, truth_variance(m)
    shared_run = run_shared_var(m)
    design = Design.build(m.dev_langs, m.cells, cell_distances(m.dev_langs, m.cells) if side else None)
    n_c, n_s = len(m.cells), len(m.seeds)
    lines = [f"## {name}: {n_c} cells x {n_s} seeds, {len(m.dev_langs)} targets; {draws} draws per design"
             + (", URIEL+ distances as covariates" if side else ""),
             "", "| design | held-out 90% coverage | observed 90% coverage | held-out sd (points) | residual sd |",
             "|---|---|---|---|---|"]
    rng = np.random.default_rng(0)
    for label, share, seeds_seen in (("leave-cells-out: half the cells, every seed", 0.5, n_s),
                                     ("sparse: a quarter of the cells, one seed", 0.25, 1)):
        held, seen, sds, res = [], [], [], []
        for _ in range(draws):
            cells = sorted(rng.choice(n_c, max(2, round(share * n_c)), replace=False).tolist())
            seeds = sorted(rng.choice(n_s, seeds_seen, replace=False).tolist())
            obs, shared, runs = observe(m, cells, seeds, shared_run)
            post = fit(design, obs, judged=m.judged, offset_var=shared, run_var=runs)
            out = m.judged.copy()
            out[:, cells] = False
            inside = m.judged & ~out
            held.append(coverage(post, truth, tvar, out))
            seen.append(coverage(post, truth, tvar, inside))
            sds.append(float(np.nanmean(post.sd[out])))
            res.append(post.variances["residual"] ** 0.5)
        lines.append(f"| {label} | {np.mean(held):.0%} | {np.mean(seen):.0%} | {np.mean(sds):.2f} | "
                     f"{np.mean(res):.2f} |")
    obs, shared, runs = observe(m, list(range(n_c)), list(range(n_s)), shared_run)
    post = fit(design, obs, judged=m.judged, offset_var=shared, run_var=runs)
    v = ", ".join(f"{g} {val ** 0.5:.2f}" for g, val in post.variances.items())
    lines += ["", f"fitted on the whole grid (every cell and seed), group sds in points: {v}; a run's targets share "
                  f"a seed sd of {shared_run ** 0.5:.2f} points"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Print each recorded map's coverage table; return None."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--draws", type=int, default=50, help="random designs of each kind per map")
    p.add_argument("--side", action="store_true", help="URIEL+ distances as covariates of the model")
    add_map_arguments(p, "the smallest map, 3 draws: seconds")
    args = p.parse_args(argv)
    if args.smoke_test:
        args.draws = 3
    for path in chosen_maps(args.map, args.smoke_test):
        t0 = time.perf_counter()
        print(check(read_map(path), path.stem, args.draws, args.side))
        print(f"\n({time.perf_counter() - t0:.1f} s)\n", flush=True)


if __name__ == "__main__":
    main()
