"""The picks users come for, chosen on dev and reported on test: every variant ranked by its dev gain over the
baseline (best_pairs.csv) and the best variant per target (best_per_target.csv), each with the test delta, its 95%
interval and p adjusted over the rows of the file. Ranking on test is an option, labelled as such in `ranked_on`.
"""

from __future__ import annotations

import math

import pandas as pd

from xlamaml.analysis.aggregate import (SETTING, VARIANT, NoResultsError, baseline_means, baseline_reference, ensure_variants,
                                resolve_metric, setting_labels, target_langs, variant_stats)
from xlamaml.analysis.langs import trained_on
from xlamaml.analysis.stats import adjust_family

LEAD: tuple[str, ...] = ("assignment", "method", "support", "query", "aux")
REST: tuple[str, ...] = tuple(c for c in VARIANT if c not in LEAD)
STAT_COLUMNS: tuple[str, ...] = ("ci_low", "ci_high", "p_value", "p_adjusted", "significant", "n_items", "n_seeds")
TEST_LABEL = "test (chosen and reported on test: optimistic)"


def gains(df: pd.DataFrame, split: str, metric: str | None = None) -> pd.DataFrame:
    """Return one row per non-baseline variant x lang of `split`: setting, mean, std, n, baseline, gain."""
    metric = resolve_metric(df, split, metric)
    stats = variant_stats(ensure_variants(df), split, metric)
    labels = setting_labels(df)
    frames = []
    for setting, group in stats.groupby(list(SETTING), dropna=False, sort=False):
        if (group["method"] == "baseline").sum() == 0:
            continue
        base = baseline_means(group)
        own = group[group["method"] != "baseline"].copy()
        targets = {v: target_langs(g) for v, g in own.groupby("variant")}
        own["baseline"] = [baseline_reference(base, lang, aux, targets[v])
                           for lang, aux, v in zip(own["lang"], own["aux"], own["variant"])]
        own["gain"] = own["mean"] - own["baseline"]
        own["setting"] = next((t for s, t in labels.items() if _same(s, setting)), "")
        frames.append(own)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _same(a: tuple, b: tuple) -> bool:
    return all((pd.isna(x) and pd.isna(y)) if (pd.isna(x) or pd.isna(y)) else x == y for x, y in zip(a, b))


def _dev_score(dev: pd.DataFrame, langs: tuple[str, ...]) -> pd.Series:
    """Return each variant's dev gain on the first of `langs` it reports (NaN when none), indexed by variant."""
    wide = dev.pivot_table(index="variant", columns="lang", values="gain", aggfunc="first") if len(dev) else None
    score = pd.Series(dtype=float)
    if wide is None:
        return score
    score = pd.Series(math.nan, index=wide.index)
    for lang in langs:
        if lang in wide:
            score = score.fillna(wide[lang])
    return score


def _with_stats(rows: pd.DataFrame, sig: pd.DataFrame, target_col: str | None, target: str | None,
                correction: str) -> pd.DataFrame:
    """Return `rows` joined with their significance cells and p adjusted over the rows of each setting."""
    key = sig[["variant", "target", "delta", *[c for c in STAT_COLUMNS if c not in ("p_adjusted", "significant")]]]
    key = key.rename(columns={"delta": "delta_items"})
    left = rows.assign(target=rows[target_col] if target_col else target)
    out = left.merge(key, on=["variant", "target"], how="left")
    return adjust_family(out.drop(columns=["delta_items"]), correction, by=["setting"])


def best_pairs_dev(df: pd.DataFrame, sig: pd.DataFrame, rank_on: str = "dev", correction: str = "holm",
                   metric: str | None = None) -> tuple[pd.DataFrame | None, list[str]]:
    """Return (every variant ranked by its dev avg* gain with its test avg* delta, interval and adjusted p; notes)."""
    notes: list[str] = []
    test = gains(df, "test", metric)
    test = test[test["lang"] == "avg_excl_aux"] if len(test) else test
    if not len(test):
        return None, ["best_pairs.csv: no finished variant with a baseline reports test avg_excl_aux"]
    rows = test.rename(columns={"mean": "value", "gain": "delta", "n": "runs"})
    if rank_on == "test":
        rows = rows.assign(rank_score=rows["value"], ranked_on=TEST_LABEL)
    else:
        try:
            dev = gains(df, "dev", metric)
        except NoResultsError:
            dev = pd.DataFrame()
        score = _dev_score(dev, ("avg_excl_aux", "avg"))
        rows = rows.assign(rank_score=rows["variant"].map(score), ranked_on="dev avg_excl_aux gain (avg where none)")
        lost = int(rows["rank_score"].isna().sum())
        if lost == len(rows):
            return None, ["best_pairs.csv: no variant reports dev metrics to rank on; not written "
                          "(--rank-on-test ranks on test, labelled so)"]
        if lost:
            notes.append(f"best_pairs.csv: {lost} variant(s) without dev metrics left out (nothing to rank them on)")
        rows = rows[rows["rank_score"].notna()]
    rows = rows.sort_values(["setting", "rank_score"], ascending=[True, False], kind="stable")
    rows = _with_stats(rows, sig, None, "avg_excl_aux", correction)
    rows.insert(0, "rank", rows.groupby("setting").cumcount() + 1)
    rows = rows.rename(columns={"rank_score": "dev_gain" if rank_on != "test" else "rank_value"})
    first = ["setting", "rank", *LEAD, "ranked_on", "dev_gain" if rank_on != "test" else "rank_value", "value",
             "std", "runs", "baseline", "delta", *STAT_COLUMNS, "correction", "variant", *REST]
    return rows[first].reset_index(drop=True), notes


def best_per_target_dev(df: pd.DataFrame, sig: pd.DataFrame, rank_on: str = "dev", correction: str = "holm",
                        metric: str | None = None) -> tuple[pd.DataFrame | None, list[str]]:
    """Return (per setting and target the variant best on dev not trained on it, with its test delta, interval
    and p adjusted over the file's rows; notes)."""
    test = gains(df, "test", metric)
    if not len(test):
        return None, ["best_per_target.csv: no finished variant with a baseline reports test metrics"]
    dev = pd.DataFrame()
    if rank_on != "test":
        try:
            dev = gains(df, "dev", metric)
        except NoResultsError:
            return None, ["best_per_target.csv: no trial reports dev metrics to choose by; not written "
                          "(--rank-on-test chooses on test, labelled so)"]
    picks, notes = [], []
    for setting, stats in test.groupby("setting", sort=False):
        for target in target_langs(stats):
            # A variant that meta-trained on the target's data is not a transfer result for it.
            fair = stats[(stats["lang"] == target) & ~stats["aux"].map(lambda aux: trained_on(aux, target))]
            if fair.empty:
                continue
            if rank_on == "test":
                score, how = fair.set_index("variant")["mean"], TEST_LABEL
            else:
                here = dev[dev["setting"] == setting]
                # The target's own dev set when the trials report it, else the dev average (eval.dev_langs).
                langs = (target, "avg_excl_aux", "avg")
                score = _dev_score(here, langs).reindex(fair["variant"])
                own = here[(here["lang"] == target)]
                how = f"dev {target} gain" if len(own) else "dev avg_excl_aux gain (avg where none)"
            if score.isna().all():
                notes.append(f"best_per_target.csv: {setting or 'the'} {target}: no candidate reports dev metrics; "
                             "left out")
                continue
            best = fair.set_index("variant").loc[score.idxmax()]
            picks.append({"setting": setting, "target": target, "variant": int(score.idxmax()),
                          **{c: best[c] for c in LEAD}, "ranked_on": how, "rank_value": float(score.max()),
                          "value": best["mean"], "std": best["std"], "runs": int(best["n"]),
                          "baseline": best["baseline"], "delta": best["gain"], **{c: best[c] for c in REST}})
    if not picks:
        return None, notes or ["best_per_target.csv: no target has a candidate"]
    rows = _with_stats(pd.DataFrame(picks), sig, "target", None, correction)
    first = ["setting", "target", *LEAD, "ranked_on", "rank_value", "value", "std", "runs", "baseline", "delta",
             *STAT_COLUMNS, "correction", "variant", *REST]
    return rows[first].reset_index(drop=True), notes
