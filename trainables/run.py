"""One XLA-MAML run, top to bottom: base checkpoint, meta stage, optional few-shot stage, evaluation.

    base = English stage (cached by config hash) or cfg.base_checkpoint
    meta stage: episodes from the auxiliary dev sets -> MetaLearner.step, meta.steps_per_query_lang
                meta steps for every query language
    few-shot (optional): for each target, fine-tune a copy on its dev set, then test
    evaluation: accuracy on every target's test set -> DIR/metrics.json, DIR/predictions/
"""

from __future__ import annotations

import copy
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from trainables.config import RunConfig, save_config
from trainables.data.xnli import load_xnli
from trainables.episodes import EpisodeSampler
from trainables.evaluate import add_averages, evaluate_sets, limit
from trainables.finetune import english_stage, train_supervised
from trainables.maml import MetaLearner
from trainables.models import apply_freezing, load_classifier, pick_device
from trainables.tasks.nli import NUM_LABELS, Encoded, collate_mixed, encode_nli, loss_fn

log = logging.getLogger("xlamaml")


def setup_torch(cfg: RunConfig) -> torch.device:
    """Seed everything, set the thread count and return the device the run uses."""
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    return pick_device(cfg.device)


def encode_split(cfg: RunConfig, tokenizer, split: str, langs: list[str],
                 max_examples: int | None = None) -> dict[str, Encoded]:
    """Return the tokenized XNLI `split` of each language in `langs` (first `max_examples` rows)."""
    data = load_xnli(cfg.data.xnli, split, langs, cfg.data.dir)
    return {lang: encode_nli(limit(data[lang], max_examples), tokenizer, cfg.model.max_length) for lang in langs}


def build_sampler(cfg: RunConfig, dev: dict[str, Encoded]) -> EpisodeSampler:
    """Return the episode sampler over the auxiliary dev sets for `cfg.method`."""
    m = cfg.meta
    return EpisodeSampler({lang: enc.uids for lang, enc in dev.items()}, cfg.method, m.support_langs,
                          m.query_langs, m.k, m.n, m.sampling, m.parallel, cfg.seed)


def build_learner(cfg: RunConfig, model: torch.nn.Module) -> MetaLearner:
    """Return the MetaLearner for `cfg.meta` (freezing applied first: frozen weights are no fast weights)."""
    m = cfg.meta
    apply_freezing(model, m.freeze_embeddings, m.freeze_layers)
    return MetaLearner(model, loss_fn, m.inner_lr, m.inner_steps, m.first_order, m.outer_lr, m.weight_decay,
                       total_meta_steps(cfg), m.warmup_steps, m.optimizer)


def total_meta_steps(cfg: RunConfig) -> int:
    """Return the meta stage's budget: steps per query language times the number of query languages."""
    return cfg.meta.steps_per_query_lang * len(cfg.meta.query_langs)


def meta_stage(cfg: RunConfig, model: torch.nn.Module, tokenizer, device: torch.device) -> dict[str, float]:
    """Meta-train `model` in place on episodes of the auxiliary dev sets; return its summary metrics."""
    langs = sorted(set(cfg.meta.support_langs) | set(cfg.meta.query_langs))
    dev = encode_split(cfg, tokenizer, "dev", langs)
    sampler = build_sampler(cfg, dev)
    learner = build_learner(cfg, model)
    total = total_meta_steps(cfg)
    log.info("meta stage: %s %s -> %s, %d steps, %s order, %s sampling, %s", cfg.method,
             "+".join(cfg.meta.support_langs), "+".join(cfg.meta.query_langs), total,
             "first" if cfg.meta.first_order else "second", cfg.meta.sampling,
             "parallel" if cfg.meta.parallel else "non-parallel")
    t0 = time.perf_counter()
    every = max(1, total // 10)
    recent: list[float] = []
    for step in range(total):
        episodes = [sampler.next() for _ in range(cfg.meta.tasks_per_step)]
        batches = [(collate_mixed(dev, ep.support, device), collate_mixed(dev, ep.query, device)) for ep in episodes]
        out = learner.step(batches)
        recent.append(out["query_loss"])
        if (step + 1) % every == 0 or step + 1 == total:
            rate = (time.perf_counter() - t0) / (step + 1)
            log.info("meta step %d/%d  query loss %.4f  %.2f s/step  eta %.0f s", step + 1, total,
                     float(np.mean(recent[-every:])), rate, rate * (total - step - 1))
    apply_freezing(model, False, 0)
    return {"meta/steps": total, "meta/seconds": time.perf_counter() - t0,
            "meta/query_loss": float(np.mean(recent[-every:])) if recent else float("nan")}


def few_shot_and_test(cfg: RunConfig, model: torch.nn.Module, tokenizer, device: torch.device,
                      test: dict[str, Encoded], pred_dir: Path | None) -> dict[str, float]:
    """Return test metrics after fine-tuning a fresh copy of `model` on each target's dev set."""
    start = copy.deepcopy(model.state_dict())
    dev = encode_split(cfg, tokenizer, "dev", list(test))
    metrics: dict[str, float] = {}
    for lang, enc in test.items():
        model.load_state_dict(start)
        apply_freezing(model, cfg.few_shot.freeze_embeddings, 0)
        fs = cfg.few_shot
        train_supervised(model, dev[lang], fs.epochs, fs.batch_size, fs.lr, seed=cfg.seed, device=device,
                         what=f"few-shot {lang}")
        metrics.update(evaluate_sets(model, {lang: enc}, "test", cfg.eval.batch_size, device, pred_dir))
        log.info("few-shot %s: test acc %.4f", lang, metrics[f"test/{lang}/acc"])
    model.load_state_dict(start)
    apply_freezing(model, False, 0)
    return metrics


def run(cfg: RunConfig, out_dir: str | Path) -> dict[str, float]:
    """Run the meta stage (unless baseline), few-shot if asked, and evaluation; return and write the metrics."""
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    t0 = time.perf_counter()
    device = setup_torch(cfg)
    base = Path(cfg.base_checkpoint).resolve() if cfg.base_checkpoint else english_stage(cfg)
    model, tokenizer = load_classifier(cfg.model, NUM_LABELS, source=str(base), seed=cfg.seed)
    model.to(device)
    metrics: dict[str, float] = {}
    if cfg.method != "baseline":
        metrics.update(meta_stage(cfg, model, tokenizer, device))

    targets = cfg.eval.target_langs
    t_eval = time.perf_counter()
    test = encode_split(cfg, tokenizer, "test", targets, cfg.eval.max_examples)
    pred_dir = out / "predictions" if cfg.eval.write_predictions else None
    if cfg.few_shot.enabled:
        metrics.update(few_shot_and_test(cfg, model, tokenizer, device, test, pred_dir))
    else:
        metrics.update(evaluate_sets(model, test, "test", cfg.eval.batch_size, device, pred_dir))
    metrics = add_averages(metrics, "test", targets, cfg.aux_langs)
    if cfg.eval.dev:
        dev = encode_split(cfg, tokenizer, "dev", targets, cfg.eval.max_examples)
        metrics = add_averages({**metrics, **evaluate_sets(model, dev, "dev", cfg.eval.batch_size, device)},
                               "dev", targets, cfg.aux_langs)
    metrics["eval/seconds"] = time.perf_counter() - t_eval
    metrics["run/seconds"] = time.perf_counter() - t0
    (out / "metrics.json").write_text(json.dumps({"base_checkpoint": str(base), **metrics}, indent=2))
    log.info("test accuracy: %s  (avg %.4f, avg excl. aux %.4f)",
             " ".join(f"{lang} {metrics[f'test/{lang}/acc']:.3f}" for lang in targets),
             metrics["test/avg/acc"], metrics["test/avg_excl_aux/acc"])
    return metrics
