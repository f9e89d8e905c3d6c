"""XNLI 1.0 dev/test readers: one `datasets.Dataset` per language, aligned across languages by `uid`.

Sources: `"auto"` (`<data_dir>/xnli`), a folder in the shared layout `{dev,test}/<lang>.tsv[.gz]`, the
official XNLI-1.0 files `xnli.{dev,test}.tsv[.gz]` (a folder holding them, or one file), or `"hub"`.
"""

from __future__ import annotations

import functools
import gzip
import zlib
from pathlib import Path
from typing import BinaryIO, Iterator

import datasets

from xlamaml.trainables.data.checks import check_langs, normalize_split
from xlamaml.trainables.data.errors import DataError
from xlamaml.trainables.data.files import file_key, resolve_root
from xlamaml.trainables.languages import XNLI_LANGS

LABELS: tuple[str, ...] = ("entailment", "neutral", "contradiction")  # position = label id (HF convention)
LABEL_IDS: dict[str, int] = {name: i for i, name in enumerate(LABELS)}
FEATURES = datasets.Features({
    "uid": datasets.Value("string"),
    "lang": datasets.Value("string"),
    "premise": datasets.Value("string"),
    "hypothesis": datasets.Value("string"),
    "label": datasets.Value("int64"),
})
HEADER: tuple[str, ...] = ("id", "premise", "hypothesis", "label")
OFFICIAL_COLUMNS: tuple[str, ...] = ("language", "gold_label", "pairID", "sentence1", "sentence2")
HUB_NAME = "facebook/xnli"
HUB_SPLITS: dict[str, str] = {"dev": "validation", "test": "test"}
LAYOUTS = ("a folder <dir>/{dev,test}/<lang>.tsv[.gz] with header 'id premise hypothesis label', "
           "or XNLI-1.0's xnli.{dev,test}.tsv[.gz] (a folder holding it, or the file itself), or 'auto' or 'hub'")
_INT_LABELS = {"0": 0, "1": 1, "2": 2}


def load_xnli(source: str, split: str, langs: list[str], data_dir: str | None = None) -> dict[str, datasets.Dataset]:
    """Return {lang: Dataset with columns uid, lang, premise, hypothesis, label} for one XNLI split."""
    split = normalize_split(split, source)
    langs = check_langs(langs, XNLI_LANGS, source)
    if source == "hub":
        return {lang: _load_hub(lang, split) for lang in langs}
    kind, path = _find_layout(resolve_root(source, data_dir, "xnli", LAYOUTS), split)
    if kind == "per-language":
        return {lang: _fresh(_read_lang_file(*file_key(_lang_file(path, lang)), lang)) for lang in langs}
    by_lang = _read_official(*file_key(path))
    out = {}
    for lang in langs:
        if lang not in by_lang:
            raise DataError(path, f"no rows for language {lang!r} (it has {' '.join(sorted(by_lang))})",
                            f"rows whose language column is {lang}")
        out[lang] = _fresh(by_lang[lang])
    return out


def xnli_langs_available(source: str, split: str, data_dir: str | None = None) -> list[str]:
    """Return the XNLI language codes that `source` holds for `split`, in XNLI_LANGS order."""
    split = normalize_split(split, source)
    if source == "hub":
        return list(XNLI_LANGS)
    kind, path = _find_layout(resolve_root(source, data_dir, "xnli", LAYOUTS), split)
    if kind == "per-language":
        return [lang for lang in XNLI_LANGS if _lang_file(path, lang, missing_ok=True) is not None]
    by_lang = _read_official(*file_key(path))
    return [lang for lang in XNLI_LANGS if lang in by_lang]


def nli_dataset(lang: str, uids: list[str], premises: list[str], hypotheses: list[str],
                labels: list[int]) -> datasets.Dataset:
    """Return a Dataset with the project's NLI columns (uid, lang, premise, hypothesis, label)."""
    return datasets.Dataset.from_dict(
        {"uid": uids, "lang": [lang] * len(uids), "premise": premises, "hypothesis": hypotheses, "label": labels},
        features=FEATURES,
    )


def open_binary(path: Path) -> BinaryIO:
    """Return `path` opened for reading bytes, gunzipped when its name ends in `.gz`."""
    return gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")


def iter_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield (1-based line number, line without its line end) for each line of a UTF-8 text file, .gz or plain."""
    # Lines are split as bytes on b"\n" and decoded one by one: a stray \r inside a field cannot cut a row,
    # and a decoding error is reported on its own line (a text wrapper decodes ahead in 8 KB chunks).
    lineno = 0
    try:
        with open_binary(path) as f:
            for lineno, raw in enumerate(f, start=1):
                if raw.endswith(b"\n"):
                    raw = raw[:-1]
                if raw.endswith(b"\r"):  # a file saved with CRLF line ends
                    raw = raw[:-1]
                if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):  # a byte-order mark some editors add
                    raw = raw[3:]
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise DataError(path, f"bytes that are not UTF-8 at byte {e.start} ({e.reason})", "UTF-8 text",
                                    line=lineno) from None
                yield lineno, line
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise DataError(path, f"unreadable gzip data ({e})", "a complete gzip file, or plain text without .gz") from None


def quote(text: str, limit: int = 60) -> str:
    """Return repr(text), cut to about `limit` characters so error lines stay short."""
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def _find_layout(root: Path, split: str) -> tuple[str, Path]:
    """Return ('per-language', split folder) or ('official', xnli.<split>.tsv[.gz] file) found under `root`."""
    if root.is_file():
        other = "test" if split == "dev" else "dev"
        if root.name.startswith(f"xnli.{other}."):
            raise DataError(root, f"the file of the {other} split", f"xnli.{split}.tsv[.gz] for split {split}")
        return "official", root
    if (root / split).is_dir():
        return "per-language", root / split
    for folder in (root, root / "XNLI-1.0"):  # XNLI-1.0.zip unpacks into XNLI-1.0/
        for name in (f"xnli.{split}.tsv", f"xnli.{split}.tsv.gz"):
            if (folder / name).is_file():
                return "official", folder / name
    if not root.exists():
        raise DataError(root, "no such file or folder", LAYOUTS)
    raise DataError(root, f"no XNLI {split} data (looked for {root / split}/<lang>.tsv[.gz] and "
                          f"{root}/xnli.{split}.tsv[.gz])", LAYOUTS)


def _lang_file(folder: Path, lang: str, missing_ok: bool = False) -> Path | None:
    """Return `<folder>/<lang>.tsv` or `<lang>.tsv.gz`, whichever exists (plain first)."""
    for name in (f"{lang}.tsv", f"{lang}.tsv.gz"):
        if (folder / name).is_file():
            return folder / name
    if missing_ok:
        return None
    raise DataError(folder / f"{lang}.tsv", f"no file for language {lang!r} (looked for {lang}.tsv and "
                                            f"{lang}.tsv.gz in {folder})", LAYOUTS)


def _fresh(ds: datasets.Dataset) -> datasets.Dataset:
    """Return a new Dataset object over the same (immutable) Arrow table as the cached `ds`."""
    # set_format/set_transform change a Dataset in place: hand out a copy so that one caller's
    # format cannot leak into the cached object and the next caller's result.
    return ds.with_format(None)


def _check_text(path: str, lineno: int, text: str, name: str) -> None:
    """Raise DataError when a premise or hypothesis is empty or only spaces."""
    if not text.strip():
        raise DataError(path, f"empty {name}", f"a non-empty {name}", line=lineno)


@functools.lru_cache(maxsize=64)
def _read_lang_file(path: str, mtime_ns: int, size: int, lang: str) -> datasets.Dataset:
    """Return one per-language TSV (`id premise hypothesis label`) as a Dataset; cached on path, mtime, size."""
    lines = iter_lines(Path(path))
    first = next(lines, None)
    if first is None or tuple(first[1].split("\t")) != HEADER:
        got = "an empty file" if first is None else f"header {quote(first[1])}"
        raise DataError(path, got, "the tab-separated header 'id\\tpremise\\thypothesis\\tlabel'", line=1)
    uids: list[str] = []
    premises: list[str] = []
    hypotheses: list[str] = []
    labels: list[int] = []
    seen: dict[str, int] = {}
    for lineno, line in lines:
        fields = line.split("\t")
        if len(fields) != 4:
            raise DataError(path, f"{len(fields)} tab-separated field(s)", "4 (id, premise, hypothesis, label)",
                            line=lineno)
        uid, premise, hypothesis, label = fields
        uid = uid.strip()
        if not uid:
            raise DataError(path, "an empty id", "the pair's id (the same id in every language)", line=lineno)
        if uid in seen:
            raise DataError(path, f"id {quote(uid)} again (first on line {seen[uid]})", "each id once", line=lineno)
        seen[uid] = lineno
        _check_text(path, lineno, premise, "premise")
        _check_text(path, lineno, hypothesis, "hypothesis")
        label_id = _INT_LABELS.get(label.strip())
        if label_id is None:
            raise DataError(path, f"label {quote(label)}", "0, 1 or 2 (entailment, neutral, contradiction)",
                            line=lineno)
        uids.append(uid)
        premises.append(premise)  # text as is: XNLI keeps e.g. trailing spaces of some French premises
        hypotheses.append(hypothesis)
        labels.append(label_id)
    if not uids:
        raise DataError(path, "a header and no rows", "at least one sentence pair")
    return nli_dataset(lang, uids, premises, hypotheses, labels)


@functools.lru_cache(maxsize=4)
def _read_official(path: str, mtime_ns: int, size: int) -> dict[str, datasets.Dataset]:
    """Return {lang: Dataset} for every language in an official XNLI-1.0 file; cached on path, mtime, size."""
    lines = iter_lines(Path(path))
    first = next(lines, None)
    header = [] if first is None else first[1].split("\t")
    missing = [c for c in OFFICIAL_COLUMNS if c not in header]
    if missing:
        got = "an empty file" if first is None else f"a header without {', '.join(missing)}"
        raise DataError(path, got, f"XNLI-1.0 tab-separated columns including {', '.join(OFFICIAL_COLUMNS)}",
                        line=1)
    i_lang, i_gold, i_pair, i_s1, i_s2 = (header.index(c) for c in OFFICIAL_COLUMNS)
    rows: dict[str, tuple[list, list, list, list]] = {}
    seen: dict[tuple[str, str], int] = {}
    for lineno, line in lines:
        fields = line.split("\t")
        if len(fields) != len(header):
            raise DataError(path, f"{len(fields)} tab-separated field(s)", f"{len(header)}, as in the header",
                            line=lineno)
        lang = fields[i_lang].strip()
        if lang not in XNLI_LANGS:
            raise DataError(path, f"language {quote(lang)}", f"one of {' '.join(XNLI_LANGS)}", line=lineno)
        gold = fields[i_gold].strip()
        if gold not in LABEL_IDS:
            raise DataError(path, f"gold_label {quote(gold)}", "entailment, neutral or contradiction", line=lineno)
        uid = fields[i_pair].strip()
        if not uid:
            raise DataError(path, "an empty pairID", "the pair's id (the same pairID in every language)", line=lineno)
        if (lang, uid) in seen:
            raise DataError(path, f"pairID {quote(uid)} again for {lang} (first on line {seen[lang, uid]})",
                            "each pairID once per language", line=lineno)
        seen[lang, uid] = lineno
        _check_text(path, lineno, fields[i_s1], "sentence1")
        _check_text(path, lineno, fields[i_s2], "sentence2")
        cols = rows.setdefault(lang, ([], [], [], []))
        cols[0].append(uid)
        cols[1].append(fields[i_s1])
        cols[2].append(fields[i_s2])
        cols[3].append(LABEL_IDS[gold])
    if not rows:
        raise DataError(path, "a header and no rows", "at least one sentence pair")
    return {lang: nli_dataset(lang, *cols) for lang, cols in rows.items()}


def _load_hub(lang: str, split: str) -> datasets.Dataset:
    """Return one language of XNLI from the Hugging Face hub, mapped to the project's columns."""
    where = f"hub {HUB_NAME} {lang} {HUB_SPLITS[split]}"
    # Looked up on the module at call time: tests replace datasets.load_dataset and never download.
    ds = datasets.load_dataset(HUB_NAME, lang, split=HUB_SPLITS[split])
    cols = ds.select_columns(["premise", "hypothesis", "label"]).to_dict()
    labels = [int(x) for x in cols["label"]]
    for i, label in enumerate(labels):
        if label not in (0, 1, 2):
            raise DataError(where, f"label {label} in row {i}", "0, 1 or 2 (entailment, neutral, contradiction)")
    # Hub rows carry no id; each language's rows are in the same order, so the row index is the parallel key
    # (it equals the `id` column of the shared TSVs, which were exported from the same source).
    uids = [str(i) for i in range(len(labels))]
    if not uids:
        raise DataError(where, "no rows", "at least one sentence pair")
    return nli_dataset(lang, uids, cols["premise"], cols["hypothesis"], labels)
