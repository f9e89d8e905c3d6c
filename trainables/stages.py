"""The stages of one XLA-MAML run, and `run`, which reads top to bottom through them.

    base = English stage (cached by config hash) or cfg.base_checkpoint
    meta stage: episodes from the auxiliary dev sets -> MetaLearner.step, meta.steps_per_query_lang
                meta steps for every query language
    few-shot (optional): for each target, fine-tune a copy on its dev set, then test
    evaluation: every target's test set -> DIR/metrics.json, DIR/predictions/

Every stage takes the run's `Task` (resolved once, by `run` or by the sweep trial) and never names a task.
The sweep trial (`trainables.trainable`) calls the same functions in chunks.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from xlamaml.trainables.config import RunConfig, save_config
from xlamaml.trainables.data_source import DataSource, SetKey, TokenizingSource, needed_sets
from xlamaml.trainables.english_stage import english_stage, read_stage_metrics
from xlamaml.trainables.episodes import EpisodeSampler
from xlamaml.trainables.evaluate import add_averages, evaluate_sets
from xlamaml.trainables.feature_cache import (CachedSource, FeatureTable, cached_layers, ensure_local_features,
                                      run_from_features, source_sets)
from xlamaml.trainables.errors import ExistingOutputError, NonFiniteLossError
from xlamaml.trainables.finetune import train_supervised
from xlamaml.trainables.local_files import write_text_whole
from xlamaml.trainables.maml import MetaLearner
from xlamaml.trainables.models import apply_freezing, pick_device
from xlamaml.trainables.precision import autocast_dtype, with_autocast
from xlamaml.trainables.tasks.base import Task
from xlamaml.trainables.tasks.registry import get_task

log = logging.getLogger("xlamaml")


def setup_torch(cfg: RunConfig) -> torch.device:
    """Seed everything, set the thread count and return the device the run uses."""
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    return pick_device(cfg.device)


def build_sampler(cfg: RunConfig, dev: dict) -> EpisodeSampler:
    """Return the episode sampler over the auxiliary dev sets for `cfg.method`."""
    m = cfg.meta
    return EpisodeSampler({lang: enc.uids for lang, enc in dev.items()}, method=cfg.method,
                          support_langs=m.support_langs, query_langs=m.query_langs, k=m.k, n=m.n,
                          sampling=m.sampling, parallel=m.parallel, seed=cfg.seed)


@dataclass
class MetaState:
    """Everything the meta stage carries between steps (what a trial checkpoints besides the weights)."""

    dev: dict  # the auxiliary dev sets episodes are drawn from (one row per example)
    sampler: EpisodeSampler
    learner: MetaLearner
    total: int
    query_losses: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def done(self) -> bool:
        """Return True once the meta budget is spent."""
        return self.learner.steps_done >= self.total


def start_meta(cfg: RunConfig, task: Task, model: torch.nn.Module, source: DataSource) -> MetaState:
    """Return a fresh meta stage for `model` (freezing applied: frozen weights are no fast weights)."""
    m = cfg.meta
    dev = source.sets("dev", sorted(set(m.support_langs) | set(m.query_langs)), m.max_examples, train=True)
    apply_freezing(model, m.freeze_embeddings, m.freeze_layers)
    device = next(model.parameters()).device
    loss = with_autocast(task.loss, autocast_dtype(cfg.precision, device), device)
    learner = MetaLearner(model, loss, inner_lr=m.inner_lr, inner_steps=m.inner_steps,
                          first_order=m.first_order, outer_lr=m.outer_lr, weight_decay=m.weight_decay,
                          total_steps=m.total_steps, warmup_steps=m.warmup_steps, optimizer=m.optimizer)
    return MetaState(dev, build_sampler(cfg, dev), learner, m.total_steps)


def advance_meta(cfg: RunConfig, task: Task, state: MetaState, *, count: int, device: torch.device) -> None:
    """Run up to `count` more meta steps (never past the budget), logging progress every tenth of it."""
    every = max(1, state.total // 10)
    t0 = time.perf_counter()
    for _ in range(min(count, state.total - state.learner.steps_done)):
        episodes = [state.sampler.next() for _ in range(cfg.meta.tasks_per_step)]
        batches = [(task.collate_mixed(state.dev, ep.support, device), task.collate_mixed(state.dev, ep.query, device))
                   for ep in episodes]
        state.query_losses.append(state.learner.step(batches)["query_loss"])
        step = state.learner.steps_done
        if not math.isfinite(state.query_losses[-1]):  # the weights are lost: stop before any score or checkpoint
            raise NonFiniteLossError(f"meta stage: query loss {state.query_losses[-1]} at meta step {step} of "
                                     f"{state.total}; expected finite losses (smaller meta.outer_lr or "
                                     f"meta.inner_lr than {cfg.meta.outer_lr:g} and {cfg.meta.inner_lr:g}?)")
        if step % every == 0 or step == state.total:
            rate = (state.seconds + time.perf_counter() - t0) / max(1, len(state.query_losses))
            log.info("meta step %d/%d  query loss %.4f  %.2f s/step  eta %.0f s", step, state.total,
                     float(np.mean(state.query_losses[-every:])), rate, rate * (state.total - step))
    state.seconds += time.perf_counter() - t0


def meta_summary(state: MetaState) -> dict[str, float]:
    """Return the meta stage's metrics: steps done, seconds, and the recent mean query loss."""
    recent = state.query_losses[-max(1, state.total // 10):]
    return {"meta/steps": state.learner.steps_done, "meta/total_steps": state.total, "meta/seconds": state.seconds,
            "meta/query_loss": float(np.mean(recent)) if recent else float("nan")}


def meta_stage(cfg: RunConfig, task: Task, model: torch.nn.Module, *, source: DataSource,
               device: torch.device) -> dict[str, float]:
    """Meta-train `model` in place on episodes of the auxiliary dev sets; return its summary metrics."""
    state = start_meta(cfg, task, model, source)
    log.info("meta stage: %s %s -> %s, %d steps, %s order, %s sampling, %s", cfg.method,
             "+".join(cfg.meta.support_langs), "+".join(cfg.meta.query_langs), state.total,
             "first" if cfg.meta.first_order else "second", cfg.meta.sampling,
             "parallel" if cfg.meta.parallel else "non-parallel")
    advance_meta(cfg, task, state, count=state.total, device=device)
    apply_freezing(model, False, 0)
    return meta_summary(state)


def few_shot_and_test(cfg: RunConfig, task: Task, model: torch.nn.Module, *, source: DataSource,
                      device: torch.device, test: dict, pred_dir: Path | None) -> dict[str, float]:
    """Return test metrics after fine-tuning a fresh copy of `model` on each target's dev set."""
    start = copy.deepcopy(model.state_dict())
    dev = source.sets("dev", list(test), train=True)
    metrics: dict[str, float] = {}
    fs = cfg.few_shot
    for lang, enc in test.items():
        model.load_state_dict(start)
        apply_freezing(model, fs.freeze_embeddings, fs.freeze_layers)
        train_supervised(task, model, dev[lang], epochs=fs.epochs, batch_size=fs.batch_size, lr=fs.lr,
                         seed=cfg.seed, device=device, what=f"few-shot {lang}",
                         amp=autocast_dtype(cfg.precision, device))
        metrics.update(evaluate_sets(task, model, {lang: enc}, "test", cfg, device=device, pred_dir=pred_dir))
        log.info("few-shot %s: test %s %.4f", lang, task.metrics[0], metrics[f"test/{lang}/{task.metrics[0]}"])
    model.load_state_dict(start)
    apply_freezing(model, False, 0)
    return metrics


def score_test(cfg: RunConfig, task: Task, model: torch.nn.Module, *, source: DataSource, device: torch.device,
               pred_dir: Path | None) -> dict[str, float]:
    """Return test metrics of every target with averages (after the few-shot stage when it is on), plus extras."""
    targets = cfg.eval.target_langs
    test = source.sets("test", targets, cfg.eval.max_examples)
    if cfg.few_shot.enabled:
        metrics = few_shot_and_test(cfg, task, model, source=source, device=device, test=test, pred_dir=pred_dir)
    else:
        metrics = evaluate_sets(task, model, test, "test", cfg, device=device, pred_dir=pred_dir)
    metrics = add_averages(metrics, "test", targets, aux_langs=cfg.aux_langs, names=task.metrics)
    # Task-specific extra matrices (MLQA's G-XLT: keys gxlt/<context>-<question>/<metric>).
    for split, sets in source.extra_sets(targets).items():
        metrics.update(evaluate_sets(task, model, sets, split, cfg, device=device))
    return metrics


def read_features(cfg: RunConfig, model: torch.nn.Module, source: DataSource, folder: Path) -> DataSource:
    """Return `source` reading its sets' features from the cache `folder`; `model` now runs only the layers above
    `meta.freeze_layers` (its embeddings and bottom layers are dropped: the cache holds their output)."""
    table = FeatureTable(model.config.hidden_size)
    run_from_features(model, table, cfg.meta.freeze_layers)
    log.info("feature cache: running layers %d-%d only, from %s", cfg.meta.freeze_layers,
             model.config.num_hidden_layers - 1, folder)
    return CachedSource(source, folder, table)


RUN_OUTPUTS = ("config.yaml", "metrics.json", "predictions")  # what `run` writes into its folder


def claim_output(out: Path, force: bool) -> None:
    """Make `out` ready for a run: a new or empty folder; with `force`, an earlier run's outputs there are removed
    first (nothing else in it is touched). Else raise ExistingOutputError: a run never mixes with another's files."""
    if out.exists() and not out.is_dir():
        raise ExistingOutputError(f"{out}: a file, not a folder; expected a new or empty folder for --out")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise ExistingOutputError(f"{out}: not empty; expected a new or empty folder for --out (--force replaces "
                                      f"an earlier run's {', '.join(RUN_OUTPUTS)} there)")
        for name in RUN_OUTPUTS:
            path = out / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
    out.mkdir(parents=True, exist_ok=True)


def check_inputs(cfg: RunConfig, task: Task) -> None:
    """Return None once every data file the run scores (its targets' test sets, their dev sets for the few-shot
    stage, the task's extra sets) can be read; else the reader's one-line error naming the file, before any stage
    has run (the readers keep what they read, so this costs nothing later)."""
    targets = list(cfg.eval.target_langs)
    task.load(cfg, "test", targets)
    if cfg.few_shot.enabled or cfg.eval.dev:
        task.load(cfg, "dev", targets)
    for split, names in task.extra_eval_names(cfg, targets).items():
        for name in names:
            task.extra_eval_data(cfg, split, name)


def run(cfg: RunConfig, out_dir: str | Path, force: bool = False) -> dict[str, float]:
    """Run the meta stage (unless baseline), few-shot if asked, and evaluation; return and write the metrics (into a
    new or empty `out_dir`; `force`: an earlier run's outputs there are replaced)."""
    out = Path(out_dir).resolve()
    claim_output(out, force)
    check_inputs(cfg, get_task(cfg.task))
    save_config(cfg, out / "config.yaml")
    t0 = time.perf_counter()
    device = setup_torch(cfg)
    task = get_task(cfg.task)
    base = Path(cfg.base_checkpoint).resolve() if cfg.base_checkpoint else english_stage(cfg, task)
    # Seeded again: the later stages draw the same random numbers whether the English stage ran here or was cached.
    setup_torch(cfg)
    model, tokenizer = task.load_model(cfg.model, str(base), cfg.seed)
    model.to(device)
    source: DataSource = TokenizingSource(cfg, task, tokenizer)
    layers = cached_layers(cfg)
    if layers is not None:  # built on first use in the node's cache, then read by every later run
        keys = needed_sets(cfg, task)
        if cfg.eval.dev:
            keys += [SetKey("dev", lang, cfg.eval.max_examples, start=cfg.eval.dev_offset)
                     for lang in cfg.eval.target_langs]
        folder = ensure_local_features(model, source_sets(source, keys), layers=layers, dtype=cfg.meta.feature_dtype,
                                       batch_size=cfg.eval.batch_size, device=device)
        source = read_features(cfg, model, source, folder)
    metrics: dict[str, float] = {}
    if cfg.method != "baseline":
        metrics.update(meta_stage(cfg, task, model, source=source, device=device))

    targets = cfg.eval.target_langs
    t_eval = time.perf_counter()
    pred_dir = out / "predictions" if cfg.eval.write_predictions else None
    metrics.update(score_test(cfg, task, model, source=source, device=device, pred_dir=pred_dir))
    if cfg.eval.dev:
        dev = source.sets("dev", targets, cfg.eval.max_examples, start=cfg.eval.dev_offset)
        metrics = add_averages({**metrics, **evaluate_sets(task, model, dev, "dev", cfg, device=device)},
                               "dev", targets, aux_langs=cfg.aux_langs, names=task.metrics)
    metrics["eval/seconds"] = time.perf_counter() - t_eval
    metrics["run/seconds"] = time.perf_counter() - t0
    # Which base: its folder, and (an English stage) the key naming its config and the content of its data.
    stage = read_stage_metrics(base) or {}
    provenance = {"base_checkpoint": str(base), **({"english_stage_key": stage["english_stage_key"]}
                                                   if "english_stage_key" in stage else {})}
    write_text_whole(out / "metrics.json", json.dumps({**provenance, **metrics}, indent=2))
    m = task.metrics[0]
    log.info("test %s: %s  (avg %.4f, avg excl. aux %.4f)", m,
             " ".join(f"{lang} {metrics[f'test/{lang}/{m}']:.3f}" for lang in targets),
             metrics[f"test/avg/{m}"], metrics[f"test/avg_excl_aux/{m}"])
    return metrics
