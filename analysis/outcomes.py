"""A finished trial's per-item outcomes per split and language, read from its `predictions/*.items.tsv`.

Experiments from before per-item outcomes have XNLI predictions only (one label word per line, in the data's row
order): those are scored against the labels of the data named in the trial's params.json, and kept only when they
give back the accuracy the trial reported. Every other gap is a note, one line per cause, never an error.
"""

from __future__ import annotations

import functools
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from xlamaml.analysis.langs import AVERAGES
from xlamaml.analysis.results import read_params
from xlamaml.trainables.errors import XlamamlError
from xlamaml.trainables.paths import default_data_dir
from xlamaml.trainables.tasks.outcomes import SUFFIX, read_outcomes

SPLITS: tuple[str, ...] = ("dev", "test")


@dataclass(frozen=True)
class ItemOutcomes:
    """A trial's per-item outcomes on one split and language: the item ids and each metric's values."""

    uids: tuple[str, ...]
    values: dict[str, np.ndarray]  # metric -> (items,), in the metric's own units


# (trial_dir, split, lang) -> outcomes
Outcomes = dict[tuple[str, str, str], ItemOutcomes]


@dataclass
class OutcomeNotes:
    """Why some outcomes are missing: cause -> the (trial folder name, split, lang) it hit."""

    missing: dict[str, list[tuple[str, str, str]]]

    def lines(self) -> list[str]:
        """Return one line per cause, naming how many trial sets it hit and the first of them."""
        out = []
        for cause, hits in self.missing.items():
            trials = sorted({h[0] for h in hits})
            first = hits[0]
            out.append(f"{len(hits)} set(s) of {len(trials)} trial(s) (first {first[0]} {first[1]}-{first[2]}): "
                       f"{cause}; their cells get no statistics")
        return out


def load_outcomes(df: pd.DataFrame, splits: tuple[str, ...] = SPLITS,
                  data_dir: str | None = None) -> tuple[Outcomes, OutcomeNotes]:
    """Return the per-item outcomes of every finished trial's (split, lang) in the tidy table, and notes on gaps.
    `data_dir`: where the data is when the folder a trial's params.json names is not there (an experiment moved to
    another machine; default: XLAMAML_DATA_DIR, else ../shared/data): old XNLI trials are scored against it."""
    done = df[(df["status"] == "done") & df["split"].isin(splits) & ~df["lang"].isin(AVERAGES)]
    wanted = done[["trial_dir", "split", "lang"]].drop_duplicates()
    outcomes: Outcomes = {}
    missing: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    reported = done.groupby(["trial_dir", "split", "lang", "metric"])["value"].first().to_dict()
    for trial_dir, split, lang in wanted.itertuples(index=False, name=None):
        got, cause = _trial_outcomes(Path(trial_dir), split, lang, reported, data_dir)
        if got is None:
            missing[cause].append((Path(trial_dir).name, split, lang))
        else:
            outcomes[(trial_dir, split, lang)] = got
    return outcomes, OutcomeNotes(dict(missing))


def _trial_outcomes(trial: Path, split: str, lang: str, reported: dict,
                    data_dir: str | None = None) -> tuple[ItemOutcomes | None, str]:
    """Return (outcomes, '') of one set, or (None, the cause of their absence)."""
    path = trial / "predictions" / f"{split}-{lang}{SUFFIX}"
    if path.is_file():
        try:
            uids, values = read_outcomes(path)
        except XlamamlError as e:
            return None, f"unreadable per-item outcomes ({e})"
        if len(set(uids)) != len(uids):
            return None, "per-item outcomes with repeated uids"
        return ItemOutcomes(tuple(uids), values), ""
    legacy = trial / "predictions" / f"{split}-{lang}.tsv"
    if not legacy.is_file():
        return None, f"no per-item outcomes (predictions/{split}-<lang>{SUFFIX}; a trial from before they were kept)"
    try:
        got = _legacy_xnli(trial, split, lang, legacy, data_dir)
    except (XlamamlError, OSError, ValueError, KeyError) as e:
        return None, f"predictions without per-item outcomes, and their labels could not be read ({e})"
    if got is None:
        return None, "predictions without per-item outcomes that are not XNLI label files"
    acc = reported.get((str(trial), split, lang, "acc"))
    if acc is None or not math.isclose(float(got.values["acc"].mean()), acc, abs_tol=1e-9):
        return None, "XNLI predictions that do not give back the reported accuracy on the data named in params.json"
    return got, ""


def _legacy_xnli(trial: Path, split: str, lang: str, predictions: Path,
                 data_dir: str | None = None) -> ItemOutcomes | None:
    """Return the outcomes of an XNLI prediction file scored against the data's labels, or None for another task.
    The data is the folder params.json names, else (moved to another machine) `data_dir` or the default data
    folder; the reported accuracy checks that it is the same data either way."""
    params = read_params(trial / "params.json")
    if params.get("task", "xnli") != "xnli":
        return None
    data, ev = params.get("data") or {}, params.get("eval") or {}
    limit = ev.get("max_examples") if split == "test" else ev.get("dev_max_examples")
    start = 0 if split == "test" else int(ev.get("dev_offset") or 0)
    folder, source = data.get("dir"), str(data.get("xnli", "auto"))
    if not folder or not Path(folder).is_dir():
        folder = data_dir or default_data_dir()
        if Path(source).is_absolute() and not Path(source).exists():  # a file of the other machine
            source = "auto"
    uids, labels = _xnli_labels(source, split, lang, folder, limit, start)
    from xlamaml.trainables.data.xnli import LABEL_IDS  # the data readers load only for old experiments

    words = predictions.read_text(encoding="utf-8").split()
    if len(words) != len(labels):
        raise ValueError(f"{predictions}: {len(words)} predictions for {len(labels)} {split} pairs")
    preds = np.array([LABEL_IDS[w] for w in words])
    return ItemOutcomes(uids, {"acc": (preds == labels).astype(float)})


@functools.lru_cache(maxsize=64)
def _xnli_labels(source: str, split: str, lang: str, data_dir: str | None,
                 limit: int | None, start: int = 0) -> tuple[tuple[str, ...], np.ndarray]:
    """Return (uids, labels) of `limit` pairs of an XNLI split from pair `start` on, as a trial scored them."""
    from xlamaml.trainables.data.subset import limit as scored_rows  # the rows rule the trial used
    from xlamaml.trainables.data.xnli import load_xnli

    ds = scored_rows(load_xnli(source, split, [lang], data_dir)[lang], None if limit is None else int(limit), start)
    return tuple(ds["uid"]), np.asarray(ds["label"])
