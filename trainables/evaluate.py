"""Scoring per target language, metric names and averages, for any task."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from xlamaml.trainables.config import RunConfig
from xlamaml.trainables.precision import autocast, autocast_dtype
from xlamaml.trainables.tasks.base import Task


def evaluate_sets(task: Task, model: torch.nn.Module, sets: dict, split: str, cfg: RunConfig, *,
                  device: torch.device | str, pred_dir: Path | None = None) -> dict[str, float]:
    """Return `{split}/{lang}/{metric}` for every language in `sets` (writing predictions when `pred_dir` is set)."""
    metrics = {}
    amp = autocast_dtype(cfg.precision, torch.device(device))
    for lang, enc in sets.items():
        pred_file = pred_dir / f"{split}-{lang}{task.prediction_suffix}" if pred_dir is not None else None
        with autocast(amp, device):
            scores = task.score(model, enc, cfg, device, pred_file)
        metrics.update({f"{split}/{lang}/{name}": value for name, value in scores.items()})
    return metrics


def add_averages(metrics: dict[str, float], split: str, targets: list[str], *, aux_langs: list[str],
                 names: tuple[str, ...] = ("acc",)) -> dict[str, float]:
    """Return `metrics` with `{split}/avg/{m}` and `{split}/avg_excl_aux/{m}` added for each metric name."""
    out = dict(metrics)
    for m in names:
        vals = [metrics[f"{split}/{lang}/{m}"] for lang in targets]
        rest = [metrics[f"{split}/{lang}/{m}"] for lang in targets if lang not in aux_langs]
        out[f"{split}/avg/{m}"] = float(np.mean(vals))
        # The paper's '*' average leaves out languages whose data the meta stage saw.
        out[f"{split}/avg_excl_aux/{m}"] = float(np.mean(rest)) if rest else math.nan
    return out
