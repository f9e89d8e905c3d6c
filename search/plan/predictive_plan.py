"""What `xlamaml plan` expects a predictive sweep to spend: the search (search/predictive/simulated_search.py) run to its
own stop on a prior map, several times, each time on a world drawn around that map (its own dev items, seed noise
and low-budget error; search/predictive/simulated.py), so the spread of those runs is the estimate's uncertainty.

The prior map is a CSV of a map measured before (`--prior-map`, rows target,cell,gain in points) or, without one, a
synthetic Figure-2-like map over the sweep's own cells (`simulated.synthetic_map`). The world's noise is the
simulator's default (seed sd 0.8 points, paired disagreement 0.17, a 25% run ranking the cells with Spearman 0.7)
with the sweep's own dev and test items and seeds; its cost is the plan's seconds per meta step and per item (the
simulator's defaults without them). A cell's budget is the sweep's `meta.total_steps` for every cell.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from xlamaml.search.plan.counts import SizeFn, items_per_target
from xlamaml.search.predictive.prior import read_gains
from xlamaml.search.predictive.simulated import Cost, GainMap, Noise, calibrate_tau, synthetic_map
from xlamaml.search.predictive.simulated_search import expected_compute
from xlamaml.search.spec import Sweep
from xlamaml.trainables.errors import InputError


@dataclass
class PredictiveEstimate:
    """A predictive sweep's expected compute, as a share of the grid's, over `reps` simulated sweeps."""

    prior: str  # the prior map's file, or "synthetic"
    reps: int
    shares: list[float]
    runs: list[int]
    seconds: float  # the estimate's own run time

    def lines(self) -> list[str]:
        """Return what `xlamaml plan` prints of it."""
        s = np.array(self.shares)
        sd = f"sd {100 * s.std(ddof=1):.1f}%, " if s.size > 1 else ""
        where = "a synthetic Figure-2-like map of these cells" if self.prior == "synthetic" else self.prior
        return [f"predictive (expected at its own stop, {self.reps} simulated sweeps on {where}): "
                f"{100 * s.mean():.1f}% of the grid's compute ({sd}{100 * s.min():.1f}-{100 * s.max():.1f}%), "
                f"{np.mean(self.runs):.0f} runs on average (estimated in {self.seconds:.0f} s)"]


def prior_map(sw: Sweep, path: str | None) -> GainMap:
    """Return the prior map over the sweep's dev targets and cells: from `path`, or synthetic; InputError naming the
    file and the first cell or target it lacks."""
    targets, cells = list(sw.dev_langs), list(sw.cells)
    if path is None:
        return synthetic_map(targets, cells)
    try:
        gains = read_gains(path)
    except ValueError as e:
        raise InputError(str(e)) from None
    except OSError as e:
        raise InputError(f"{path}: cannot read the prior map ({e.strerror}); expected a CSV target,cell,gain") from None
    have_t = {t for t, _ in gains}
    have_c = {c for _, c in gains}
    for name, want, have in (("target", targets, have_t), ("cell", cells, have_c)):
        missing = [x for x in want if x not in have]
        if missing:
            raise InputError(f"{path}: no gains of {name} {missing[0]!r} of this sweep; expected rows target,cell,gain "
                             f"for every cell and dev target of the sweep")
    values = np.array([[gains.get((t, c), np.nan) for c in cells] for t in targets], dtype=float)
    return GainMap(path, targets, cells, values)


def estimate(sw: Sweep, sizes: SizeFn, step_seconds: float | None, item_seconds: float | None, reps: int,
             path: str | None = None) -> PredictiveEstimate:
    """Return the predictive sweep's expected compute on the prior map (`path`, else synthetic)."""
    t0 = time.perf_counter()
    gmap = prior_map(sw, path)
    dev, test = items_per_target(sw, sizes)
    noise = Noise(dev_items=dev, test_items=test, seeds=len(sw.sweep.seeds))
    cfg = sw.trial_config(sw.cells[0])
    cost = Cost(step_s=step_seconds if step_seconds is not None else Cost.step_s,
                item_s=item_seconds if item_seconds is not None else Cost.item_s,
                total_steps=cfg.meta.total_steps, per_report=cfg.meta.steps_per_report)
    tau_at, _ = calibrate_tau(gmap, noise.rank_corr)
    found = expected_compute(gmap, noise, cost, sw.sweep.predictive, reps, tau_at)
    return PredictiveEstimate(path or "synthetic", reps, found.shares, found.runs, time.perf_counter() - t0)
