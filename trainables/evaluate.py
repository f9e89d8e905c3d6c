"""Scoring per target language, metric names, averages and XTREME-style prediction files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from trainables.tasks.nli import LABELS, Encoded, accuracy, predict


def limit(dataset, max_examples: int | None):
    """Return the first `max_examples` rows of a dataset (all rows when None)."""
    if max_examples is None or max_examples >= len(dataset):
        return dataset
    # The first rows, not a random draw: XNLI is parallel, so every language scores the same pairs.
    return dataset.select(range(max_examples))


def write_predictions(preds: np.ndarray, path: Path) -> None:
    """Write one label word per line in the data's row order (the XTREME prediction format)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(LABELS[p] + "\n" for p in preds), encoding="utf-8")


def evaluate_sets(model: torch.nn.Module, sets: dict[str, Encoded], split: str, batch_size: int,
                  device: torch.device | str, pred_dir: Path | None = None) -> dict[str, float]:
    """Return `{split}/{lang}/acc` for every language in `sets` (and write predictions when `pred_dir` is set)."""
    metrics = {}
    for lang, enc in sets.items():
        preds = predict(model, enc, batch_size, device)
        metrics[f"{split}/{lang}/acc"] = accuracy(preds, enc.labels)
        if pred_dir is not None:
            write_predictions(preds, pred_dir / f"{split}-{lang}.tsv")
    return metrics


def add_averages(metrics: dict[str, float], split: str, targets: list[str], aux_langs: list[str],
                 metric: str = "acc") -> dict[str, float]:
    """Return `metrics` with `{split}/avg/{metric}` and `{split}/avg_excl_aux/{metric}` added."""
    vals = [metrics[f"{split}/{lang}/{metric}"] for lang in targets]
    rest = [metrics[f"{split}/{lang}/{metric}"] for lang in targets if lang not in aux_langs]
    out = dict(metrics)
    out[f"{split}/avg/{metric}"] = float(np.mean(vals))
    # The paper's '*' average leaves out languages whose data the meta stage saw.
    out[f"{split}/avg_excl_aux/{metric}"] = float(np.mean(rest)) if rest else math.nan
    return out
