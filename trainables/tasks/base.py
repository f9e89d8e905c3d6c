"""The Task interface: everything the stages need that differs between XNLI and MLQA.

A run or trial resolves its task once (`trainables.tasks.registry.get_task(cfg.task)`) and passes it down;
the stages (English, meta, few-shot, evaluation) call only these methods and never name a task.

Data flows through a task like this:

    load(cfg, split, langs)      -> {lang: datasets.Dataset}          raw examples with a parallel key `uid`
    encode(dataset, tok, cfg, train) -> encoded set                   tokenized once; rows are examples
                                                                      (train) or all windows (eval)
    collate(enc, rows, device)   -> batch of tensors                  padded to the longest row in the batch
    loss(model, params, batch)   -> scalar tensor                     `params` swapped in via functional_call
    score(model, enc, cfg, device, pred_file) -> {metric: value}      predictions written when asked
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import torch

from xlamaml.trainables.task_specs import TaskSpec

if TYPE_CHECKING:  # annotations only: the config module imports the task specs, not the tasks
    from xlamaml.trainables.config import ModelConfig, RunConfig

Batch = dict[str, torch.Tensor]


class Task(ABC):
    """One benchmark task: its data, encoding, batches, loss, scoring and model head."""

    spec: TaskSpec

    @property
    def name(self) -> str:
        """Return the task's config name ("xnli", "mlqa")."""
        return self.spec.name

    @property
    def langs(self) -> tuple[str, ...]:
        """Return every language the task's data holds."""
        return self.spec.langs

    @property
    def metrics(self) -> tuple[str, ...]:
        """Return the metrics reported per language; the first is the headline metric."""
        return self.spec.metrics

    @property
    def prediction_suffix(self) -> str:
        """Return the file suffix of a language's prediction file."""
        return self.spec.prediction_suffix

    @abstractmethod
    def load(self, cfg: RunConfig, split: str, langs: list[str]) -> dict[str, Any]:
        """Return {lang: datasets.Dataset} of `split`: "dev" (auxiliary, few-shot and dev-report data) or "test"."""

    @abstractmethod
    def english_data(self, cfg: RunConfig) -> tuple[Any, str]:
        """Return (the English stage's training dataset, a one-line description of where it came from)."""

    @abstractmethod
    def english_data_key(self, cfg: RunConfig) -> dict[str, Any]:
        """Return the config values of this task's data that the English stage's result depends on."""

    @abstractmethod
    def encode(self, dataset: Any, tokenizer: Any, cfg: RunConfig, train: bool) -> Any:
        """Return the encoded set of `dataset`; `train` sets keep one row per example (the parallel key is unique)."""

    @abstractmethod
    def encoded_from_arrays(self, arrays: Mapping[str, np.ndarray]) -> Any:
        """Return the encoded set stored as `enc.to_arrays()` (how sweep assets hold tokenized data)."""

    def save_encoded(self, enc: Any, path: Path) -> None:
        """Write the encoded set `enc` to `path` (.npz: plain arrays, loaded without pickle)."""
        with open(path, "wb") as f:
            np.savez(f, **enc.to_arrays())

    def load_encoded(self, path: Path) -> Any:
        """Return the encoded set written by `save_encoded`."""
        with np.load(path, allow_pickle=False) as f:
            return self.encoded_from_arrays({k: f[k] for k in f.files})

    @abstractmethod
    def collate(self, enc: Any, rows: Sequence[int], device: torch.device | str) -> Batch:
        """Return a padded batch of the rows `rows` of one encoded set."""

    @abstractmethod
    def collate_mixed(self, sets: Mapping[str, Any], pairs: Sequence[tuple[str, int]],
                      device: torch.device | str) -> Batch:
        """Return one padded batch of (language, row) pairs drawn from several languages' encoded sets."""

    @abstractmethod
    def loss(self, model: torch.nn.Module, params: Mapping[str, torch.Tensor] | None, batch: Batch) -> torch.Tensor:
        """Return the mean training loss of `model` on `batch` (with `params` swapped in when given)."""

    @abstractmethod
    def score(self, model: torch.nn.Module, enc: Any, cfg: RunConfig, device: torch.device | str,
              pred_file: Path | None) -> dict[str, float]:
        """Return {metric: value} of `model` on the encoded set `enc`, writing predictions to `pred_file` when set."""

    @abstractmethod
    def load_model(self, model_cfg: ModelConfig, source: str | None, seed: int, *,
                   tokenizer: bool = True, skip_bottom: int = 0) -> tuple[torch.nn.Module, Any]:
        """Return (model with this task's head, tokenizer; None when `tokenizer` is false and the model is not the
        tiny one) from `source` (a checkpoint directory) or the config; `skip_bottom` = L: the embeddings and
        bottom L layers may be left unloaded (models.load_pretrained), for a model that runs from the feature
        cache only."""

    def data_split_key(self, cfg: RunConfig) -> dict[str, Any]:
        """Return the config values, beyond data files and tokenizer, that decide which rows a split holds."""
        return {}

    def extra_eval_names(self, cfg: RunConfig, langs: list[str]) -> dict[str, list[str]]:
        """Return {split name: set names} scored beside the test sets for the targets `langs` (MLQA's G-XLT)."""
        return {}

    def extra_eval_data(self, cfg: RunConfig, split: str, name: str) -> Any:
        """Return the raw rows of the extra set `name` of `split` (what `encode_extra` encodes; the planner counts
        them)."""
        raise KeyError(f"task {self.name} has no extra split {split!r}")

    def encode_extra(self, cfg: RunConfig, tokenizer: Any, split: str, name: str,
                     max_examples: int | None) -> Any | None:
        """Return the encoded extra set `name` of `split` (first `max_examples` examples), or None if it is empty."""
        raise KeyError(f"task {self.name} has no extra split {split!r}")
