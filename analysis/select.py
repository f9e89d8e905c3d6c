"""The best assignments of a sweep: overall (by the average over non-auxiliary targets) and per target."""

from __future__ import annotations

import pandas as pd

from xlamaml.analysis.aggregate import (SETTING, VARIANT, MissingBaselineError, baseline_means, baseline_reference,
                                resolve_metric, target_langs, variant_stats, with_variants)
from xlamaml.analysis.langs import label_langs

LEAD: tuple[str, ...] = ("assignment", "method", "support", "query", "aux")
REST: tuple[str, ...] = tuple(c for c in VARIANT if c not in LEAD)


def _per_setting(df: pd.DataFrame, split: str, metric: str | None):
    """Yield (baseline means, the setting's non-baseline stats) for every setting of the finished trials."""
    metric = resolve_metric(df, split, metric)
    stats = variant_stats(with_variants(df), split, metric)
    # Each setting (task, model, few-shot) is compared with its own baseline.
    for setting, group in stats.groupby(list(SETTING), dropna=False, sort=False):
        try:
            base = baseline_means(group)
        except MissingBaselineError as e:
            raise MissingBaselineError(f"{e} for {dict(zip(SETTING, setting))}") from None
        yield base, group[group["method"] != "baseline"]


def best_pairs(df: pd.DataFrame, split: str = "test", metric: str | None = None,
               top: int | None = 10) -> pd.DataFrame:
    """Return the `top` (None: all) non-baseline variants by mean `avg_excl_aux`, with baseline and delta."""
    rows = []
    for base, stats in _per_setting(df, split, metric):
        for _, group in stats.groupby("variant", sort=False):
            avg = group[group["lang"] == "avg_excl_aux"]
            if avg.empty:
                continue
            first = avg.iloc[0]
            ref = baseline_reference(base, "avg_excl_aux", first["aux"], target_langs(group))
            rows.append({**{c: first[c] for c in LEAD}, "value": first["mean"], "std": first["std"],
                         "runs": int(first["n"]), "baseline": ref, "delta": first["mean"] - ref,
                         **{c: first[c] for c in REST}})
    columns = [*LEAD, "value", "std", "runs", "baseline", "delta", *REST]
    out = pd.DataFrame(rows, columns=columns)
    out = out.sort_values(["value", "delta"], ascending=False, na_position="last", kind="stable")
    return (out if top is None else out.head(top)).reset_index(drop=True)


def best_per_target(df: pd.DataFrame, split: str = "test", metric: str | None = None) -> pd.DataFrame:
    """Return per setting and target the best non-baseline variant not trained on that target, its value and delta."""
    rows = []
    for base, stats in _per_setting(df, split, metric):
        for target in target_langs(stats):
            # A variant that meta-trained on the target's data is not a transfer result for it.
            fair = stats[(stats["lang"] == target) & ~stats["aux"].map(lambda aux: target in label_langs(aux))]
            if fair.empty:
                continue
            best = fair.sort_values("mean", ascending=False, kind="stable").iloc[0]
            ref = float(base.get(target, float("nan")))
            rows.append({"target": target, **{c: best[c] for c in LEAD}, "value": best["mean"], "std": best["std"],
                         "runs": int(best["n"]), "baseline": ref, "delta": best["mean"] - ref,
                         **{c: best[c] for c in REST}})
    return pd.DataFrame(rows, columns=["target", *LEAD, "value", "std", "runs", "baseline", "delta", *REST])
