"""Per-item outcomes: one TSV per scored set beside its predictions, `<split>-<lang>.items.tsv`.

Header `uid<TAB><metric>...`, then one line per item (XNLI pair, MLQA question) in the set's order, each value in
the metric's own units (the mean over the items is the reported metric: accuracy 0/1, MLQA EM and F1 0-100). Paired
statistics over items (`analysis.stats`) need nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from xlamaml.trainables.errors import InputError
from xlamaml.trainables.local_files import write_text_whole

SUFFIX = ".items.tsv"


def outcome_path(pred_file: Path) -> Path:
    """Return the outcomes file beside the prediction file `pred_file` ('test-en.tsv' -> 'test-en.items.tsv')."""
    return pred_file.with_name(pred_file.name.split(".", 1)[0] + SUFFIX)


def write_outcomes(path: Path, uids: Sequence[str], values: Mapping[str, np.ndarray]) -> Path:
    """Return `path` after writing one line per item: its uid and each metric's value."""
    names = list(values)
    columns = [np.asarray(values[n], dtype=float) for n in names]
    if any(len(c) != len(uids) for c in columns):
        raise ValueError(f"{path}: {len(uids)} uids but values of lengths {[len(c) for c in columns]}")
    lines = ["\t".join(["uid", *names])]
    # repr-exact floats: the analysis recomputes the reported metric from these values.
    lines += ["\t".join([str(u), *(repr(float(c[i])) for c in columns)]) for i, u in enumerate(uids)]
    return write_text_whole(path, "\n".join(lines) + "\n")


def read_outcomes(path: Path) -> tuple[list[str], dict[str, np.ndarray]]:
    """Return (uids, {metric: values (items,)}) of an outcomes file, or raise a one-line InputError naming it."""
    return parse_outcomes(path.read_text(encoding="utf-8"), str(path))


def parse_outcomes(text: str, where: str) -> tuple[list[str], dict[str, np.ndarray]]:
    """Return (uids, {metric: values (items,)}) of an outcomes file's text, or raise a one-line InputError naming
    `where` (its path or URI)."""
    lines = text.splitlines()
    if not lines or not lines[0].startswith("uid\t"):
        raise InputError(f"{where}: expected a header line 'uid<TAB><metric>...' (per-item outcomes)")
    names = lines[0].split("\t")[1:]
    uids, rows = [], []
    for number, line in enumerate(lines[1:], start=2):
        parts = line.split("\t")
        if len(parts) != len(names) + 1:
            raise InputError(f"{where}:{number}: expected {len(names) + 1} tab-separated fields, got {len(parts)}")
        try:
            rows.append([float(p) for p in parts[1:]])
        except ValueError:
            raise InputError(f"{where}:{number}: expected numbers after the uid, got {parts[1:]}") from None
        uids.append(parts[0])
    table = np.asarray(rows, dtype=float).reshape(len(rows), len(names))
    return uids, {n: table[:, j] for j, n in enumerate(names)}
