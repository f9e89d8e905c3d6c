"""Paired bootstrap of every variant's gain over its matching baseline, per target and on both averages.

A *cell* is (variant, target) with target a language, `avg` or `avg_excl_aux`. Its delta is the variant's mean
over seeds and items minus the baseline's, paired by item (and by seed where the baseline ran the same seed;
otherwise against the baseline's mean over its seeds). The bootstrap has two levels: each resample draws items
with replacement (item ids, shared by every language and every cell: XNLI pair ids and MLQA question ids are
parallel across languages, so an average resamples the same items in every language) and, with several seeds,
seeds with replacement. One draw of items serves every cell, so all cells cost one matrix product per chunk of
resamples: counts (R, items) @ differences (items, cells x seeds); nothing loops per resample.

Interval: the 2.5 and 97.5 percentiles of the resampled deltas. P-value (two-sided, bootstrap): 2 min(P*(delta* <=
0), P*(delta* >= 0)) with the +1 correction, (1 + count) / (R + 1), capped at 1. Identical predictions give delta 0
and p = 1; a system better on every item it changes gives p = 2 / (R + 1).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from xlamaml.analysis.aggregate import SETTING, VARIANT, resolve_metric, setting_labels, ensure_variants
from xlamaml.analysis.corrections import CORRECTIONS, adjust
from xlamaml.analysis.langs import AVERAGES, excluded_from_avg, order_langs, trained_on
from xlamaml.analysis.outcomes import Outcomes

TEST_NAME = "paired bootstrap over items and seeds"
ALPHA = 0.05
KEY_COLUMNS: tuple[str, ...] = ("setting", "method", "assignment", "support", "query", "aux", "target")
COLUMNS: tuple[str, ...] = KEY_COLUMNS + (
    "delta", "ci_low", "ci_high", "p_value", "p_adjusted", "significant", "n_items", "n_seeds", "split", "metric",
    "test", "resamples", "correction", "family_size", "variant",
) + tuple(c for c in VARIANT if c not in KEY_COLUMNS)


@dataclass(frozen=True)
class Part:
    """One language of a cell: the items scored and the variant-minus-baseline differences per seed and item."""

    lang: str
    uids: tuple[str, ...]
    diffs: np.ndarray  # (seeds, items)


@dataclass(frozen=True)
class Cell:
    """One (variant, target) comparison: its row's key values and the languages it averages (one for a language)."""

    key: dict[str, Any]
    parts: tuple[Part, ...]

    @property
    def n_items(self) -> int:
        """Return the number of distinct items the cell's languages share or add (items of one language)."""
        return len({u for p in self.parts for u in p.uids}) if len(self.parts) > 1 else len(self.parts[0].uids)

    @property
    def n_seeds(self) -> int:
        """Return the number of variant seeds compared."""
        return int(self.parts[0].diffs.shape[0])


@dataclass
class CellNotes:
    """Cells left without statistics: cause -> how many."""

    skipped: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def lines(self) -> list[str]:
        """Return one line per cause."""
        return [f"{n} cell(s) without statistics: {cause}" for cause, n in self.skipped.items()]


@dataclass(frozen=True)
class Bootstrap:
    """The bootstrap's result per cell (arrays aligned with the cells)."""

    delta: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    p_value: np.ndarray
    resamples: int


def _aligned(outcome, metric: str, uids: tuple[str, ...]) -> np.ndarray:
    """Return the outcome's `metric` values in the order of `uids` (a subset of its items)."""
    if outcome.uids == uids:
        return outcome.values[metric]
    index = {u: i for i, u in enumerate(outcome.uids)}
    return outcome.values[metric][[index[u] for u in uids]]


def _part(lang: str, trials: list[tuple[Any, str]], base: dict[Any, str], split: str, metric: str,
          outcomes: Outcomes) -> tuple[Part | None, str]:
    """Return (the part of one language, '') or (None, why not) for a variant's trials (seed, dir) vs the baseline's."""
    own = [outcomes.get((d, split, lang)) for _, d in trials]
    ref = {seed: outcomes.get((d, split, lang)) for seed, d in base.items()}
    if any(o is None for o in own) or any(o is None for o in ref.values()) or not ref:
        return None, "per-item outcomes missing for the variant or the baseline (see the lines above)"
    if any(metric not in o.values for o in own + list(ref.values())):
        return None, f"per-item outcomes without {metric!r}"
    uids = own[0].uids
    if any(o.uids != uids for o in own + list(ref.values())):
        shared = set(uids).intersection(*(o.uids for o in own + list(ref.values())))
        uids = tuple(u for u in uids if u in shared)
    if not uids:
        return None, "the variant and the baseline share no scored item"
    paired = all(seed in ref for seed, _ in trials)
    base_mean = np.mean([_aligned(o, metric, uids) for o in ref.values()], axis=0)
    rows = [_aligned(o, metric, uids) - (_aligned(ref[seed], metric, uids) if paired else base_mean)
            for (seed, _), o in zip(trials, own)]
    return Part(lang, uids, np.asarray(rows, dtype=float)), ""


def build_cells(df: pd.DataFrame, outcomes: Outcomes, split: str = "test",
                metric: str | None = None) -> tuple[list[Cell], CellNotes, str]:
    """Return (every variant x target cell with its per-item differences, notes on cells left out, the metric)."""
    metric = resolve_metric(df, split, metric)
    df = ensure_variants(df)
    rows = df[(df["status"] == "done") & (df["split"] == split) & (df["metric"] == metric)]
    labels = setting_labels(df)
    notes = CellNotes()
    cells: list[Cell] = []
    for setting, group in rows.groupby(list(SETTING), dropna=False, sort=False):
        base_rows = group[group["method"] == "baseline"].drop_duplicates("trial_dir")
        if base_rows.empty:
            notes.skipped["no finished baseline of the same setting"] += group["variant"].nunique()
            continue
        base = {seed: d for seed, d in zip(base_rows["seed"], base_rows["trial_dir"])}
        label = next((text for values, text in labels.items() if _same(values, setting)), "")
        for variant, own in group[group["method"] != "baseline"].groupby("variant", sort=False):
            cells.extend(_variant_cells(own, base, label, variant, split, metric, outcomes, notes))
    return cells, notes, metric


def _same(a: tuple, b: tuple) -> bool:
    """Return whether two settings are equal, a missing value equal to a missing value."""
    return all((pd.isna(x) and pd.isna(y)) if (pd.isna(x) or pd.isna(y)) else x == y for x, y in zip(a, b))


def _variant_cells(own: pd.DataFrame, base: dict[Any, str], label: str, variant: int, split: str, metric: str,
                   outcomes: Outcomes, notes: CellNotes) -> list[Cell]:
    """Return the cells of one variant: each target it did not train on, `avg` and `avg_excl_aux`."""
    first = own.iloc[0]
    trials = list(own.drop_duplicates("trial_dir")[["seed", "trial_dir"]].itertuples(index=False, name=None))
    langs = [lang for lang in order_langs(own["lang"]) if lang not in AVERAGES]
    parts = {}
    for lang in langs:
        part, why = _part(lang, trials, base, split, metric, outcomes)
        parts[lang] = part if part is not None else why
    key = {"setting": label, **{c: first[c] for c in VARIANT}, "variant": int(variant)}
    excluded = excluded_from_avg(first["aux"])
    targets = [(lang, [lang]) for lang in langs if not trained_on(first["aux"], lang)]
    targets += [("avg", langs), ("avg_excl_aux", [lang for lang in langs if lang not in excluded])]
    out = []
    for target, members in targets:
        got = [parts[m] for m in members]
        reason = next((g for g in got if isinstance(g, str)), None)
        if not members:
            continue
        if reason is not None:
            notes.skipped[reason] += 1
            continue
        out.append(Cell({**key, "target": target}, tuple(got)))
    return out


def _counts(rng: np.random.Generator, rows: int, size: int) -> np.ndarray:
    """Return (rows, size) float32 counts of `size` draws with replacement from `size` items, one row a resample."""
    draws = rng.integers(0, size, (rows, size)) + (np.arange(rows) * size)[:, None]
    return np.bincount(draws.ravel(), minlength=rows * size).reshape(rows, size).astype(np.float32)


def bootstrap(cells: list[Cell], resamples: int = 10_000, seed: int = 0, chunk: int = 500) -> Bootstrap:
    """Return each cell's delta, 95% percentile interval and two-sided bootstrap p-value."""
    n_cells = len(cells)
    if n_cells == 0:
        empty = np.zeros(0)
        return Bootstrap(empty, empty, empty, empty, resamples)
    rng = np.random.default_rng(seed)
    # Every distinct item id gets one column of the count matrix; every distinct (language, item list) is a group
    # whose parts are stacked into one difference matrix (items, parts x seeds), for one product per chunk.
    vocab: dict[str, int] = {}
    groups: dict[tuple[tuple[str, ...], int], list[int]] = defaultdict(list)  # (uids, seeds) -> part numbers
    parts: list[Part] = []
    members: list[list[int]] = []
    known: set[tuple[str, ...]] = set()  # item lists already in the vocabulary (most parts share one)
    for cell in cells:
        ids = []
        for p in cell.parts:
            if p.uids not in known:
                known.add(p.uids)
                for u in p.uids:
                    vocab.setdefault(u, len(vocab))
            groups[(p.uids, p.diffs.shape[0])].append(len(parts))
            ids.append(len(parts))
            parts.append(p)
        members.append(ids)
    plan = []
    for (uids, n_seeds), numbers in groups.items():
        idx = np.fromiter((vocab[u] for u in uids), dtype=np.int64, count=len(uids))
        full = len(uids) == len(vocab) and bool(np.all(idx == np.arange(len(vocab))))
        # (items, parts x seeds): column j * n_seeds + s is part numbers[j], seed s.
        stacked = np.concatenate([parts[i].diffs.T for i in numbers], axis=1).astype(np.float32)
        plan.append((None if full else idx, n_seeds, np.asarray(numbers), stacked))
    by_size: dict[int, list[int]] = defaultdict(list)  # cells grouped by how many parts they average
    for c, ids in enumerate(members):
        by_size[len(ids)].append(c)
    size_plan = [(np.asarray(cs), np.asarray([members[c] for c in cs])) for cs in by_size.values()]

    deltas = np.empty((resamples, n_cells), dtype=np.float32)
    for start in range(0, resamples, chunk):
        rows = min(chunk, resamples - start)
        counts = _counts(rng, rows, len(vocab))  # (rows, items)
        part_deltas = np.empty((rows, len(parts)), dtype=np.float32)
        seed_weights: dict[int, np.ndarray] = {}
        for idx, n_seeds, numbers, stacked in plan:
            c = counts if idx is None else counts[:, idx]
            with np.errstate(invalid="ignore", divide="ignore"):
                means = (c @ stacked) / c.sum(axis=1, keepdims=True)  # (rows, parts x seeds): item means
            if n_seeds not in seed_weights:
                # Seeds drawn once per chunk for all parts with that many seeds: (rows, seeds), rows sum to 1.
                seed_weights[n_seeds] = (_counts(rng, rows, n_seeds) / n_seeds if n_seeds > 1
                                         else np.ones((rows, 1), dtype=np.float32))
            w = seed_weights[n_seeds]
            part_deltas[:, numbers] = np.einsum("rps,rs->rp", means.reshape(rows, len(numbers), n_seeds), w)
        for cs, ids in size_plan:
            deltas[start:start + rows, cs] = part_deltas[:, ids].mean(axis=2)  # (rows, cells, parts) -> cells
    point = np.array([np.mean([p.diffs.mean() for p in cell.parts]) for cell in cells])
    lo, hi = np.nanquantile(deltas, [0.025, 0.975], axis=0)
    # Float32 sums of exact differences can miss zero by rounding: count a resample within tol of 0 on both sides.
    tol = np.array([1e-6 * max(1.0, max(float(np.abs(part.diffs).max()) for part in cell.parts)) for cell in cells])
    valid = np.isfinite(deltas).sum(axis=0)
    below = (deltas <= tol).sum(axis=0)
    above = (deltas >= -tol).sum(axis=0)
    p = np.minimum(1.0, 2 * np.minimum(1 + below, 1 + above) / (valid + 1))
    # The resampled deltas are float32: round the bounds to what they hold, not float64 noise.
    return Bootstrap(point, np.round(lo.astype(float), 7), np.round(hi.astype(float), 7), p, resamples)


def significance(df: pd.DataFrame, outcomes: Outcomes, split: str = "test", metric: str | None = None,
                 resamples: int = 10_000, correction: str = "holm", seed: int = 0) -> tuple[pd.DataFrame, list[str]]:
    """Return (one row per variant x target: delta, 95% interval, p, p adjusted per setting; notes, one a line)."""
    cells, notes, metric = build_cells(df, outcomes, split, metric)
    result = bootstrap(cells, resamples, seed)
    rows = [{**cell.key, "delta": result.delta[i], "ci_low": result.ci_low[i], "ci_high": result.ci_high[i],
             "p_value": result.p_value[i], "n_items": cell.n_items, "n_seeds": cell.n_seeds}
            for i, cell in enumerate(cells)]
    frame = pd.DataFrame(rows, columns=[c for c in COLUMNS if c not in
                                        ("p_adjusted", "significant", "split", "metric", "test", "resamples",
                                         "correction", "family_size")])
    frame["split"], frame["metric"], frame["test"] = split, metric, TEST_NAME
    frame["resamples"] = resamples
    frame = adjust_family(frame, correction, by=["setting"])
    return frame[list(COLUMNS)], notes.lines()


def adjust_family(frame: pd.DataFrame, correction: str = "holm", by: list[str] | None = None,
                  alpha: float = ALPHA) -> pd.DataFrame:
    """Return `frame` with p_adjusted, significant, correction and family_size, each family a group of `by`."""
    out = frame.copy()
    out["p_adjusted"] = np.nan
    out["family_size"] = 0
    groups = [g.index for _, g in out.groupby(by, dropna=False, sort=False)] if by else [out.index]
    for index in groups:
        p = out.loc[index, "p_value"].to_numpy(dtype=float)
        out.loc[index, "p_adjusted"] = adjust(p, correction)
        out.loc[index, "family_size"] = int(np.isfinite(p).sum())
    out["significant"] = out["p_adjusted"] < alpha
    out["correction"] = correction
    return out


def legend(correction: str, family_size: int, resamples: int, alpha: float = ALPHA) -> str:
    """Return the one-line legend of a significance mark: the test, the correction and the family."""
    return (f"{TEST_NAME} ({resamples:,} resamples, two-sided); {CORRECTIONS[correction]} over the "
            f"{family_size} cells here; marked: adjusted p < {alpha:g}")
