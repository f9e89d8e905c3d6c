"""Where the stages get their encoded data: tokenized here from the raw files, or read from a sweep's data asset.

    TokenizingSource   reads the data folder and tokenizes (`xlamaml run`; the sweep driver building assets)
    AssetSource        reads the `.npz` sets of a fetched data asset (sweep trials and the English-stage task:
                       they never read the raw data or tokenize)

Both answer the same questions (`sets`, `extra_sets`, `english`) with identical encoded sets, so a run gives
the same numbers from either. A data asset holds every set the sweep's trials ask for; `needed_sets` lists them
for one config, and `data_key` names the asset: it hashes everything the encoding depends on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from xlamaml.trainables.config import RunConfig
from xlamaml.trainables.data.subset import limit
from xlamaml.trainables.embedded import converter_key
from xlamaml.trainables.errors import ConfigError, XlamamlError
from xlamaml.trainables.tasks.base import Task

ENGLISH = "english"  # the split name of the English stage's training set


class MissingSetError(XlamamlError, KeyError):
    """A set a trial needs that its sweep's data asset does not hold."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@dataclass(frozen=True)
class SetKey:
    """One encoded set: a split ("dev", "test", "english" or an extra split), a language (or an extra set's name),
    `max_examples` rows (None: all) from row `start` on, train rows or evaluation rows, and the seed where rows depend
    on it."""

    split: str
    lang: str
    max_examples: int | None = None
    train: bool = False
    seed: int | None = None
    start: int = 0

    @property
    def file_name(self) -> str:
        """Return the set's file name in a data asset."""
        seed = "" if self.seed is None else f"-s{self.seed}"
        start = f"-from{self.start}" if self.start else ""  # sets from row 0 keep the names assets already hold
        return (f"{self.split}-{self.lang}{start}-{self.max_examples or 'all'}-{'train' if self.train else 'eval'}"
                f"{seed}.npz")


def data_key(cfg: RunConfig, task: Task) -> str:
    """Return a short hash of everything the encoded sets of `cfg` depend on (data, tokenizer, lengths, split)."""
    relevant = {
        "task": cfg.task,
        "data": dataclasses.asdict(cfg.data),
        "tokenizer": cfg.model.name,
        "max_length": cfg.model.max_length,
        "doc_stride": cfg.model.doc_stride,
        **task.data_split_key(cfg),
        **converter_key(cfg.model.name),
    }
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def english_sets(cfg: RunConfig) -> list[SetKey]:
    """Return the sets the English stage of `cfg` reads: its training data, and en dev and test to score it."""
    scored = cfg.english.dev_max_examples
    return [SetKey(ENGLISH, "en", cfg.english.max_examples, True, cfg.seed),
            SetKey("dev", "en", scored), SetKey("test", "en", scored)]


def needed_sets(cfg: RunConfig, task: Task) -> list[SetKey]:
    """Return every set a sweep trial of `cfg` reads (after the English stage)."""
    m, e = cfg.meta, cfg.eval
    keys = [SetKey("test", lang, e.max_examples) for lang in e.target_langs]
    if cfg.method != "baseline":
        keys += [SetKey("dev", lang, m.max_examples, True) for lang in sorted(set(m.support_langs) | set(m.query_langs))]
    if cfg.few_shot.enabled:
        keys += [SetKey("dev", lang, None, True) for lang in e.target_langs]
    keys += dev_report_keys(cfg)
    for split, names in task.extra_eval_names(cfg, e.target_langs).items():
        keys += [SetKey(split, name, e.max_examples) for name in names]
    return list(dict.fromkeys(keys))


class DataSource(ABC):
    """Encoded sets for the stages of one run."""

    def __init__(self, cfg: RunConfig, task: Task):
        self.cfg, self.task = cfg, task

    @abstractmethod
    def get(self, key: SetKey) -> Any:
        """Return the encoded set `key`."""

    @abstractmethod
    def english(self) -> tuple[Any, str]:
        """Return (the English stage's encoded training set, where its examples came from)."""

    @abstractmethod
    def extra_names(self, langs: list[str]) -> dict[str, list[str]]:
        """Return {extra split: the names of its sets} for the targets `langs` (MLQA's G-XLT pairs)."""

    def sets(self, split: str, langs: Iterable[str], max_examples: int | None = None,
             train: bool = False, start: int = 0) -> dict[str, Any]:
        """Return {lang: encoded `split` of lang} (`max_examples` examples from row `start`; `train`: one row per
        example)."""
        return {lang: self.get(SetKey(split, lang, max_examples, train, start=start)) for lang in langs}

    def extra_sets(self, langs: list[str]) -> dict[str, dict[str, Any]]:
        """Return {extra split: {name: encoded set}} scored beside the test sets; none for most tasks (a set with no
        data, such as a G-XLT pair without held-out questions, is left out)."""
        out = {}
        for split, names in self.extra_names(langs).items():
            sets = {name: self.get(SetKey(split, name, self.cfg.eval.max_examples)) for name in names}
            out[split] = {name: enc for name, enc in sets.items() if enc is not None}
        return out


def dev_report_keys(cfg: RunConfig) -> list[SetKey]:
    """Return the dev sets a trial's dev reports score: eval.dev_max_examples rows of each dev language from
    eval.dev_offset on."""
    return [SetKey("dev", lang, cfg.eval.dev_max_examples, start=cfg.eval.dev_offset) for lang in cfg.dev_langs]


def dev_reports(source: "DataSource", cfg: RunConfig) -> dict[str, Any]:
    """Return {lang: encoded dev set} that a trial's dev reports score (`dev_report_keys`)."""
    return {key.lang: source.get(key) for key in dev_report_keys(cfg)}


def rows(data: Any, key: SetKey) -> Any:
    """Return the rows of `data` the set `key` names (a ConfigError naming eval.dev_offset when none are left)."""
    try:
        return limit(data, key.max_examples, key.start)
    except ValueError as e:
        raise ConfigError(f"eval.dev_offset {key.start}: {key.split} {key.lang}: {e}; expected an offset below the "
                          f"set's size") from None


class TokenizingSource(DataSource):
    """Reads the raw data of `cfg` and tokenizes it with `tokenizer`."""

    def __init__(self, cfg: RunConfig, task: Task, tokenizer: Any):
        super().__init__(cfg, task)
        self.tokenizer = tokenizer

    def get(self, key: SetKey) -> Any:
        """Return the set `key`, tokenized now (None for an extra set with no data)."""
        if key.split == ENGLISH:
            return self.english_set(key)[0]
        if key.split in ("dev", "test"):
            data = self.task.load(self.cfg, key.split, [key.lang])[key.lang]
            return self.task.encode(rows(data, key), self.tokenizer, self.cfg, key.train)
        return self.task.encode_extra(self.cfg, self.tokenizer, key.split, key.lang, key.max_examples)

    def sets(self, split: str, langs: Iterable[str], max_examples: int | None = None,
             train: bool = False, start: int = 0) -> dict[str, Any]:
        """Return {lang: encoded `split` of lang}, reading the languages' files in one call."""
        langs = list(langs)
        data = self.task.load(self.cfg, split, langs)
        return {lang: self.task.encode(rows(data[lang], SetKey(split, lang, max_examples, train, start=start)),
                                       self.tokenizer, self.cfg, train)
                for lang in langs}

    def english(self) -> tuple[Any, str]:
        """Return the English training data of the config, read and tokenized."""
        return self.english_set(english_sets(self.cfg)[0])

    def english_set(self, key: SetKey) -> tuple[Any, str]:
        """Return the English training data the set `key` names (its subset size and seed), and its source."""
        cfg = dataclasses.replace(self.cfg, seed=key.seed,
                                  english=dataclasses.replace(self.cfg.english, max_examples=key.max_examples))
        data, source = self.task.english_data(cfg)
        return self.task.encode(data, self.tokenizer, cfg, True), source

    def extra_names(self, langs: list[str]) -> dict[str, list[str]]:
        """Return the task's extra sets for `langs`."""
        return self.task.extra_eval_names(self.cfg, langs)


class AssetSource(DataSource):
    """Reads the sets of a data asset fetched to the local folder `folder` (its manifest lists them)."""

    def __init__(self, cfg: RunConfig, task: Task, folder: Path, meta: dict[str, Any], location: str = ""):
        super().__init__(cfg, task)
        self.folder, self.meta, self.location = folder, meta, location or str(folder)

    def get(self, key: SetKey) -> Any:
        """Return the stored set `key` (MissingSetError naming it and the asset when the asset lacks it)."""
        path = self.folder / key.file_name
        if not path.is_file():
            raise MissingSetError(f"{self.location}: the sweep's data asset holds no set {key.file_name}; expected "
                                  f"the driver to have built it for this trial's config")
        return self.task.load_encoded(path)

    def english(self) -> tuple[Any, str]:
        """Return the stored English training set and its description."""
        key = english_sets(self.cfg)[0]
        return self.get(key), self.meta.get("english_source", {}).get(key.file_name, "a sweep data asset")

    def extra_names(self, langs: list[str]) -> dict[str, list[str]]:
        """Return the extra sets of `langs` that the asset holds (pairs with no data are absent there too)."""
        held = set(self.meta.get("sets", []))
        return {split: [n for n in names if SetKey(split, n, self.cfg.eval.max_examples).file_name in held]
                for split, names in self.task.extra_eval_names(self.cfg, langs).items()}


def build_data_asset(source: TokenizingSource, keys: Iterable[SetKey], folder: Path) -> dict[str, Any]:
    """Write every set `keys` names (that has data) into `folder`; return the asset's meta for its manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {"sets": [], "english_source": {}}
    for key in dict.fromkeys(keys):
        if key.split == ENGLISH:
            enc, meta["english_source"][key.file_name] = source.english_set(key)
        else:
            enc = source.get(key)
        if enc is None:  # an extra set with no data (e.g. a G-XLT pair with no held-out question)
            continue
        source.task.save_encoded(enc, folder / key.file_name)
        meta["sets"].append(key.file_name)
    return meta
