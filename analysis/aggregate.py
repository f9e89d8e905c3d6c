"""Tidy table -> means over seeds per variant, the matching baseline, and one variant per row key.

A *variant* is every setting of a trial except its seed (method, languages, sampling, learning rates,
model, few-shot, task); a *setting* is what a baseline is matched on (task, model, few-shot). Only
trials with status 'done' count.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from xlamaml.analysis.langs import AVERAGES, excluded_from_avg, order_langs
from xlamaml.trainables.errors import InputError, XlamamlError

SETTING: tuple[str, ...] = ("task", "model", "few_shot")
VARIANT: tuple[str, ...] = SETTING + (
    "method", "assignment", "support", "query", "aux", "sampling", "parallel", "inner_lr", "outer_lr",
    "inner_steps", "first_order",
)


class NoResultsError(XlamamlError, ValueError):
    """No finished trial holds the split and metric asked for."""


class MissingBaselineError(XlamamlError, ValueError):
    """A delta against the baseline was asked for, and no finished baseline trial matches."""


def resolve_metric(df: pd.DataFrame, split: str, metric: str | None = None) -> str:
    """Return `metric`, or the default ('acc' if reported, else 'f1'), checked against the split's metrics."""
    present = set(df.loc[(df["status"] == "done") & (df["split"] == split), "metric"].dropna())
    if metric is None:
        for default in ("acc", "f1"):
            if default in present:
                return default
    if metric in present:
        return metric
    found = ", ".join(sorted(present)) or "none"
    raise NoResultsError(f"no finished trial reports {split}/<lang>/{metric or 'acc|f1'} (metrics there: {found})")


def with_variants(df: pd.DataFrame) -> pd.DataFrame:
    """Return a copy of the tidy table with an integer `variant` column (same id = same settings but seed)."""
    out = df.copy()
    # dropna=False: a baseline's meta settings are empty and must still form a group.
    out["variant"] = out.groupby(list(VARIANT), dropna=False, sort=False).ngroup()
    return out


def ensure_variants(df: pd.DataFrame) -> pd.DataFrame:
    """Return `df` when it already has a `variant` column (ids shared with other tables of it), else with_variants."""
    return df if "variant" in df.columns else with_variants(df)


def variant_stats(df: pd.DataFrame, split: str, metric: str) -> pd.DataFrame:
    """Return one row per variant x lang: the variant's settings, `lang`, and `mean`, `std`, `n` over seeds."""
    if "variant" not in df:
        df = with_variants(df)
    rows = df[(df["status"] == "done") & (df["split"] == split) & (df["metric"] == metric)]
    if rows.empty:
        raise NoResultsError(f"no finished trial reports {split}/<lang>/{metric}")
    # Sample std (ddof=1): NaN for a single seed, which the tables print as the mean alone.
    stats = rows.groupby(["variant", "lang"], sort=False)["value"].agg(mean="mean", std="std", n="count")
    config = rows.drop_duplicates("variant").set_index("variant")[list(VARIANT)]
    return stats.reset_index().join(config, on="variant")


def setting_labels(df: pd.DataFrame) -> dict[tuple, str]:
    """Return a short label per setting of the finished trials ('zero-shot', 'few-shot, mbert', ...)."""
    done = df[df["status"] == "done"]
    settings = list(done[list(SETTING)].drop_duplicates().itertuples(index=False, name=None))
    many = {col: done[col].nunique(dropna=False) > 1 for col in ("task", "model")}
    labels = {}
    for task, model, few_shot in settings:
        parts = ["few-shot" if _is_true(few_shot) else "zero-shot"]
        parts += [str(model)] if many["model"] else []
        parts += [str(task)] if many["task"] else []
        labels[(task, model, few_shot)] = ", ".join(parts)
    return labels


def split_settings(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Return the tidy table cut into one table per setting, zero-shot first, keyed by setting label."""
    out = {}
    for setting, label in sorted(setting_labels(df).items(), key=lambda kv: (_is_true(kv[0][2]), kv[1])):
        mask = np.logical_and.reduce([_equal(df[col], value) for col, value in zip(SETTING, setting)])
        out[label] = df[mask]
    return out


def _is_true(value: object) -> bool:
    """Return whether a config flag is set (a missing one, NaN included, is not)."""
    return bool(pd.notna(value) and value)


def _equal(column: pd.Series, value: object) -> pd.Series:
    """Return column == value, where a missing value equals a missing value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return column.isna()
    return column == value


def check_one_setting(df: pd.DataFrame) -> None:
    """Return None when the finished trials share one setting; raise InputError listing them otherwise."""
    labels = setting_labels(df)
    if len(labels) > 1:
        listed = "; ".join(sorted(labels.values()))
        raise InputError(f"the trials mix {len(labels)} settings ({listed}): select one first, e.g. "
                         "df[df.few_shot == False] or analysis.aggregate.split_settings(df)")


def scale_of(df: pd.DataFrame, metric: str) -> float:
    """Return 100.0 when the metric's values are fractions (all in [0, 1]), else 1.0 (already percent)."""
    values = df.loc[df["metric"] == metric, "value"].to_numpy(dtype=float)
    values = values[np.isfinite(values)]
    return 100.0 if values.size and values.min() >= 0.0 and values.max() <= 1.0 else 1.0


def baseline_means(stats: pd.DataFrame) -> pd.Series:
    """Return the baseline's mean over seeds per language (stats of one setting)."""
    base = stats[stats["method"] == "baseline"]
    if base.empty:
        raise MissingBaselineError("no finished baseline trial (assignment 'baseline') to compare with")
    # Weighted by seeds, so several baseline groups of one setting pool their trials.
    weighted = base.assign(total=base["mean"] * base["n"]).groupby("lang")[["total", "n"]].sum()
    return weighted["total"] / weighted["n"]


def baseline_reference(base: pd.Series, lang: str, aux: str, targets: Sequence[str]) -> float:
    """Return the baseline number a variant's `lang` value is compared with (same targets for averages)."""
    if lang == "avg_excl_aux":
        # The baseline reports its average over all targets; compare over the targets the variant kept.
        kept = [t for t in targets if t not in excluded_from_avg(aux) and t in base.index]
        return float(base[kept].mean()) if kept else math.nan
    return float(base.get(lang, math.nan))


def target_langs(stats: pd.DataFrame) -> list[str]:
    """Return the target languages present in `stats` (no averages), in paper order."""
    return [lang for lang in order_langs(stats["lang"]) if lang not in AVERAGES]


def dev_scores(df: pd.DataFrame, metric: str) -> pd.Series:
    """Return each variant's mean dev score over seeds (avg_excl_aux, else avg), indexed by variant."""
    dev = df[(df["status"] == "done") & (df["split"] == "dev") & (df["metric"] == metric)]
    means = dev.groupby(["variant", "lang"])["value"].mean().unstack("lang")
    score = pd.Series(math.nan, index=means.index)
    # avg_excl_aux is NaN when the aux languages cover every dev language; fall back to avg there.
    for lang in ("avg_excl_aux", "avg"):
        if lang in means:
            score = score.fillna(means[lang])
    return score


def pick_variants(df: pd.DataFrame, stats: pd.DataFrame, keys: Sequence[str], metric: str) -> pd.DataFrame:
    """Return `stats` keeping one variant per `keys` value: the one with the best mean dev score."""
    # Several variants can share a row (learning rates from a search, en>hi and hi>en both 'hi');
    # the paper selects on dev sets only, never test, and so does this.
    variants = stats.drop_duplicates("variant")
    scores = dev_scores(df, metric)
    keep = []
    for key, group in variants.groupby(list(keys), dropna=False, sort=False):
        ids = list(group["variant"])
        if len(ids) > 1:
            score = scores.reindex(ids)
            if score.isna().all():
                shared = dict(zip(keys, key if isinstance(key, tuple) else (key,)))
                raise InputError(f"{len(ids)} variants share {shared} and none reports dev metrics to choose "
                                 "by: filter the table first")
            ids = [score.idxmax()]
        keep.extend(ids)
    return stats[stats["variant"].isin(keep)]
