"""Measuring, on this machine, one real meta step and one evaluated item of a sweep's model (`xlamaml plan
--measure`): the seconds the plan's compute multiplies."""

from __future__ import annotations

import dataclasses
import platform
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from xlamaml.search.spec import Sweep
from xlamaml.trainables.data_source import SetKey, TokenizingSource
from xlamaml.trainables.errors import ConfigError
from xlamaml.trainables.evaluate import evaluate_sets
from xlamaml.trainables.feature_cache import build_features, cached_layers, source_sets
from xlamaml.trainables.precision import autocast_dtype
from xlamaml.trainables.stages import advance_meta, read_features, setup_torch, start_meta


@dataclass
class Measured:
    """Seconds of one meta step and of one evaluated item, measured on this machine, and what they ran on."""

    step_seconds: float
    item_seconds: float
    hardware: str
    precision: str
    steps: int
    items: int


def hardware(device: Any, threads: int) -> str:
    """Return the machine a measurement ran on: the GPU's name, or the CPU's model and the threads used."""
    if device.type == "cuda":
        return f"GPU {torch.cuda.get_device_name(device)}"
    name = platform.processor() or "CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"CPU {name}, {threads} thread(s)"


def measure(sw: Sweep, steps: int = 3, warmup: int = 2) -> Measured:
    """Return the seconds of one real meta step and of one evaluated item of the sweep's model on this machine: the
    first non-baseline trial's config with a pool of at most 256 items per language, the pretrained model in place
    of the English stage's (same shape), frozen layers read from a feature cache built for the measured sets, as a
    trial runs (threads: sweep.cpus_per_trial)."""
    s = sw.sweep
    if not sw.cells:
        raise ConfigError("plan --measure: the sweep has no meta trial to measure (only the baseline)")
    cfg = sw.trial_config(sw.cells[0], s.seeds[0], {})
    m = cfg.meta
    pool = min(m.max_examples or 256, 256)
    cfg = dataclasses.replace(cfg, threads=max(1, int(s.cpus_per_trial)), base_checkpoint=None, assets=None,
                              meta=dataclasses.replace(m, max_examples=pool, steps_per_query_lang=10**6))
    device = setup_torch(cfg)
    task = sw.task
    model, tokenizer = task.load_model(cfg.model, None, cfg.seed)
    model.to(device)
    source = TokenizingSource(cfg, task, tokenizer)
    lang = cfg.dev_langs[0]
    n_eval = 2 * cfg.eval.batch_size
    eval_key = SetKey("dev", lang, n_eval)
    with tempfile.TemporaryDirectory(prefix="xlamaml-plan-") as tmp:
        if cached_layers(cfg) is not None:
            keys = [SetKey("dev", l, pool, True) for l in sorted(set(m.support_langs) | set(m.query_langs))]
            build_features(model, source_sets(source, keys + [eval_key]), Path(tmp), layers=m.freeze_layers,
                           dtype=m.feature_dtype, batch_size=cfg.eval.batch_size, device=device)
            source = read_features(cfg, model, source, Path(tmp))
        state = start_meta(cfg, task, model, source)
        advance_meta(cfg, task, state, count=warmup, device=device)  # optimizer state, kernels
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            advance_meta(cfg, task, state, count=1, device=device)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        sets = {lang: source.get(eval_key)}
        evaluate_sets(task, model, sets, "dev", cfg, device=device)  # warm-up
        t0 = time.perf_counter()
        evaluate_sets(task, model, sets, "dev", cfg, device=device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        items = len(sets[lang].uids)  # examples (a QA example may span several windows)
        item_seconds = (time.perf_counter() - t0) / max(1, items)
    amp = autocast_dtype(cfg.precision, device)
    return Measured(statistics.median(times), item_seconds, hardware(device, torch.get_num_threads()),
                    "bf16" if amp is not None else "fp32", steps, items)
