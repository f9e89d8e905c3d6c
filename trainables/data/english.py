"""The English-stage training data: MNLI (local file or hub), else the XNLI English dev set."""

from __future__ import annotations

import json
import random
from pathlib import Path

import datasets

from xlamaml.trainables.data.errors import DataError
from xlamaml.trainables.data.xnli import FEATURES, LABEL_IDS, iter_lines, load_xnli, nli_dataset, quote
from xlamaml.trainables.paths import default_data_dir

MNLI_FILES: tuple[str, ...] = ("train.jsonl", "train.jsonl.gz", "train.tsv", "train.tsv.gz")
HUB_NAME, HUB_CONFIG = "nyu-mll/glue", "mnli"
SOURCES = ("'auto', 'mnli-hub', 'xnli-en-dev', or a path to an MNLI train.jsonl[.gz] (keys sentence1, "
           "sentence2, gold_label) or GLUE MNLI train.tsv[.gz] (columns sentence1, sentence2, gold_label or label)")
# GLUE/HF exports sometimes store the label as its id rather than its name.
_LABELS = {**LABEL_IDS, "0": 0, "1": 1, "2": 2}


def load_english_nli(source: str = "auto", data_dir: str | None = None, max_examples: int | None = None,
                     seed: int = 0) -> tuple[datasets.Dataset, str]:
    """Return (English NLI pairs with columns uid, lang='en', premise, hypothesis, label; where they came from)."""
    _check_max_examples(max_examples)
    root = Path(data_dir or default_data_dir()).expanduser()
    if source == "mnli-hub":
        return _load_hub(max_examples, seed)
    if source == "xnli-en-dev":
        ds, what = _xnli_en_dev(data_dir), f"XNLI 1.0 English dev ({root / 'xnli'})"
    elif source == "auto":
        found = _find_mnli(root / "mnli")
        if found is None:
            ds = _xnli_en_dev(data_dir)
            what = f"XNLI 1.0 English dev ({root / 'xnli'}; no MNLI train file in {root / 'mnli'})"
        else:
            ds, what = _read_mnli(found)
    else:
        ds, what = _read_mnli(_local_path(source))
    ds, note = _subset(ds, max_examples, seed)
    return ds, f"{what}: {len(ds):,} pairs{note}"


def subset_indices(n: int, max_examples: int | None, seed: int) -> list[int] | None:
    """Return the sorted row indices of a seeded random subset of `max_examples` of `n` rows, or None for all."""
    if max_examples is None or max_examples >= n:
        return None
    # Sorted so that the subset keeps the file's order; the training loop does its own shuffling.
    return sorted(random.Random(seed).sample(range(n), max_examples))


def _check_max_examples(max_examples: int | None) -> None:
    """Raise DataError unless max_examples is None or a positive int."""
    if max_examples is not None and (isinstance(max_examples, bool) or not isinstance(max_examples, int)
                                     or max_examples < 1):
        raise DataError("load_english_nli", f"max_examples={max_examples!r}", "a positive integer or None")


def _subset(ds: datasets.Dataset, max_examples: int | None, seed: int) -> tuple[datasets.Dataset, str]:
    """Return (the seeded subset of `ds`, a note for the description)."""
    idx = subset_indices(len(ds), max_examples, seed)
    if idx is None:
        return ds, ""
    # Rebuilt from the rows: a plain table, so later maps do not go through an index mapping
    # (and no progress bar, as flatten_indices would print).
    sub = datasets.Dataset.from_dict(ds.select(idx).to_dict(), features=FEATURES)
    return sub, f" (random subset of {len(ds):,}, seed {seed})"


def _xnli_en_dev(data_dir: str | None) -> datasets.Dataset:
    """Return the XNLI English dev set from `<data_dir>/xnli`."""
    return load_xnli("auto", "dev", ["en"], data_dir=data_dir)["en"]


def _find_mnli(folder: Path) -> Path | None:
    """Return the first MNLI train file found in `folder` (jsonl before tsv), or None."""
    for name in MNLI_FILES:
        if (folder / name).is_file():
            return folder / name
    return None


def _local_path(source: str) -> Path:
    """Return the MNLI file that a local `source` names (a file, or a folder holding train.{jsonl,tsv}[.gz])."""
    path = Path(source).expanduser()
    if path.is_dir():
        found = _find_mnli(path)
        if found is None:
            raise DataError(path, f"a folder without {', '.join(MNLI_FILES)}", SOURCES)
        return found
    if not path.is_file():
        raise DataError(path, "no such file", SOURCES)
    return path


def _read_mnli(path: Path) -> tuple[datasets.Dataset, str]:
    """Return (the pairs of an MNLI jsonl or GLUE tsv file, a description of the file)."""
    name = path.name[:-3] if path.name.endswith(".gz") else path.name
    if name.endswith(".jsonl") or name.endswith(".json"):
        rows, fmt = _Rows(path), "MNLI jsonl"
        _parse_jsonl(path, rows)
    elif name.endswith(".tsv") or name.endswith(".txt"):
        rows, fmt = _Rows(path), "GLUE MNLI tsv"
        _parse_tsv(path, rows)
    else:
        raise DataError(path, "an unknown file type", "a name ending in .jsonl[.gz] or .tsv[.gz]")
    return rows.dataset(), f"{fmt} {path}{rows.skipped_note()}"


class _Rows:
    """Collects the usable pairs of one file and counts the rows it skips."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.uids: list[str] = []
        self.premises: list[str] = []
        self.hypotheses: list[str] = []
        self.labels: list[int] = []
        self.no_gold = 0
        self.no_text = 0

    def add(self, lineno: int, uid: str, premise: str, hypothesis: str, label: object) -> None:
        """Keep one row, or count it as skipped when it has no gold label or no text."""
        label_str = str(label).strip()
        if label_str == "-":  # annotators did not agree: MNLI marks these "-" and leaves them out
            self.no_gold += 1
            return
        if label_str not in _LABELS:
            raise DataError(self.path, f"label {quote(label_str)}",
                            "entailment, neutral, contradiction (or 0, 1, 2), or '-' for rows to skip", line=lineno)
        if not premise.strip() or not hypothesis.strip():
            # Real MNLI train has a few pairs with an empty sentence; skip them (counted in the description)
            # rather than refuse the whole file.
            self.no_text += 1
            return
        self.uids.append(uid)
        self.premises.append(premise)
        self.hypotheses.append(hypothesis)
        self.labels.append(_LABELS[label_str])

    def skipped_note(self) -> str:
        """Return ' (skipped ...)' naming the skipped rows, or '' when none were."""
        parts = []
        if self.no_gold:
            parts.append(f"{self.no_gold:,} with gold_label '-'")
        if self.no_text:
            parts.append(f"{self.no_text:,} with an empty sentence")
        return f" (skipped {' and '.join(parts)})" if parts else ""

    def dataset(self) -> datasets.Dataset:
        """Return the kept pairs as a Dataset, or raise DataError when none were kept."""
        if not self.uids:
            raise DataError(self.path, f"no usable pairs{self.skipped_note()}", "at least one labelled pair")
        return nli_dataset("en", self.uids, self.premises, self.hypotheses, self.labels)


def _parse_jsonl(path: Path, rows: _Rows) -> None:
    """Add every row of an MNLI jsonl file (keys sentence1, sentence2, gold_label, pairID) to `rows`."""
    for lineno, line in iter_lines(path):
        if not line.strip():
            continue  # blank lines (often one at the end) hold no row
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(path, f"invalid JSON ({e.msg} at column {e.colno})", "one JSON object per line",
                            line=lineno) from None
        if not isinstance(obj, dict):
            raise DataError(path, f"a JSON {type(obj).__name__}", "one JSON object per line", line=lineno)
        missing = [k for k in ("sentence1", "sentence2", "gold_label") if k not in obj]
        if missing:
            raise DataError(path, f"no key {', '.join(missing)}", "keys sentence1, sentence2, gold_label (and pairID)",
                            line=lineno)
        s1, s2 = obj["sentence1"], obj["sentence2"]
        for key, value in (("sentence1", s1), ("sentence2", s2)):
            if value is not None and not isinstance(value, str):
                raise DataError(path, f"{key} of type {type(value).__name__}", f"{key} as a string", line=lineno)
        uid = str(obj.get("pairID", lineno))  # pairID names an MNLI pair; the line number stands in without one
        rows.add(lineno, uid, s1 or "", s2 or "", obj["gold_label"])


def _parse_tsv(path: Path, rows: _Rows) -> None:
    """Add every row of a GLUE MNLI tsv (columns sentence1, sentence2, gold_label or label) to `rows`."""
    lines = iter_lines(path)
    first = next(lines, None)
    header = [] if first is None else first[1].split("\t")
    label_col = "gold_label" if "gold_label" in header else "label"
    missing = [c for c in ("sentence1", "sentence2", label_col) if c not in header]
    if missing:
        got = "an empty file" if first is None else f"a header without {', '.join(missing)}"
        raise DataError(path, got, "tab-separated columns including sentence1, sentence2 and gold_label or label",
                        line=1)
    i_s1, i_s2, i_label = header.index("sentence1"), header.index("sentence2"), header.index(label_col)
    i_uid = next((header.index(c) for c in ("pairID", "index", "idx") if c in header), None)
    for lineno, line in lines:
        fields = line.split("\t")  # GLUE's MNLI has quotes inside text: no csv quoting rules, tabs only
        if len(fields) != len(header):
            raise DataError(path, f"{len(fields)} tab-separated field(s)", f"{len(header)}, as in the header",
                            line=lineno)
        uid = fields[i_uid].strip() if i_uid is not None else str(lineno)
        rows.add(lineno, uid, fields[i_s1], fields[i_s2], fields[i_label])


def _load_hub(max_examples: int | None, seed: int) -> tuple[datasets.Dataset, str]:
    """Return (MNLI train from the hub's GLUE copy mapped to the project's columns, its description)."""
    where = f"hub {HUB_NAME} {HUB_CONFIG} train"
    # Looked up on the module at call time: tests replace datasets.load_dataset and never download.
    hub = datasets.load_dataset(HUB_NAME, HUB_CONFIG, split="train")
    total = len(hub)
    # Subset before reading the columns: the full set is 393k pairs and a run may want 1k.
    idx = subset_indices(total, max_examples, seed)
    if idx is not None:
        hub = hub.select(idx)
    names = ["premise", "hypothesis", "label"] + (["idx"] if "idx" in hub.column_names else [])
    cols = hub.select_columns(names).to_dict()
    uids = cols.get("idx") or (idx if idx is not None else range(total))
    rows = _Rows(Path(where))
    for i, (uid, premise, hypothesis, label) in enumerate(zip(uids, cols["premise"], cols["hypothesis"],
                                                              cols["label"])):
        rows.add(i, str(uid), premise or "", hypothesis or "", label)
    ds = rows.dataset()
    note = f" (random subset of {total:,}, seed {seed})" if idx is not None else ""
    return ds, f"MNLI train ({where}){rows.skipped_note()}: {len(ds):,} pairs{note}"
