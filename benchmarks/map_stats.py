"""What a recorded map says (benchmarks/maps/*.npz): whether languages matter in it, how well a short run ranks its
cells, how much of it simple structure explains, and how noisy it is.

    python benchmarks/map_stats.py                         # every map in benchmarks/maps/
    python benchmarks/map_stats.py --map benchmarks/maps/pairs.npz
    python benchmarks/map_stats.py --smoke-test            # the smallest map: seconds

Sections, per map (gains in points over the baseline; a cell is judged only on targets it did not train on):
1. Do languages matter: per target, the best cell (by its test gain) minus the median cell, with a 95% interval
   paired over test items plus the two cells' own seed variances (`cell_difference`), and with the seeds paired
   across cells (`seed_paired_difference`: a grid gives every cell the same seeds) and that difference's run and
   item parts (`paired_noise_parts`); the same with the best cell chosen on dev (full budget, every seed), which
   carries no selection bias; and the spread (max - min) of the target's test gains.
2. Ranking by budget: per target, Spearman of the dev gains at each recorded fraction of the meta steps (one seed,
   as an adaptive rung 0 runs, and every seed) with the final test gains; mean, sd and range over targets.
3. Structure: the share of the test-gain variance (judged (target, cell) pairs) that main effects explain (target,
   then method (X-MAML or XLA-MAML), support and query; en -> aux maps: target then auxiliary language), the noise
   floor of the gains, and the singular values of the target x cell matrix (double-centred, its missing pairs filled
   by the main effects) against those of pure noise of the measured size.
4. Noise: seed sd of a run's accuracy (pooled over judged pairs), the item noise of one run, and the paired
   disagreement of a run's per-item outcomes with the baseline's (dev and test).
5. Cost: where a recorded trial's seconds went, and the recording's wall time.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.recorded_map import RecordedMap, add_map_arguments, chosen_maps, read_map  # noqa: E402
from xlamaml.search.predictive.simulated import spearman_rows  # noqa: E402
from xlamaml.trainables.assignment import parse_assignment  # noqa: E402

Z95 = 1.959964


def seed_var(m: RecordedMap, ti: int) -> float:
    """Return the pooled variance over seeds of a run's test accuracy on target `ti` (fraction units), judged cells."""
    acc = m.test[:, :, m.test_rows[ti], :].mean(axis=2)  # (cells, seeds)
    acc = acc[m.judged[ti]]
    return float(((acc - acc.mean(axis=1, keepdims=True)) ** 2).sum() / (acc.shape[0] * (acc.shape[1] - 1)))


def cell_difference(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Return (mean difference of two cells' (seeds, items) outcomes, its standard error): paired over items, plus
    the two cells' own seed variances of their per-seed accuracies (seeds of different cells are not paired)."""
    d = a.mean(axis=0) - b.mean(axis=0)
    seeds = a.mean(axis=1).var(ddof=1) / len(a) + b.mean(axis=1).var(ddof=1) / len(b)
    return float(d.mean()), float(np.sqrt(d.var(ddof=1) / d.size + seeds))


# Two-sided 95% quantiles of Student's t by degrees of freedom (seeds - 1), for seed-paired intervals.
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
        11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093, 20: 2.086,
        21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064, 25: 2.060, 26: 2.056, 27: 2.052, 28: 2.048, 29: 2.045, 30: 2.042}


def t975(df: int) -> float:
    """Return the two-sided 95% quantile of Student's t with `df` degrees of freedom (beyond the table: the first
    Cornish-Fisher term, within 0.003 of it)."""
    return T975[df] if df in T975 else Z95 + (Z95 ** 3 + Z95) / (4 * df)


def seed_paired_difference(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Return (mean difference, 95% half-width) of two cells' (seeds, items) outcomes with the seeds paired (a grid
    gives every cell the same seeds, and a seed moves all of its runs alike): t over the per-seed mean differences."""
    d = (a - b).mean(axis=1)
    return float(d.mean()), t975(len(d) - 1) * float(d.std(ddof=1)) / math.sqrt(len(d))


def paired_noise_parts(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Return (run variance, per-item variance) of two cells' seed-paired (seeds, items) differences: the per-seed
    mean difference varies by run + item / items. The run part is what a seed does to a whole run and stays however
    many items are scored; the item part (two-way residual of seeds x items) averages out over more items. The run
    part is a difference of two noisy terms, clipped at 0: with few seeds and few items it is often 0 when it is not
    (en-aux-deep-t4's 3 seeds: 0 on 3 of 8 targets over 1,000 test items, 0.4-1.9 points over all 5,010)."""
    d = (a - b).astype(float)  # (seeds, items)
    s, n = d.shape
    resid = d - d.mean(axis=0, keepdims=True) - d.mean(axis=1, keepdims=True) + d.mean()
    item = float((resid ** 2).sum()) / ((s - 1) * (n - 1))
    return max(float(d.mean(axis=1).var(ddof=1)) - item / n, 0.0), item


def languages_matter(m: RecordedMap) -> tuple[list[dict], str]:
    """Return per target {target, best, median, diff, lo, hi, dev_best, dev_diff, dev_lo, dev_hi, spread, paired_lo,
    run_sd, item_sd, dev_paired_lo}, and a table of them."""
    rows, truth, dev = [], m.test_gains, m.dev_gains()
    for ti, t in enumerate(m.dev_langs):
        judged = np.flatnonzero(m.judged[ti])
        order = judged[np.argsort(truth[ti, judged])]
        best, median = order[-1], order[len(order) // 2]
        dev_best = judged[int(np.argmax(dev[ti, judged]))]
        x = m.test[:, :, m.test_rows[ti], :]  # (cells, seeds, items)
        d, se = cell_difference(x[best], x[median])
        _, half = seed_paired_difference(x[best], x[median])
        run, item = paired_noise_parts(x[best], x[median])
        dd, dse = cell_difference(x[dev_best], x[median])
        _, dev_half = seed_paired_difference(x[dev_best], x[median])
        rows.append({"target": t, "best": m.cells[best], "median": m.cells[median], "diff": 100 * d,
                     "lo": 100 * (d - Z95 * se), "hi": 100 * (d + Z95 * se), "dev_best": m.cells[dev_best],
                     "dev_diff": 100 * dd, "dev_lo": 100 * (dd - Z95 * dse), "dev_hi": 100 * (dd + Z95 * dse),
                     "spread": float(np.ptp(truth[ti, judged])), "paired_lo": 100 * (d - half),
                     "run_sd": 100 * math.sqrt(run), "item_sd": 100 * math.sqrt(item / x.shape[-1]),
                     "dev_paired_lo": 100 * (dd - dev_half)})
    lines = ["| target | best (test) | - median, 95% CI | seed-paired: low end; run sd, item sd | "
             "best on dev | its test - median, 95% CI; seed-paired low end | spread |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['target']} | {r['best']} | {r['diff']:+.2f} [{r['lo']:+.2f}, {r['hi']:+.2f}] | "
                     f"{r['paired_lo']:+.2f}; {r['run_sd']:.2f}, {r['item_sd']:.2f} | "
                     f"{r['dev_best']} | {r['dev_diff']:+.2f} [{r['dev_lo']:+.2f}, {r['dev_hi']:+.2f}]; "
                     f"{r['dev_paired_lo']:+.2f} | {r['spread']:.2f} |")
    clear = sum(r["lo"] > 0 for r in rows)
    paired = sum(r["paired_lo"] > 0 for r in rows)
    dev_clear = sum(r["dev_lo"] > 0 for r in rows)
    dev_paired = sum(r["dev_paired_lo"] > 0 for r in rows)
    lines.append(f"\nbest > median clear of zero: {clear} of {len(rows)} targets (best on test), {dev_clear} of "
                 f"{len(rows)} (best chosen on dev); with the seeds paired across cells (t over per-seed "
                 f"differences): {paired} of {len(rows)} (best on test), {dev_paired} of {len(rows)} (best chosen on "
                 f"dev). The per-seed difference's sd splits into a run part, which more test items do not shrink, and "
                 f"an item part. Spread of test gains: median {np.median([r['spread'] for r in rows]):.2f}, min "
                 f"{min(r['spread'] for r in rows):.2f} points")
    return rows, "\n".join(lines)


def ranking_by_fraction(m: RecordedMap) -> tuple[dict[float, tuple[np.ndarray, np.ndarray]], str]:
    """Return fraction -> (per-target Spearman with one seed, with every seed) and a table."""
    truth = m.test_gains
    base = m.base_dev.mean(axis=1)  # (dev langs,)
    lines = ["| fraction (steps) | Spearman, 1 seed: mean ± sd [min, max] | every seed: mean ± sd [min, max] |",
             "|---|---|---|"]
    out = {}
    for i, (f, steps) in enumerate(zip(m.fractions, m.steps)):
        one = (m.dev[:, 0, i].mean(axis=2).T - base[:, None])  # (targets, cells)
        every = (m.dev[:, :, i].mean(axis=(1, 3)).T - base[:, None])
        r1 = spearman_rows(one, truth, m.judged)
        ra = spearman_rows(every, truth, m.judged)
        out[f] = (r1, ra)
        cell = lambda r: f"{np.nanmean(r):.2f} ± {np.nanstd(r):.2f} [{np.nanmin(r):.2f}, {np.nanmax(r):.2f}]"  # noqa
        lines.append(f"| {f:g} ({steps}) | {cell(r1)} | {cell(ra)} |")
    return out, "\n".join(lines)


def dev_excess(m: RecordedMap) -> tuple[np.ndarray, str]:
    """Return each target's mean full-budget dev gain minus its test gain over the judged cells (points), and a line."""
    excess = np.nanmean(m.dev_gains() - m.test_gains, axis=1)  # (dev langs,)
    return excess, (f"full-budget dev gains exceed the test gains by {np.nanmean(excess):+.2f} points on average (per "
                    f"target {np.nanmin(excess):+.2f} to {np.nanmax(excess):+.2f}). On XNLI a large excess is the "
                    f"parallel-dev leak: the episode pools are the first dev pairs of their languages, and every "
                    f"target's first dev pairs translate them (docs/recorded-maps.md)")


def effects_design(m: RecordedMap) -> list[tuple[str, list[str]]]:
    """Return the main-effect factors [(name, the level of every (target, cell) pair, target-major)]."""
    pairs = [(ti, ci) for ti in range(len(m.dev_langs)) for ci in range(len(m.cells))]
    parsed = [parse_assignment(c) for c in m.cells]
    factors = [("target", [m.dev_langs[ti] for ti, _ in pairs])]
    methods = [parsed[ci].method for _, ci in pairs]
    if len(set(methods)) > 1:  # a pairs map: X-MAML on the diagonal, XLA-MAML elsewhere
        factors.append(("method", methods))
    # X-MAML draws support and query from its one language: the diagonal of a pairs map.
    supports = ["+".join(parsed[ci].support or parsed[ci].query) for _, ci in pairs]
    queries = ["+".join(parsed[ci].query) for _, ci in pairs]
    if len(set(supports)) > 1 and supports != queries:
        factors.append(("support", supports))
    factors.append(("query" if len(factors) > 1 else "auxiliary", queries))
    return factors


def one_hot(levels: list[str]) -> np.ndarray:
    """Return the (rows, distinct levels - 1) dummy columns of a factor (its first level the reference)."""
    names = sorted(set(levels))
    return np.array([[lv == n for n in names[1:]] for lv in levels], dtype=float).reshape(len(levels), -1)


def fit_share(y: np.ndarray, x: np.ndarray, rows: np.ndarray) -> tuple[float, np.ndarray]:
    """Return (R^2 on `rows`, the fit at every row) of least squares of y[rows] on the columns of x (with intercept)."""
    x = np.column_stack([np.ones(len(x)), x])
    coef, *_ = np.linalg.lstsq(x[rows], y[rows], rcond=None)
    fit = x @ coef
    r = y[rows] - fit[rows]
    return 1 - float((r ** 2).sum() / ((y[rows] - y[rows].mean()) ** 2).sum()), fit


def gain_matrix(m: RecordedMap, seeds: np.ndarray | slice = slice(None), items: np.ndarray | slice = slice(None),
                ) -> np.ndarray:
    """Return the map's test gains from some seeds and test items, double-centred (what is left to tell cells apart
    within targets); NaN where not judged."""
    g = m.gains(seeds, items)
    g = g - np.nanmean(g, axis=1, keepdims=True)
    return g - np.nanmean(g, axis=0, keepdims=True) + np.nanmean(g)


def truth_noise(m: RecordedMap, draws: int = 50) -> float:
    """Return the noise variance (points^2) of one judged entry of the double-centred truth: the seeds' part (the
    spread of one-seed matrices, over the number of seeds) plus the test items' part (half-split differences of the
    all-seed matrix: var(half1 - half2) / 4 is the variance of the mean over all items)."""
    n_s, n_i = len(m.seeds), m.test.shape[-1]
    per_seed = np.stack([gain_matrix(m, np.array([s])) for s in range(n_s)])[:, m.judged]  # (seeds, judged pairs)
    seed_part = float(np.mean(np.var(per_seed, axis=0, ddof=1))) / n_s
    rng = np.random.default_rng(0)
    item_part = []
    for _ in range(draws):
        order = rng.permutation(n_i)
        d = gain_matrix(m, items=order[: n_i // 2]) - gain_matrix(m, items=order[n_i // 2:])
        item_part.append(float(np.mean(d[m.judged] ** 2)) / 4)
    return seed_part + float(np.mean(item_part))


def structure(m: RecordedMap, noise_reps: int = 200) -> str:
    """Return the variance shares of the main effects, the noise floor and the singular values against noise."""
    factors = effects_design(m)
    rows = m.judged.ravel()
    y = np.nan_to_num(m.test_gains.ravel())
    lines, cols, prev = [], [], 0.0
    for name, levels in factors:
        cols.append(one_hot(levels))
        r2, fit = fit_share(y, np.column_stack(cols), rows)
        lines.append(f"+ {name}: R^2 {r2:.2f} (adds {r2 - prev:.2f})")
        prev = r2
    noise_var = truth_noise(m)
    total = float(y[rows].var())
    residual = float(((y - fit)[rows] ** 2).mean())
    lines.append(f"variance of the judged test gains {total:.2f} points^2 (sd {math.sqrt(total):.2f}); residual "
                 f"after the main effects {residual:.2f}; the gains' own noise (seeds and items of the truth) "
                 f"{noise_var:.2f} (within-target contrasts: seeds and test items), so main effects explain "
                 f"{prev:.0%} of the variance and noise about {min(1.0, noise_var / total):.0%}")
    # Singular values: target x cell, pairs not judged filled by the main-effect fit, double-centred.
    mat = np.where(m.judged, m.test_gains, fit.reshape(m.test_gains.shape))
    mat = mat - mat.mean(axis=0, keepdims=True) - mat.mean(axis=1, keepdims=True) + mat.mean()
    sv = np.linalg.svd(mat, compute_uv=False)
    rng = np.random.default_rng(0)
    sd = math.sqrt(noise_var)
    noise_sv = []
    for _ in range(noise_reps):
        e = rng.normal(0, sd, mat.shape)
        e = e - e.mean(axis=0, keepdims=True) - e.mean(axis=1, keepdims=True) + e.mean()
        noise_sv.append(np.linalg.svd(e, compute_uv=False))
    q95 = np.quantile(np.array(noise_sv), 0.95, axis=0)
    above = int(np.argmin(np.append(sv > q95, False)))  # leading singular values above noise's
    share = sv ** 2 / (sv ** 2).sum()
    lines.append(f"target x cell matrix ({mat.shape[0]} x {mat.shape[1]}, double-centred): singular values "
                 f"{', '.join(f'{v:.1f}' for v in sv[:5])} (variance shares "
                 f"{', '.join(f'{s:.0%}' for s in share[:5])});"
                 f" pure noise of the gains' sd gives at most {', '.join(f'{v:.1f}' for v in q95[:5])} (95%): "
                 f"rank above noise {above}")
    return "\n".join(lines)


def noise(m: RecordedMap) -> str:
    """Return the seed sd, the item noise and the paired disagreement with the baseline."""
    rows = m.test_rows
    seed_sd = math.sqrt(np.mean([seed_var(m, ti) for ti in range(len(m.dev_langs))])) * 100
    p = float(m.base_test.mean())
    item_sd = 100 * math.sqrt(p * (1 - p) / m.test.shape[-1])
    dis_dev = float(np.mean([(m.dev[ci, :, -1, ti] != m.base_dev[ti]).mean()
                             for ti in range(len(m.dev_langs)) for ci in np.flatnonzero(m.judged[ti])]))
    dis_test = float(np.mean([(m.test[ci, :, rows[ti]] != m.base_test[rows[ti]]).mean()
                              for ti in range(len(m.dev_langs)) for ci in np.flatnonzero(m.judged[ti])]))
    seed_pair = float(np.mean([(m.test[ci, 0, rows[ti]] != m.test[ci, 1, rows[ti]]).mean()
                               for ti in range(len(m.dev_langs)) for ci in np.flatnonzero(m.judged[ti])]))
    return (f"seed sd of a run's test accuracy {seed_sd:.2f} points (pooled; it holds the item draws of "
            f"{m.test.shape[-1]} items, binomial sd {item_sd:.2f} if they were independent); baseline accuracy dev "
            f"{100 * m.base_dev.mean():.1f}, test {100 * p:.1f}; paired disagreement with the baseline: dev "
            f"{dis_dev:.3f}, test {dis_test:.3f}; between two seeds of a cell (test) {seed_pair:.3f}")


def cost(m: RecordedMap) -> str:
    """Return where a recorded trial's seconds went (set-up, meta steps, dev at every fraction, test) and the
    recording's wall time."""
    parts = {"set-up": m.setup_s.mean(), "meta steps": m.meta_s.sum(axis=2).mean(),
             f"dev ({len(m.fractions)} fractions)": m.dev_s.sum(axis=2).mean(), "test": m.test_s.mean()}
    total = sum(parts.values())
    grid = m.setup_s + m.meta_s.sum(axis=2) + m.dev_s[:, :, -1] + m.test_s  # a grid trial scores dev once
    v = m.info.get("versions", {})
    shares = ", ".join(f"{k} {x:.1f} s ({x / total:.0%})" for k, x in parts.items())
    return (f"a recorded trial {total:.1f} s: {shares}"
            f"; a grid trial (dev once) {grid.mean():.1f} s; {m.meta_s.sum(axis=2).mean() / m.steps[-1]:.3f} s per "
            f"meta step; recording {m.info.get('wall_s', 0) / 60:.1f} min on {m.info.get('workers', '?')} workers "
            f"(English stage and feature cache {m.info.get('prepare_s', 0):.0f} s of it) on {v.get('cpu', '?')} "
            f"({v.get('cpu_flags', '')}), {m.info.get('run', {}).get('precision', '?')} precision")


def report(m: RecordedMap, name: str) -> str:
    """Return every section for one map."""
    _, matter = languages_matter(m)
    _, ranking = ranking_by_fraction(m)
    gains = m.test_gains
    return "\n\n".join([
        f"## {name}: {len(m.cells)} cells x {len(m.seeds)} seeds, {len(m.dev_langs)} targets, "
        f"{m.dev.shape[-1]} dev / {m.test.shape[-1]} test items per target; test gains mean {np.nanmean(gains):+.2f}, "
        f"range [{np.nanmin(gains):+.2f}, {np.nanmax(gains):+.2f}] points",
        "### 1. do languages matter (test, points)\n\n" + matter,
        "### 2. how dev at each fraction of the meta steps ranks the cells (Spearman with the final test gain, per "
        "target)\n\n" + ranking + "\n\n" + dev_excess(m)[1],
        "### 3. structure\n\n" + structure(m),
        "### 4. noise\n\n" + noise(m),
        "### 5. cost\n\n" + cost(m)])


def main(argv: list[str] | None = None) -> None:
    """Print the statistics of every recorded map; return None."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_map_arguments(p)
    args = p.parse_args(argv)
    for path in chosen_maps(args.map, args.smoke_test):
        print(report(read_map(path), path.stem) + "\n", flush=True)


if __name__ == "__main__":
    main()
