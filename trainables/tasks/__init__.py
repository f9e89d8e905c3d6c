"""Tasks: what differs between XNLI (sentence-pair classification) and MLQA (extractive QA).

A `Task` is a record of plain functions; the stages (English, meta, few-shot, evaluation) call them
and never name a task themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch


@dataclass(frozen=True)
class Task:
    name: str
    langs: tuple[str, ...]
    metrics: tuple[str, ...]  # reported per language; the first is the headline metric
    # load(cfg, split, langs) -> {lang: datasets.Dataset}; split is "dev" (auxiliary and few-shot
    # data, dev reports) or "test" (final scores)
    load: Callable[[Any, str, list[str]], dict[str, Any]]
    # english(cfg) -> (dataset, description): the English stage's training data
    english: Callable[[Any], tuple[Any, str]]
    # encode(dataset, tokenizer, cfg, train) -> an encoded set whose rows episodes and batches index;
    # `train` sets keep one row per example (the parallel key is unique), eval sets keep all windows
    encode: Callable[[Any, Any, Any, bool], Any]
    collate: Callable[[Any, Sequence[int], Any], dict[str, torch.Tensor]]
    collate_mixed: Callable[[Mapping[str, Any], Sequence[tuple[str, int]], Any], dict[str, torch.Tensor]]
    loss_fn: Callable[[torch.nn.Module, Mapping[str, torch.Tensor] | None, dict[str, torch.Tensor]], torch.Tensor]
    # score(model, encoded, cfg, device, pred_file) -> {metric: value}; writes predictions when asked
    score: Callable[[torch.nn.Module, Any, Any, Any, Path | None], dict[str, float]]
    # load_model(model_cfg, source, seed) -> (model with this task's head, tokenizer)
    load_model: Callable[[Any, str | None, int], tuple[torch.nn.Module, Any]]
    prediction_suffix: str = ".tsv"


def get_task(name: str) -> Task:
    """Return the Task called `name` ("xnli" or "mlqa")."""
    if name == "xnli":
        from trainables.tasks.nli import XNLI

        return XNLI
    if name == "mlqa":
        from trainables.tasks.qa import MLQA

        return MLQA
    raise ValueError(f"config key task: expected xnli or mlqa; got {name!r}")
