"""The XNLI task: sentence-pair classification on XNLI, with MNLI (or XNLI en dev offline) for the English stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from xlamaml.trainables.config import ModelConfig, RunConfig
from xlamaml.trainables.data.english import load_english_nli
from xlamaml.trainables.data.xnli import load_xnli
from xlamaml.trainables.models import load_classifier
from xlamaml.trainables.tasks.base import Task
from xlamaml.trainables.tasks.nli import NUM_LABELS, Encoded, accuracy, collate, collate_mixed, encode_nli, loss_fn, predict, \
    write_predictions
from xlamaml.trainables.tasks.outcomes import outcome_path, write_outcomes
from xlamaml.trainables.task_specs import TASK_SPECS


class XNLITask(Task):
    """XNLI: accuracy per language; predictions one label word per line."""

    spec = TASK_SPECS["xnli"]

    def load(self, cfg: RunConfig, split: str, langs: list[str]) -> dict[str, Any]:
        """Return {lang: XNLI dataset of `split`}."""
        return load_xnli(cfg.data.xnli, split, langs, cfg.data.dir)

    def english_data(self, cfg: RunConfig) -> tuple[Any, str]:
        """Return (English NLI training pairs, where they came from)."""
        return load_english_nli(cfg.data.english, cfg.data.dir, cfg.english.max_examples, cfg.seed)

    def english_data_key(self, cfg: RunConfig) -> dict[str, Any]:
        """Return the XNLI source (offline, XNLI en dev is the English data)."""
        return {"task_data": cfg.data.xnli}

    def encode(self, dataset: Any, tokenizer: Any, cfg: RunConfig, train: bool) -> Encoded:
        """Return the tokenized pairs (one row per pair, train or not)."""
        return encode_nli(dataset, tokenizer, cfg.model.max_length)

    def encoded_from_arrays(self, arrays: Mapping[str, np.ndarray]) -> Encoded:
        """Return the stored pairs."""
        return Encoded.from_arrays(arrays)

    # The generic pair classification functions serve as this task's batches and loss as they are.
    collate = staticmethod(collate)
    collate_mixed = staticmethod(collate_mixed)
    loss = staticmethod(loss_fn)

    def score(self, model: torch.nn.Module, enc: Encoded, cfg: RunConfig, device: torch.device | str,
              pred_file: Path | None) -> dict[str, float]:
        """Return {"acc": accuracy}, writing the predicted labels and per-pair outcomes when `pred_file` is set."""
        preds = predict(model, enc, cfg.eval.batch_size, device)
        if pred_file is not None:
            write_predictions(preds, pred_file)
            write_outcomes(outcome_path(pred_file), enc.uids, {"acc": preds == enc.labels})
        return {"acc": accuracy(preds, enc.labels)}

    def load_model(self, model_cfg: ModelConfig, source: str | None, seed: int, *,
                   tokenizer: bool = True, skip_bottom: int = 0) -> tuple[torch.nn.Module, Any]:
        """Return (3-way sequence classifier, tokenizer or None)."""
        return load_classifier(model_cfg, NUM_LABELS, source=source, seed=seed, tokenizer=tokenizer,
                               skip_bottom=skip_bottom)
