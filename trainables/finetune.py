"""Plain supervised fine-tuning, and the English stage built on it.

The English stage's output directory is named by a hash of everything it depends on
(`english_stage_key`), so a second call with the same config finds it and trains nothing.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from trainables.config import RunConfig, english_stage_key, save_config
from trainables.maml import linear_schedule
from trainables.models import apply_freezing, pick_device
from trainables.paths import cache_dir
from trainables.tasks import Task, get_task

log = logging.getLogger("xlamaml")


def train_supervised(task: Task, model: torch.nn.Module, enc, epochs: float, batch_size: int, lr: float,
                     weight_decay: float = 0.0, warmup_ratio: float = 0.0, seed: int = 0,
                     device: torch.device | str = "cpu", what: str = "fine-tune") -> dict[str, float]:
    """Train `model` on the encoded rows `enc` with AdamW and a linear schedule; return steps, final loss, seconds."""
    steps_per_epoch = math.ceil(len(enc) / batch_size)
    total = max(1, math.ceil(epochs * steps_per_epoch))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    scheduler = linear_schedule(optimizer, int(warmup_ratio * total), total)
    rng = np.random.default_rng(seed)
    model.train()
    losses: list[float] = []
    t0 = time.perf_counter()
    report_every = max(1, total // 10)
    order: np.ndarray = np.empty(0, dtype=np.int64)
    for step in range(total):
        pos = (step % steps_per_epoch) * batch_size
        if pos == 0:
            order = rng.permutation(len(enc))
        rows = order[pos : pos + batch_size].tolist()
        loss = task.loss_fn(model, None, task.collate(enc, rows, device))
        loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if (step + 1) % report_every == 0 or step + 1 == total:
            rate = (time.perf_counter() - t0) / (step + 1)
            log.info("%s step %d/%d  loss %.4f  %.2f s/step  eta %.0f s", what, step + 1, total,
                     float(np.mean(losses[-report_every:])), rate, rate * (total - step - 1))
    tail = losses[-max(1, total // 10):]
    return {"steps": total, "final_loss": float(np.mean(tail)), "seconds": time.perf_counter() - t0}


def english_stage_dir(cfg: RunConfig) -> Path:
    """Return the cache directory the English stage of `cfg` is written to."""
    slug = Path(cfg.model.name).name.replace("/", "--") or "model"
    return cache_dir() / "base" / f"{cfg.task}-{slug}-{english_stage_key(cfg)}"


def read_stage_metrics(out: Path) -> dict | None:
    """Return the metrics.json of a finished stage directory, or None when there is none."""
    path = out / "metrics.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def english_stage(cfg: RunConfig, out_dir: str | Path | None = None) -> Path:
    """Return a base checkpoint directory for `cfg`: found in the cache, or trained on English and saved."""
    from trainables.evaluate import evaluate_sets, limit

    key = english_stage_key(cfg)
    out = Path(out_dir).resolve() if out_dir else english_stage_dir(cfg)
    done = read_stage_metrics(out)
    if done is not None:
        if done.get("english_stage_key") != key:
            raise FileExistsError(f"{out}: holds an English stage of another config (key "
                                  f"{done.get('english_stage_key')}, this config {key}); choose another output directory")
        log.info("English stage: reusing %s", out)
        return out

    device = pick_device(cfg.device)
    torch.manual_seed(cfg.seed)
    task = get_task(cfg.task)
    model, tokenizer = task.load_model(cfg.model, None, cfg.seed)
    model.to(device)
    trainable = apply_freezing(model, cfg.english.freeze_embeddings, 0)
    train, source = task.english(cfg)
    log.info("English stage: %d examples from %s, %d trainable parameters, %s epochs", len(train), source,
             trainable, cfg.english.epochs)
    stats = train_supervised(task, model, task.encode(train, tokenizer, cfg, True), cfg.english.epochs,
                             cfg.english.batch_size, cfg.english.lr, cfg.english.weight_decay,
                             cfg.english.warmup_ratio, cfg.seed, device, what="English stage")
    apply_freezing(model, False, 0)  # later stages decide their own freezing

    metrics: dict = {"english_stage_key": key, "train_source": source, "train_examples": len(train),
                     "eval_max_examples": cfg.english.dev_max_examples,
                     **{f"train/{k}": v for k, v in stats.items()}}
    for split in ("dev", "test"):
        data = task.load(cfg, split, ["en"])["en"]
        enc = task.encode(limit(data, cfg.english.dev_max_examples), tokenizer, cfg, False)
        metrics.update(evaluate_sets(task, model, {"en": enc}, split, cfg, device))
    m = task.metrics[0]
    log.info("English stage: en dev %s %.4f, test %s %.4f", m, metrics[f"dev/en/{m}"], m, metrics[f"test/en/{m}"])

    # Write next to the destination and rename, so an interrupted stage never looks finished.
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        save_config(cfg, tmp / "config.yaml")
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2))
        if out.exists():
            shutil.rmtree(out)  # an unfinished earlier attempt: it has no metrics.json
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("English stage: saved %s", out)
    return out
