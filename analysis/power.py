"""What an experiment could detect: per target, the smallest gain over the baseline a paired test finds at 80%
power, and the items or seeds a chosen gain would need.

Model (normal approximation of the paired two-level comparison): the delta's variance is sd_item^2 / n_items +
sd_seed^2 / n_seeds, where sd_item is the spread over items of the per-item difference (averaged over seeds; for
accuracy sd_item^2 = disagreement rate - delta^2) and sd_seed the spread of the per-seed deltas. Both are the
median over the experiment's variants of that target; one seed leaves sd_seed unknown (taken as 0, so the numbers
are a floor). Two-sided alpha 0.05 before any correction across cells.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pandas as pd

from xlamaml.analysis.langs import order_langs
from xlamaml.analysis.stats import Cell

ALPHA = 0.05
POWER = 0.8


def z_total(alpha: float = ALPHA, power: float = POWER) -> float:
    """Return z_(1 - alpha/2) + z_power, the normal quantiles a two-sided test at `power` needs (2.80 by default)."""
    return NormalDist().inv_cdf(1 - alpha / 2) + NormalDist().inv_cdf(power)


def _cell_spread(cell: Cell) -> tuple[float, float, float, int, int]:
    """Return (disagreement rate, sd over items, sd over seeds, items, seeds) of one cell (its languages averaged
    per item where they share items)."""
    # Per language: (seeds, items); an average cell averages its languages' per-item differences.
    per_item = np.mean([p.diffs.mean(axis=0) for p in cell.parts if len(p.uids) == len(cell.parts[0].uids)], axis=0)
    disagree = float(np.mean([np.mean(p.diffs != 0) for p in cell.parts]))
    seeds = cell.n_seeds
    per_seed = np.mean([p.diffs.mean(axis=1) for p in cell.parts], axis=0)  # (seeds,)
    sd_seed = float(np.std(per_seed, ddof=1)) if seeds > 1 else math.nan
    return disagree, float(np.std(per_item, ddof=1)) if per_item.size > 1 else math.nan, sd_seed, len(per_item), seeds


def power_table(cells: list[Cell], diff: float | None = None, alpha: float = ALPHA,
                power: float = POWER) -> pd.DataFrame:
    """Return per setting and target: items, seeds, disagreement rate, spreads, the detectable gain at `power`,
    and for `diff` (metric units) the items and the seeds it would need."""
    z = z_total(alpha, power)
    rows = []
    for cell in cells:
        disagree, sd_item, sd_seed, n, s = _cell_spread(cell)
        rows.append({"setting": cell.key.get("setting", ""), "target": cell.key["target"], "disagreement": disagree,
                     "sd_item": sd_item, "sd_seed": sd_seed, "n_items": n, "n_seeds": s})
    if not rows:
        return pd.DataFrame(columns=["setting", "target", "n_items", "n_seeds", "disagreement", "sd_item", "sd_seed",
                                     "detectable", "diff", "items_needed", "seeds_needed"])
    frame = pd.DataFrame(rows)
    table = frame.groupby(["setting", "target"], sort=False).agg(
        n_items=("n_items", "median"), n_seeds=("n_seeds", "max"), disagreement=("disagreement", "median"),
        sd_item=("sd_item", "median"), sd_seed=("sd_seed", "median"), variants=("target", "size")).reset_index()
    item_var = table["sd_item"] ** 2 / table["n_items"]
    seed_var = (table["sd_seed"].fillna(0.0) ** 2) / table["n_seeds"]
    table["detectable"] = z * np.sqrt(item_var + seed_var)
    table["diff"] = diff if diff is not None else np.nan
    if diff is not None:
        budget = (diff / z) ** 2  # the largest variance at which `diff` is detected at `power`
        room_items = budget - seed_var
        room_seeds = budget - item_var
        table["items_needed"] = np.where(room_items > 0, np.ceil(table["sd_item"] ** 2 / room_items), np.inf)
        table["seeds_needed"] = np.where(table["sd_seed"].isna(), np.nan,
                                         np.where(room_seeds > 0, np.ceil(table["sd_seed"].fillna(0) ** 2
                                                                          / room_seeds.where(room_seeds > 0, 1)),
                                                  np.inf))
    else:
        table["items_needed"] = table["seeds_needed"] = np.nan
    order = {t: i for i, t in enumerate(order_langs(table["target"]))}
    return table.sort_values(["setting", "target"], key=lambda c: c.map(order) if c.name == "target" else c,
                             kind="stable").reset_index(drop=True)


def format_power(table: pd.DataFrame, scale: float, unit: str) -> str:
    """Return the power table as aligned text lines (gains in `unit`: the metric times `scale`)."""
    if table.empty:
        return "power: no cell has per-item outcomes; nothing to estimate"
    lines = [f"power: paired test, two-sided alpha {ALPHA:g}, {POWER:.0%} power, before correction across cells; "
             f"gains in {unit}"]
    header = f"{'setting':<12} {'target':<13} {'items':>6} {'seeds':>5} {'disagree':>8} {'detectable':>10}"
    diff = table["diff"].iloc[0]
    if pd.notna(diff):
        header += f"   for {diff * scale:g}: {'items':>8} {'seeds':>6}"
    lines.append(header)
    for r in table.itertuples(index=False):
        line = (f"{str(r.setting)[:12]:<12} {r.target:<13} {int(r.n_items):>6} {int(r.n_seeds):>5} "
                f"{r.disagreement:>8.1%} {r.detectable * scale:>10.2f}")
        if pd.notna(diff):
            items = "never" if math.isinf(r.items_needed) else f"{int(r.items_needed):,}"
            seeds = ("?" if pd.isna(r.seeds_needed) else "never" if math.isinf(r.seeds_needed)
                     else f"{int(r.seeds_needed):,}")
            line += f"   {'':>{len(f'for {diff * scale:g}:')}} {items:>8} {seeds:>6}"
        lines.append(line)
    if table["sd_seed"].isna().any():
        lines.append("seeds '?': one seed, so the spread over seeds is unknown (taken as 0 above: a floor)")
    return "\n".join(lines)
