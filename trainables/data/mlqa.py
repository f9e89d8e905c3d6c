"""MLQA v1 and SQuAD v1.1 readers (SQuAD-style extractive QA) and a held-out split by article.

MLQA sources: `"auto"` (`<data_dir>/mlqa`), a folder in the official `MLQA_V1` layout
`{dev,test}/{split}-context-<c>-question-<q>.json[.gz]` (the folder itself or its parent), or `"hub"`
(`facebook/mlqa`). Every reader returns the same columns (see FEATURES); the MLQA question id (`uid`) is the
same for parallel questions in every language.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets

from xlamaml.trainables.data.checks import check_langs, normalize_split
from xlamaml.trainables.data.errors import DataError
from xlamaml.trainables.data.files import file_key, resolve_root
from xlamaml.trainables.data.xnli import open_binary, quote
from xlamaml.trainables.languages import MLQA_LANGS

FEATURES = datasets.Features({
    "uid": datasets.Value("string"),
    "lang": datasets.Value("string"),  # the context (and answer) language
    "article": datasets.Value("string"),  # group key: no article is on both sides of `heldout_split`
    "title": datasets.Value("string"),
    "context": datasets.Value("string"),
    "question": datasets.Value("string"),
    "answers": {"text": datasets.List(datasets.Value("string")),
                "answer_start": datasets.List(datasets.Value("int64"))},
})
HUB_MLQA = "facebook/mlqa"
HUB_SQUAD = "rajpurkar/squad"
HUB_SPLITS: dict[str, str] = {"dev": "validation", "test": "test", "train": "train"}
SQUAD_FILES: dict[str, tuple[str, ...]] = {"train": ("train-v1.1.json", "train-v1.1.json.gz"),
                                           "dev": ("dev-v1.1.json", "dev-v1.1.json.gz")}
SQUAD_JSON = ('SQuAD v1.1 JSON {"data": [{"title": str, "paragraphs": [{"context": str, "qas": [{"id": str, '
              '"question": str, "answers": [{"text": str, "answer_start": int}]}]}]}]}')
MLQA_LAYOUT = ("the MLQA_V1 layout <dir>/{dev,test}/{split}-context-<c>-question-<q>.json[.gz] "
               "(or <dir>/MLQA_V1/...), 'auto' (<data_dir>/mlqa) or 'hub'")


@dataclass
class QARecord:
    """One QA instance as read from a file or the hub, before it becomes a Dataset row."""

    uid: str
    title: str
    article: str
    context: str
    question: str
    texts: list[str]
    starts: list[int]


# --- public readers -----------------------------------------------------------------------------------------


def load_mlqa(source: str, split: str, langs: list[str], data_dir: str | None = None,
              question_langs: str = "same") -> dict[str, datasets.Dataset]:
    """Return {context lang: Dataset} of MLQA; questions in the same language, or all in `question_langs`."""
    split = normalize_split(split, source)
    langs = check_langs(langs, MLQA_LANGS, source)
    if question_langs != "same":
        check_langs([question_langs], MLQA_LANGS, source)
    return {lang: load_mlqa_pair(source, split, lang, lang if question_langs == "same" else question_langs,
                                 data_dir)
            for lang in langs}


def load_mlqa_pair(source: str, split: str, context_lang: str, question_lang: str,
                   data_dir: str | None = None) -> datasets.Dataset:
    """Return one (context language, question language) MLQA set (the G-XLT matrix); `lang` = context language."""
    split = normalize_split(split, source)
    check_langs([context_lang, question_lang], MLQA_LANGS, source)
    if source == "hub":
        return _load_hub(HUB_MLQA, f"mlqa.{context_lang}.{question_lang}", HUB_SPLITS[split], context_lang)
    path = _mlqa_file(resolve_root(source, data_dir, "mlqa"), split, context_lang, question_lang)
    return _read_squad_file(*file_key(path), context_lang).with_format(None)


def load_squad(source: str, data_dir: str | None = None, split: str = "train") -> datasets.Dataset:
    """Return SQuAD v1.1 (English, lang 'en') from a local JSON[.gz], a folder holding it, 'auto' or 'hub'."""
    if split not in ("train", "dev", "validation"):
        raise DataError(source, f"split {split!r}", "train, dev or validation")
    split = "dev" if split == "validation" else split
    if source == "hub":
        return _load_hub(HUB_SQUAD, None, HUB_SPLITS[split], "en")
    root = resolve_root(source, data_dir, "squad")
    if root.is_file():
        path = root
    else:
        found = [root / name for name in SQUAD_FILES[split] if (root / name).is_file()]
        if not found:
            looked = " or ".join(str(root / name) for name in SQUAD_FILES[split])
            raise DataError(root, f"no SQuAD {split} file (looked for {looked})",
                            f"a SQuAD v1.1 file, or a folder holding {' / '.join(SQUAD_FILES[split])}, or 'hub'")
        path = found[0]
    return _read_squad_file(*file_key(path), "en").with_format(None)


def heldout_split(ds: datasets.Dataset, fraction: float, seed: int) -> tuple[datasets.Dataset, datasets.Dataset]:
    """Return (train, held-out): a deterministic split by article, no article or context on both sides."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"heldout_split: fraction {fraction!r}; expected a number strictly between 0 and 1")
    uids = list(ds["uid"])
    groups = _article_groups(list(ds["article"]), list(ds["context"]))
    # A group's key is the smallest question id in it. MLQA ids are shared across languages and the article
    # grouping of the shared ids is the same in every language, so a parallel article gets the same key (and
    # side) whenever its two versions hold the same questions. Its side is a hash of the key alone (not a rank
    # among this language's groups), so one language's other articles cannot move it.
    members: dict[int, list[int]] = {}
    for row, g in enumerate(groups):
        members.setdefault(g, []).append(row)
    score = {g: _unit_hash(f"{seed}:{min(uids[r] for r in rows)}") for g, rows in members.items()}
    held = {g for g, s in score.items() if s < fraction}
    if len(members) >= 2:  # a tiny set still gets one group on each side
        if not held:
            held = {min(score, key=score.get)}
        elif len(held) == len(members):
            held.discard(max(score, key=score.get))
    train_rows = [r for r, g in enumerate(groups) if g not in held]
    held_rows = [r for r, g in enumerate(groups) if g in held]
    return ds.select(train_rows), ds.select(held_rows)


def qa_dataset(lang: str, records: list[QARecord]) -> datasets.Dataset:
    """Return a Dataset with the project's QA columns from `records`."""
    return datasets.Dataset.from_dict({
        "uid": [r.uid for r in records],
        "lang": [lang] * len(records),
        "article": [r.article for r in records],
        "title": [r.title for r in records],
        "context": [r.context for r in records],
        "question": [r.question for r in records],
        "answers": [{"text": r.texts, "answer_start": r.starts} for r in records],
    }, features=FEATURES)


# --- locating files -----------------------------------------------------------------------------------------


def _mlqa_file(root: Path, split: str, c: str, q: str) -> Path:
    """Return `<root>/<split>/<split>-context-<c>-question-<q>.json[.gz]` (plain first), also under MLQA_V1/."""
    stem = f"{split}-context-{c}-question-{q}.json"
    looked = []
    for folder in (root / split, root / "MLQA_V1" / split):  # MLQA_V1.zip unpacks into MLQA_V1/
        for name in (stem, stem + ".gz"):
            if (folder / name).is_file():
                return folder / name
            looked.append(str(folder / name))
    what = "no such folder" if not root.exists() else f"no MLQA {split} file for context {c}, question {q}"
    raise DataError(root / split / stem, f"{what} (looked for {', '.join(looked)})", MLQA_LAYOUT)


# --- parsing and checking -----------------------------------------------------------------------------------


def _load_json(path: str) -> Any:
    """Return the parsed JSON of a UTF-8 file, gunzipped when its name ends in .gz."""
    try:
        with open_binary(Path(path)) as f:
            raw = f.read()
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise DataError(path, f"unreadable gzip data ({e})",
                        "a complete gzip file, or plain JSON without .gz") from None
    try:
        return json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as e:
        raise DataError(path, f"bytes that are not UTF-8 at byte {e.start} ({e.reason})", "UTF-8 JSON") from None
    except json.JSONDecodeError as e:
        raise DataError(path, f"not JSON ({e.msg}, line {e.lineno} column {e.colno})", SQUAD_JSON) from None


def _check_answers(where: str, uid: str, context: str, answers: Any) -> tuple[list[str], list[int]]:
    """Return (texts, starts) of a qa's answers, or raise DataError when one does not sit in the context."""
    if not isinstance(answers, list) or not answers:
        raise DataError(where, f"question {quote(uid)} has no answers list", "at least one answer (SQuAD v1.1)")
    texts, starts = [], []
    for a in answers:
        text = a.get("text") if isinstance(a, dict) else None
        start = a.get("answer_start") if isinstance(a, dict) else None
        if not isinstance(text, str) or not text or isinstance(start, bool) or not isinstance(start, int):
            raise DataError(where, f"question {quote(uid)}: answer {quote(repr(a))}",
                            'answers like {"text": non-empty str, "answer_start": int}')
        found = context[start : start + len(text)] if start >= 0 else ""
        if found != text:
            raise DataError(where, f"question {quote(uid)}: answer {quote(text)} at answer_start {start}, "
                                   f"but the context there reads {quote(found)}",
                            "answer_start to point at the answer text in the context")
        texts.append(text)
        starts.append(start)
    return texts, starts


def _records(where: str, top: Any) -> list[QARecord]:
    """Return the QA instances of a parsed SQuAD v1.1 document, checking ids and answer positions."""
    if not isinstance(top, dict) or not isinstance(top.get("data"), list):
        raise DataError(where, "no 'data' list at the top level", SQUAD_JSON)
    out: list[QARecord] = []
    seen: set[str] = set()
    for ai, art in enumerate(top["data"]):
        if not isinstance(art, dict) or not isinstance(art.get("paragraphs"), list):
            raise DataError(where, f"data[{ai}] has no 'paragraphs' list", SQUAD_JSON)
        title = art.get("title") if isinstance(art.get("title"), str) else ""
        # The title names the Wikipedia article; an untitled entry is its own article.
        article = title or f"#{ai}"
        for pi, par in enumerate(art["paragraphs"]):
            if not isinstance(par, dict) or not isinstance(par.get("context"), str) \
                    or not isinstance(par.get("qas"), list):
                raise DataError(where, f"data[{ai}].paragraphs[{pi}] has no 'context' string or 'qas' list",
                                SQUAD_JSON)
            context = par["context"]
            for qi, qa in enumerate(par["qas"]):
                uid = qa.get("id") if isinstance(qa, dict) else None
                if not isinstance(uid, str) or not uid:
                    raise DataError(where, f"data[{ai}].paragraphs[{pi}].qas[{qi}] has no 'id'",
                                    "every question to have a non-empty string id")
                if uid in seen:
                    raise DataError(where, f"question id {quote(uid)} twice", "each question id once per file")
                seen.add(uid)
                if not isinstance(qa.get("question"), str):
                    raise DataError(where, f"question {quote(uid)} has no 'question' string", SQUAD_JSON)
                texts, starts = _check_answers(where, uid, context, qa.get("answers"))
                out.append(QARecord(uid, title, article, context, qa["question"], texts, starts))
    if not out:
        raise DataError(where, "no questions", "at least one QA instance")
    return out


@functools.lru_cache(maxsize=64)
def _read_squad_file(path: str, mtime_ns: int, size: int, lang: str) -> datasets.Dataset:
    """Return one SQuAD-format file as a Dataset; cached on path, mtime and size."""
    return qa_dataset(lang, _records(path, _load_json(path)))


def _load_hub(name: str, config: str | None, split: str, lang: str) -> datasets.Dataset:
    """Return a SQuAD-style hub dataset (MLQA or SQuAD) mapped to the project's columns."""
    where = f"hub {name} {config or ''} {split}".replace("  ", " ")
    # Looked up on the module at call time: tests replace datasets.load_dataset and never download.
    ds = datasets.load_dataset(name, config, split=split) if config else datasets.load_dataset(name, split=split)
    cols = ds.to_dict()
    titles = cols.get("title") or [""] * len(cols["id"])  # facebook/mlqa rows carry no title
    records = []
    for uid, title, context, question, ans in zip(cols["id"], titles, cols["context"], cols["question"],
                                                  cols["answers"]):
        answers = [{"text": t, "answer_start": int(s)} for t, s in zip(ans["text"], ans["answer_start"])]
        texts, starts = _check_answers(where, str(uid), context, answers)
        # Without a title, the context itself is the group: no context can then cross a held-out split.
        article = title or "ctx:" + hashlib.sha1(context.encode("utf-8")).hexdigest()[:16]
        records.append(QARecord(str(uid), title or "", article, context, question, texts, starts))
    if not records:
        raise DataError(where, "no rows", "at least one QA instance")
    return qa_dataset(lang, records)


# --- held-out split helpers ---------------------------------------------------------------------------------


def _article_groups(articles: list[str], contexts: list[str]) -> list[int]:
    """Return a group id per row: rows that share an article or a context are in one group (union-find)."""
    parent = list(range(len(articles)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[tuple[str, str], int] = {}
    for row, key in enumerate(zip(articles, contexts)):
        for k in (("a", key[0]), ("c", key[1])):
            if k in first:
                parent[find(row)] = find(first[k])
            else:
                first[k] = row
    return [find(r) for r in range(len(articles))]


def _unit_hash(key: str) -> float:
    """Return a number in [0, 1) from sha256 of `key`: the same on every machine and Python run."""
    return int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:16], 16) / 2.0**64
