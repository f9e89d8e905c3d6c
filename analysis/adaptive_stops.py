"""adaptive_stops.csv: every cell an adaptive sweep's decision stopped, the rung after which it stopped, the recorded
reason, its last dev gain per target (vs the baseline on the same items, in points) and its best rank. A stopped cell
never scored test: its numbers are dev estimates from its last rung.
"""

from __future__ import annotations

import pandas as pd

from xlamaml.analysis.adaptive_load import Adaptive, aux_of, method_of, stopped_gain


def stops(ad: Adaptive) -> pd.DataFrame:
    """Return one row per stopped cell: rung, reason, last dev gain per target (points), best rank."""
    rows = []
    for cell, (index, reason) in ad.stopped.items():
        decision = next(d for d in ad.record.decisions if int(d["rung"]) == index)
        ranks = decision.get("ranks", {}).get(cell, {})
        best = min(ranks.items(), key=lambda kv: (kv[1], ad.targets.index(kv[0]) if kv[0] in ad.targets else 0),
                   default=(None, None))
        rung = ad.rung(index)
        row = {"cell": cell, "method": method_of(cell), "aux": aux_of(cell), "stopped_after_rung": index,
               "rung_steps": rung.steps, "rung_dev_items": rung.dev_items, "rung_seeds": len(rung.seeds),
               "reason": reason, "best_rank": best[1], "best_rank_target": best[0],
               "excluded_targets": ";".join(t for t in ad.targets if cell in ad.excluded.get(t, set()))}
        for t in ad.targets:
            row[f"dev_gain_{t}"] = stopped_gain(ad, cell, t) * ad.scale
        rows.append(row)
    columns = ["cell", "method", "aux", "stopped_after_rung", "rung_steps", "rung_dev_items", "rung_seeds", "reason",
               "best_rank", "best_rank_target", "excluded_targets"] + [f"dev_gain_{t}" for t in ad.targets]
    frame = pd.DataFrame(rows, columns=columns)
    frame["best_rank"] = frame["best_rank"].astype("Int64")
    return frame.sort_values(["stopped_after_rung", "cell"], kind="stable").reset_index(drop=True)
