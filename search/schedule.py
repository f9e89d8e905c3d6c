"""The budget schedule of an adaptive sweep (`sweep.mode: adaptive`): its rungs and how many cells enter each.

A *cell* is one non-baseline assignment (a pair, an auxiliary language); a *trial* is a cell with one seed. Every cell
starts at rung 0 on a small budget (a fraction of the meta steps, the first dev items, the first seed); after each
rung a decision on dev (`search/adaptive/rule.py`) keeps the cells most likely to be in some target's top-k and stops
the rest; survivors continue from their checkpoints to the next rung's budget, and the last rung is the full budget
with every seed. The counts here are what the planner prints and what the sweep runs: with `bound` unset they are
exact; a confidence bound can only stop more cells, so they are then upper bounds.

Pure Python (no Ray, no torch): the planner and the simulator (`benchmarks/adaptive_sim.py`) import it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from xlamaml.experiment.records import Rung
from xlamaml.trainables.config_parsing import check_fields, checked, non_negative, positive_int
from xlamaml.trainables.errors import ConfigError


def increasing_fractions(v: list) -> str | None:
    """Return why `v` is not a list of increasing fractions of the meta steps ending with 1, or None."""
    if not isinstance(v, list) or not v or any(not isinstance(x, (int, float)) or not 0 < x <= 1 for x in v):
        return "expected a non-empty list of fractions in (0, 1]"
    if any(b <= a for a, b in zip(v, v[1:])) or v[-1] != 1:
        return "expected increasing fractions ending with 1 (the full budget)"
    return None


def _per_rung(v: list) -> str | None:
    if not isinstance(v, list) or any(x is not None and (not isinstance(x, int) or x < 1) for x in v):
        return "expected a list of positive integers or null (null: all), one per rung"
    return None


def _keep(v: float) -> str | None:
    return None if isinstance(v, (int, float)) and 0 < v < 1 else "expected a fraction in (0, 1)"


def _bound(v: Optional[float]) -> str | None:
    return None if v is None or (isinstance(v, (int, float)) and v > 0) else "expected null or a positive z value"


@dataclass
class AdaptiveConfig:
    """`sweep.adaptive.*`: the rungs (meta-step fractions, dev items, seeds per rung) and the decision rule."""

    # Defaults chosen by benchmarks/adaptive_sim.py on simulated maps (the measurements: benchmarks/RESULTS.md).
    steps: list[float] = checked(default_factory=lambda: [0.1, 0.5, 1.0], rule=increasing_fractions)  # of meta.total_steps
    # Dev items per target scored at the end of each rung (null: eval.dev_max_examples); the first items, so every
    # rung's items are a prefix of the next's and of the baseline's.
    dev_items: list[Optional[int]] = checked(default_factory=lambda: [None, None, None], rule=_per_rung)
    seeds: list[Optional[int]] = checked(default_factory=lambda: [1, 2, None], rule=_per_rung)  # of sweep.seeds
    # Share of a rung's cells that enter the next: 0.4 puts a 225-cell pairs map at ~23% of the grid's compute
    # (225 -> 90 -> 36 cells).
    keep: float = checked(0.4, rule=_keep)
    top_k: int = checked(1, rule=positive_int)  # the picks per target the rule protects
    min_keep: int = checked(2, rule=positive_int)  # never fewer cells than this in a rung (if there are as many)
    # The last rung holds at least per_target x targets cells; the ratio is then raised so the cuts are spread
    # evenly (keep_ratio): 0.4 with 15 targets takes an en -> aux map of 14 cells 14 -> 10 -> 7. Pairs maps have far
    # more cells than targets: no effect.
    per_target: float = checked(0.4, rule=non_negative)
    # A z value: also stop a cell whose upper bound is below, for every target it can be judged on, the lower bound
    # of that target's top_k-th cell (paired over dev items). null: the keep counts alone decide.
    bound: Optional[float] = checked(None, rule=_bound)

    def validate(self, prefix: str = "sweep.adaptive.") -> "AdaptiveConfig":
        """Return self after checking that the per-rung lists match the rungs; raise ConfigError naming the key."""
        check_fields(self, prefix)
        for key in ("dev_items", "seeds"):
            if len(getattr(self, key)) != len(self.steps):
                raise ConfigError(f"config key {prefix}{key}: expected {len(self.steps)} values, one per rung of "
                                  f"{prefix}steps; got {len(getattr(self, key))}")
        for key in ("dev_items", "seeds"):
            values = [math.inf if v is None else v for v in getattr(self, key)]
            if any(b < a for a, b in zip(values, values[1:])):
                raise ConfigError(f"config key {prefix}{key}: expected values that never shrink from rung to rung")
        return self


def rung_steps(fraction: float, total: int) -> int:
    """Return the meta steps a rung reaches: `fraction` of `total`, rounded up, at least 1; a rung before the last
    (fraction < 1) stops short of `total`, so only the last rung spends the budget and scores test. A rung need not
    end on a report: a trial's last report in it runs only the steps left."""
    steps = max(1, math.ceil(round(fraction * total, 9)))
    return total if fraction >= 1 else min(steps, max(0, total - 1))


def keep_count(cells: int, keep: float, min_keep: int) -> int:
    """Return how many of `cells` enter the next rung."""
    # Rounded before ceil so that a product like 225 x 0.4 cannot gain a cell from the float's last bit.
    return min(cells, max(min_keep, math.ceil(round(cells * keep, 9))))


def keep_ratio(a: AdaptiveConfig, cells: int, targets: int) -> float:
    """Return the keep ratio every cut of a sweep over `cells` cells and `targets` targets uses: a.keep, raised so
    that the last rung holds about per_target x targets cells, the cuts spread evenly over the rungs."""
    cuts = len(a.steps) - 1
    floor = min(cells, math.ceil(round(a.per_target * targets, 9)))
    if cuts == 0 or cells == 0 or floor == 0:
        return a.keep
    return max(a.keep, (floor / cells) ** (1 / cuts))


def schedule(a: AdaptiveConfig, cells: int, *, total_steps: int, dev_max: int | None, seeds: list[int],
             targets: int = 0) -> list[Rung]:
    """Return the rungs of an adaptive sweep over `cells` cells judged on `targets` targets (`dev_max`:
    eval.dev_max_examples, None: all; targets 0 leaves per_target out). Each decision keeps the next rung's `cells`, which is
    keep_count(cells now, keep_ratio(a, cells, targets), a.min_keep)."""
    out: list[Rung] = []
    n = cells
    ratio = keep_ratio(a, cells, targets)
    for i, fraction in enumerate(a.steps):
        if dev_max is None:
            items = a.dev_items[i]
        else:
            items = dev_max if a.dev_items[i] is None else min(a.dev_items[i], dev_max)
        count = len(seeds) if a.seeds[i] is None else min(a.seeds[i], len(seeds))
        steps = total_steps if i == len(a.steps) - 1 else rung_steps(fraction, total_steps)
        out.append(Rung(i, steps, items, tuple(seeds[:count]), n, float(fraction)))
        n = keep_count(n, ratio, a.min_keep)
    return out
