"""adaptive_picks.csv: per target the decisions judged, the pick: the final survivor not trained on that target with
the highest dev gain over the baseline (paired over the dev items and seeds, the baseline's dev outcomes on the same
items), its dev gain and 95% interval, its test gain with 95% interval, p and p adjusted over the targets, and the
survivors not distinguishable from it on dev (the 95% interval of cell minus pick, paired over items and seeds, holds
0; the pick itself counted). Test is read only here; gains in points (percentage points for fractions).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from xlamaml.analysis.adaptive_load import Adaptive, aux_of, gain_part, method_of
from xlamaml.analysis.corrections import adjust
from xlamaml.analysis.stats import ALPHA, Cell, Part, bootstrap


PICK_COLUMNS: tuple[str, ...] = (
    "target", "pick", "method", "aux", "ranked_on", "dev_gain", "dev_ci_low", "dev_ci_high", "dev_items", "dev_seeds",
    "test_gain", "test_ci_low", "test_ci_high", "p_value", "p_adjusted", "significant", "test_items", "test_seeds",
    "correction", "family_size", "candidates", "indistinguishable_count", "indistinguishable",
)


def picks(ad: Adaptive, opts: Any) -> tuple[pd.DataFrame, list[str]]:
    """Return (adaptive_picks rows, one per target with a candidate; notes)."""
    notes: list[str] = []
    dev: dict[str, dict[str, Part]] = {}
    for t in ad.targets:
        dev[t] = {}
        for cell in ad.survivors:
            if cell in ad.excluded.get(t, set()):
                continue
            part, why = gain_part(ad, cell, t)
            if part is None:
                notes.append(f"adaptive_picks.csv: {cell} on dev {t}: {why}; not a candidate")
            else:
                dev[t][cell] = part
    flat = [(t, c, p) for t in ad.targets for c, p in dev[t].items()]
    result = _boot([p for _, _, p in flat], opts)
    gain = {(t, c): i for i, (t, c, _) in enumerate(flat)}
    rows = []
    for t in ad.targets:
        if not dev[t]:
            notes.append(f"adaptive_picks.csv: target {t}: no final survivor to pick (each trained on it, or none "
                         "finished)")
            continue
        pick = max(dev[t], key=lambda c: (result.delta[gain[(t, c)]], -ad.survivors.index(c)))
        i = gain[(t, pick)]
        others = [c for c in dev[t] if c != pick]
        diffs, kept = [], []
        for c in others:
            part, why = gain_part(ad, c, t, "dev", dict(ad.trials[pick]))
            if part is None:
                notes.append(f"adaptive_picks.csv: {c} minus {pick} on dev {t}: {why}")
            else:
                diffs.append(part)
                kept.append(c)
        versus = _boot(diffs, opts)
        same = [pick] + [c for k, c in enumerate(kept) if versus.ci_low[k] <= 0 <= versus.ci_high[k]]
        p = dev[t][pick]
        rows.append({"target": t, "pick": pick, "method": method_of(pick), "aux": aux_of(pick),
                     "ranked_on": f"dev {t} gain over the baseline, final survivors", "dev_gain": result.delta[i],
                     "dev_ci_low": result.ci_low[i], "dev_ci_high": result.ci_high[i], "dev_items": len(p.uids),
                     "dev_seeds": p.diffs.shape[0], "candidates": len(dev[t]),
                     "indistinguishable_count": len(same), "indistinguishable": ";".join(same)})
    tests: list[Part] = []
    at: list[int] = []
    for k, r in enumerate(rows):
        part, why = gain_part(ad, r["pick"], r["target"], "test")
        if part is None and not any(split == "test" and lang == r["target"] for _, split, lang in ad.outcomes):
            # A dev language that is no test target (eval.dev_langs beyond eval.target_langs): judged, never tested.
            notes.append(f"adaptive_picks.csv: {r['target']} is a dev language the sweep does not test "
                         f"(not in eval.target_langs); its pick has no test gain")
        elif part is None:
            notes.append(f"adaptive_picks.csv: {r['pick']} on test {r['target']}: {why}; no test gain")
        else:
            tests.append(part)
            at.append(k)
    result_t = _boot(tests, opts)
    for j, k in enumerate(at):
        rows[k].update({"test_gain": result_t.delta[j], "test_ci_low": result_t.ci_low[j],
                        "test_ci_high": result_t.ci_high[j], "p_value": result_t.p_value[j],
                        "test_items": len(tests[j].uids), "test_seeds": tests[j].diffs.shape[0]})
    frame = pd.DataFrame(rows, columns=list(PICK_COLUMNS))
    frame["p_adjusted"] = adjust(frame["p_value"].to_numpy(dtype=float), opts.correction)
    frame["significant"] = frame["p_adjusted"] < ALPHA
    frame["correction"] = opts.correction
    frame["family_size"] = int(np.isfinite(frame["p_value"].to_numpy(dtype=float)).sum())
    for col in ("dev_gain", "dev_ci_low", "dev_ci_high", "test_gain", "test_ci_low", "test_ci_high"):
        frame[col] = frame[col].astype(float) * ad.scale
    for col in ("dev_items", "dev_seeds", "test_items", "test_seeds", "candidates", "indistinguishable_count"):
        frame[col] = frame[col].astype("Int64")
    return frame[list(PICK_COLUMNS)], notes


def _boot(parts: list[Part], opts: Any) -> Any:
    return bootstrap([Cell({}, (p,)) for p in parts], opts.resamples, opts.seed)
