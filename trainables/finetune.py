"""Plain supervised fine-tuning: AdamW with a linear schedule over shuffled epochs (English and few-shot stages)."""

from __future__ import annotations

import logging
import math
import time

import numpy as np
import torch

from xlamaml.trainables.errors import NonFiniteLossError
from xlamaml.trainables.maml import linear_schedule
from xlamaml.trainables.models import train_mode
from xlamaml.trainables.precision import autocast
from xlamaml.trainables.tasks.base import Task

log = logging.getLogger("xlamaml")


def train_supervised(task: Task, model: torch.nn.Module, enc, *, epochs: float, batch_size: int, lr: float,
                     weight_decay: float = 0.0, warmup_ratio: float = 0.0, seed: int = 0,
                     device: torch.device | str = "cpu", what: str = "fine-tune",
                     amp: torch.dtype | None = None) -> dict[str, float]:
    """Train `model` on the encoded rows `enc` with AdamW and a linear schedule; return steps, final loss, seconds.
    `amp`: the dtype forward passes run in under autocast (None: fp32)."""
    steps_per_epoch = math.ceil(len(enc) / batch_size)
    total = max(1, math.ceil(epochs * steps_per_epoch))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    scheduler = linear_schedule(optimizer, int(warmup_ratio * total), total)
    rng = np.random.default_rng(seed)
    train_mode(model)
    losses: list[float] = []
    t0 = time.perf_counter()
    report_every = max(1, total // 10)
    order: np.ndarray = np.empty(0, dtype=np.int64)
    for step in range(total):
        pos = (step % steps_per_epoch) * batch_size
        if pos == 0:
            order = rng.permutation(len(enc))
        rows = order[pos : pos + batch_size].tolist()
        with autocast(amp, device):
            loss = task.loss(model, None, task.collate(enc, rows, device))
        loss.float().backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if not math.isfinite(losses[-1]):  # nothing after this is worth training or caching
            raise NonFiniteLossError(f"{what}: loss {losses[-1]} at step {step + 1} of {total}; expected finite "
                                     f"losses (a smaller learning rate than {lr:g}?)")
        if (step + 1) % report_every == 0 or step + 1 == total:
            rate = (time.perf_counter() - t0) / (step + 1)
            log.info("%s step %d/%d  loss %.4f  %.2f s/step  eta %.0f s", what, step + 1, total,
                     float(np.mean(losses[-report_every:])), rate, rate * (total - step - 1))
    tail = losses[-max(1, total // 10):]
    return {"steps": total, "final_loss": float(np.mean(tail)), "seconds": time.perf_counter() - t0}
