"""The English stage: fine-tune the encoder on the English task once, cached by a hash of what it depends on.

Its output directory (a `save_pretrained` checkpoint plus `config.yaml` and `metrics.json`) is named by
`english_stage_key(cfg, task)`, so a second call with the same config finds it and trains nothing; every trial
of a sweep starts from it.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from xlamaml.trainables.config import RunConfig, config_from_dict, save_config
from xlamaml.trainables.data_source import DataSource, TokenizingSource, english_sets
from xlamaml.trainables.embedded import converter_key
from xlamaml.trainables.errors import ExistingOutputError
from xlamaml.trainables.evaluate import evaluate_sets
from xlamaml.trainables.feature_cache import (CachedSource, FeatureTable, english_cached_layers, ensure_local_features,
                                      run_from_features, source_sets)
from xlamaml.trainables.local_files import exclusive_lock
from xlamaml.trainables.finetune import train_supervised
from xlamaml.trainables.models import apply_freezing, pick_device
from xlamaml.trainables.paths import cache_dir
from xlamaml.trainables.precision import autocast_dtype
from xlamaml.trainables.tasks.base import Task
from xlamaml.trainables.tasks.registry import get_task

log = logging.getLogger("xlamaml")


def _frame_digest(ds: Any) -> str:
    """Return the sha256 of a dataset's rows (its columns' values, in order)."""
    frame = ds.to_pandas() if hasattr(ds, "to_pandas") else pd.DataFrame(ds)
    frame = frame[sorted(frame.columns)].astype(str)
    return hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).values.tobytes()).hexdigest()


@functools.lru_cache(maxsize=32)
def _english_data_digest(task_name: str, values: str) -> str:
    cfg = config_from_dict(json.loads(values))
    task = get_task(task_name)
    train, _ = task.english_data(cfg)
    parts = [_frame_digest(train)] + [_frame_digest(task.load(cfg, split, ["en"])["en"]) for split in ("dev", "test")]
    return hashlib.sha256("".join(parts).encode()).hexdigest()[:16]


def english_data_digest(cfg: RunConfig, task: Task) -> str:
    """Return a short hash of the content of the English stage's data: the rows it trains on and the en dev and
    test rows that score it (read through the task's own readers, so a relabelled file changes it)."""
    return _english_data_digest(task.name, json.dumps(cfg.to_dict(), sort_keys=True))


def english_stage_key(cfg: RunConfig, task: Task, content: bool = True) -> str:
    """Return a short hash of everything the English stage's result depends on: its config and (`content`) what its
    data holds (english_data_digest); without `content`, the config's part alone."""
    relevant = {
        "task": cfg.task,
        "seed": cfg.seed,
        "model": dataclasses.asdict(cfg.model),
        # dev_max_examples only sizes the scoring after training: changing it must not retrain. freeze_layers joins
        # the key only when set, so the keys of stages that freeze no layer stay as they were.
        "english": {k: v for k, v in dataclasses.asdict(cfg.english).items()
                    if k != "dev_max_examples" and (k != "freeze_layers" or v)},
        "english_data": cfg.data.english,
        **task.english_data_key(cfg),
        **converter_key(cfg.model.name),
    }
    if cfg.precision != "fp32":  # bf16 forward passes train other weights (fp32 keys stay as they were)
        relevant["precision"] = cfg.precision
    if content:  # the data's own content: the same file names can hold other rows
        relevant["english_data_sha256"] = english_data_digest(cfg, task)
    if english_cached_layers(cfg):  # trained on stored features: their precision matters
        relevant["feature_dtype"] = cfg.meta.feature_dtype
    blob = json.dumps(relevant, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def english_stage_dir(cfg: RunConfig, task: Task, key: str | None = None) -> Path:
    """Return the cache directory the English stage of `cfg` (key `key`, computed when None) is written to."""
    slug = Path(cfg.model.name).name.replace("/", "--") or "model"
    return cache_dir() / "base" / f"{cfg.task}-{slug}-{key or english_stage_key(cfg, task)}"


def read_stage_metrics(out: Path) -> dict | None:
    """Return the metrics.json of a finished stage directory, or None when there is none."""
    path = out / "metrics.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def english_stage(cfg: RunConfig, task: Task, out_dir: str | Path | None = None,
                  source: DataSource | None = None, key: str | None = None) -> Path:
    """Return a base checkpoint directory for `cfg`: found in the cache, or trained on English and saved.

    The data comes from `source` (a sweep's data asset), else it is read and tokenized here; `key` is the stage's
    english_stage_key (computed here when None; a worker without the data files is given the driver's)."""
    key = key or english_stage_key(cfg, task)
    out = Path(out_dir).resolve() if out_dir else english_stage_dir(cfg, task, key)
    # One process trains, others with the same key wait for it and reuse its result.
    with exclusive_lock(cache_dir() / "locks" / f"english-{key}.lock"):
        return _english_stage(cfg, task, key, out, source)


def _english_stage(cfg: RunConfig, task: Task, key: str, out: Path, source: DataSource | None) -> Path:
    """Return `out` holding the English stage of `cfg` (key `key`): found there, or trained and saved."""
    done = read_stage_metrics(out)
    if done is not None:
        if done.get("english_stage_key") != key:
            raise ExistingOutputError(f"{out}: holds an English stage of another config (key "
                                      f"{done.get('english_stage_key')}, this config {key}); choose another output "
                                      f"directory")
        log.info("English stage: reusing %s", out)
        return out

    device = pick_device(cfg.device)
    torch.manual_seed(cfg.seed)
    model, tokenizer = task.load_model(cfg.model, None, cfg.seed)
    model.to(device)
    trainable = apply_freezing(model, cfg.english.freeze_embeddings, cfg.english.freeze_layers)
    source = source or TokenizingSource(cfg, task, tokenizer)
    restore = None
    layers = english_cached_layers(cfg)
    if layers:  # the frozen bottom is the pretrained model's: its features serve this stage and every later one
        folder = ensure_local_features(model, source_sets(source, english_sets(cfg)), layers=layers,
                                       dtype=cfg.meta.feature_dtype, batch_size=cfg.eval.batch_size, device=device)
        table = FeatureTable(model.config.hidden_size)
        restore = run_from_features(model, table, layers)
        source = CachedSource(source, folder, table)
        log.info("English stage: layers %d-%d only, the bottom read from %s", layers,
                 model.config.num_hidden_layers - 1, folder)
    train, origin = source.english()
    log.info("English stage: %d examples from %s, %d trainable parameters, %s epochs", len(train), origin,
             trainable, cfg.english.epochs)
    e = cfg.english
    stats = train_supervised(task, model, train, epochs=e.epochs,
                             batch_size=e.batch_size, lr=e.lr, weight_decay=e.weight_decay,
                             warmup_ratio=e.warmup_ratio, seed=cfg.seed, device=device, what="English stage",
                             amp=autocast_dtype(cfg.precision, device))
    apply_freezing(model, False, 0)  # later stages decide their own freezing

    metrics: dict = {"english_stage_key": key, "train_source": origin, "train_examples": len(train),
                     "eval_max_examples": cfg.english.dev_max_examples,
                     **{f"train/{k}": v for k, v in stats.items()}}
    for scored in english_sets(cfg)[1:]:  # en dev and test
        metrics.update(evaluate_sets(task, model, {"en": source.get(scored)}, scored.split, cfg, device=device))
    m = task.metrics[0]
    log.info("English stage: en dev %s %.4f, test %s %.4f", m, metrics[f"dev/en/{m}"], m, metrics[f"test/en/{m}"])
    if restore is not None:
        restore()  # the checkpoint holds the whole model

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
