"""What a sweep will run, counted before anything runs: trials, meta steps and evaluated items, for grid and adaptive.

The counting rules (the sweep driver runs exactly these; `xlamaml plan` prints them, search/plan/planner.py adds storage
and compute):

- Cells: the non-baseline assignments (times the combinations of `sweep.grid` axes, if any). Baseline trials: the
  baseline's grid cells (`Sweep.grid_cells`: once when seedless, else once per seed), times the grid axes.
- A trial's meta steps are its own `meta.total_steps` (steps per query language x its query languages); it reports
  every `meta.steps_per_report` steps (`search.cells.reports_per_trial`); a baseline trial reports once.
- Dev items of one evaluation: per dev language (eval.dev_langs, else the targets), min(eval.dev_max_examples, the
  items that language's dev split holds). Test items of a finished trial: per target min(eval.max_examples, its test
  items), plus the task's extra sets (MLQA G-XLT pairs) capped the same way.
- grid: every trial runs its whole budget; it evaluates dev at every report and test at the end.
- adaptive (`Sweep.rungs`, search.adaptive.schedule): rung r holds cells_r cells x seeds_r seeds ("trial runs"); a cell stopped after
  rung r ran seeds_r trials of steps_r meta steps each; dev is scored only at the end of each rung, on that rung's
  first dev items; only the last rung's trials (and the baseline) score test. With `sweep.adaptive.bound` set a
  confidence bound may stop more cells, so the adaptive counts are upper bounds.

Item counts come from the real data files under `data.dir` (`DataSizes`); a set whose files are absent (MLQA's
official test split, a hub source) is counted from the published sizes in `KNOWN_SIZES` and marked as estimated.
No torch here; the task's data loader counts the items.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from dataclasses import dataclass
from typing import Any, Callable, Optional

from xlamaml.search.schedule import rung_steps
from xlamaml.search.cells import reports_per_trial
from xlamaml.search.spec import Sweep
from xlamaml.trainables.config import RunConfig
from xlamaml.trainables.errors import ConfigError, XlamamlError
from xlamaml.trainables.tasks.registry import get_task

PLAN_MODES = ("grid", "adaptive")

# Published sizes, used only when a split's files are absent (then the plan says "estimated"):
# XNLI 1.0: 2,490 dev and 5,010 test pairs per language (Conneau et al. 2018);
# MLQA v1: dev and test questions per language (Lewis et al. 2020, Table 3). A G-XLT pair (context c, question q) is
# estimated as min(c's, q's questions) (MLQA's instances are parallel across languages), a held-out part as
# qa_heldout_fraction of the dev questions.
KNOWN_SIZES: dict[str, dict[str, dict[str, int]]] = {
    "xnli": {"dev": {}, "test": {}},  # every language: see XNLI_SIZES
    "mlqa": {"dev": {"en": 1148, "de": 512, "es": 500, "ar": 517, "zh": 504, "vi": 511, "hi": 507},
             "test": {"en": 11590, "de": 4517, "es": 5253, "ar": 5335, "zh": 5137, "vi": 5495, "hi": 4918}},
}
XNLI_SIZES = {"dev": 2490, "test": 5010}

# available(cfg, split, name) -> (items the set holds, whether that number is an estimate)
SizeFn = Callable[[RunConfig, str, str], "tuple[int, bool]"]


@dataclass(frozen=True)
class RungCount:
    """One adaptive rung as planned: the meta steps its trials reach, its dev items per language (the cap), its
    seeds, the cells entering it and its trial runs (cells x seeds)."""

    index: int
    steps: int
    dev_items: int
    seeds: int
    cells: int
    trial_runs: int


@dataclass(frozen=True)
class PlanCounts:
    """What one mode of a sweep runs (`upper_bound`: adaptive with a confidence bound, the counts are at most)."""

    mode: str
    cells: int  # non-baseline cells (assignments x grid-axis combinations)
    baseline_trials: int
    trials: int  # distinct trials (trial folders)
    trial_runs: int  # grid: = trials; adaptive: every (rung, cell, seed) a trial ran in, plus the baseline
    finished_trials: int  # trials that run their full budget and score test
    meta_steps: int
    dev_items: int  # dev items evaluated, all trials and reports
    test_items: int  # test items evaluated (targets and extra sets)
    upper_bound: bool = False
    rungs: tuple[RungCount, ...] = ()
    estimated: tuple[str, ...] = ()  # sets counted from KNOWN_SIZES (their data files absent)
    notes: tuple[str, ...] = ()

    @property
    def evaluated_items(self) -> int:
        """Return dev plus test items."""
        return self.dev_items + self.test_items

    def to_dict(self) -> dict[str, Any]:
        """Return the counts as plain values (JSON-ready)."""
        out = dataclasses.asdict(self)
        out["rungs"] = [dataclasses.asdict(r) for r in self.rungs]
        out["estimated"], out["notes"] = list(self.estimated), list(self.notes)
        out["evaluated_items"] = self.evaluated_items
        return out


class DataSizes:
    """Counts the items of a dev, test or extra set from the data files (once per split setting), as the task's own
    loader reads them; falls back to KNOWN_SIZES (estimated) when the files are absent."""

    def __init__(self) -> None:
        self.cache: dict[str, tuple[int, bool]] = {}

    def __call__(self, cfg: RunConfig, split: str, name: str) -> tuple[int, bool]:
        task = get_task(cfg.task)
        key = json.dumps([cfg.task, dataclasses.asdict(cfg.data), task.data_split_key(cfg), split, name],
                         sort_keys=True)
        if key not in self.cache:
            try:
                if split in ("dev", "test"):
                    count = len(task.load(cfg, split, [name])[name])
                else:
                    count = len(task.extra_eval_data(cfg, split, name))
                self.cache[key] = (count, False)
            except (XlamamlError, OSError):  # absent or unreadable files, or a hub source offline
                self.cache[key] = (known_size(cfg, split, name), True)
        return self.cache[key]


def known_size(cfg: RunConfig, split: str, name: str) -> int:
    """Return the published size of a set (see KNOWN_SIZES)."""
    if cfg.task == "xnli":
        return XNLI_SIZES[split]
    sizes = KNOWN_SIZES["mlqa"]
    official = cfg.eval.qa_test == "official"
    if split in ("dev", "test"):
        if official:
            return sizes[split][name]
        held = round(sizes["dev"][name] * cfg.eval.qa_heldout_fraction)
        return held if split == "test" else sizes["dev"][name] - held
    c, q = name.split("-")  # a G-XLT pair
    pair = min(sizes["test" if official else "dev"][c], sizes["test" if official else "dev"][q])
    return pair if official else round(pair * cfg.eval.qa_heldout_fraction)


def _cap(n: Optional[int], available: int) -> int:
    return available if n is None else min(n, available)


class _Trials:
    """The per-trial quantities the rules combine: meta steps, reports, dev items per evaluation, test items."""

    def __init__(self, sizes: SizeFn) -> None:
        self.sizes = sizes
        self.estimated: dict[str, None] = {}

    def _available(self, cfg: RunConfig, split: str, name: str) -> int:
        count, estimated = self.sizes(cfg, split, name)
        if estimated:
            self.estimated[f"{cfg.task} {split} {name}"] = None
        return count

    def dev_per_lang(self, cfg: RunConfig, cap: Optional[int]) -> list[int]:
        """Return the dev items one evaluation scores per dev language, at most `cap` each (None: all)."""
        return [_cap(cap, max(0, self._available(cfg, "dev", lang) - cfg.eval.dev_offset)) for lang in cfg.dev_langs]

    def dev_max(self, cfg: RunConfig) -> int:
        """Return the most dev items a report scores in one language (eval.dev_max_examples, capped by the data)."""
        return max(self.dev_per_lang(cfg, cfg.eval.dev_max_examples))

    def dev(self, cfg: RunConfig) -> int:
        """Return the dev items of one report."""
        return sum(self.dev_per_lang(cfg, cfg.eval.dev_max_examples))

    def test(self, cfg: RunConfig) -> int:
        """Return the test items a finished trial scores: every target and the task's extra sets."""
        e = cfg.eval
        items = sum(_cap(e.max_examples, self._available(cfg, "test", lang)) for lang in e.target_langs)
        for split, names in get_task(cfg.task).extra_eval_names(cfg, list(e.target_langs)).items():
            items += sum(_cap(e.max_examples, self._available(cfg, split, name)) for name in names)
        return items


def _reports(cfg: RunConfig) -> int:
    return 1 if cfg.method == "baseline" else reports_per_trial(cfg)


def plan_counts(sw: Sweep, mode: str, sizes: SizeFn | None = None) -> PlanCounts:
    """Return what the sweep `sw` runs in `mode` ("grid" or "adaptive"), whatever its own sweep.mode; `sizes` counts a
    set's items (default: the data files, DataSizes)."""
    if mode not in PLAN_MODES:
        raise ConfigError(f"plan mode {mode!r}: expected one of {', '.join(PLAN_MODES)}")
    s = sw.sweep
    per = _Trials(sizes or DataSizes())
    combos = sw.combos
    base_cfgs = [sw.trial_config(c["assignment"], c["seed"], combo) for c in sw.baseline_cells for combo in combos]
    base_dev = sum(per.dev(cfg) for cfg in base_cfgs)  # a baseline trial reports once
    base_test = sum(per.test(cfg) for cfg in base_cfgs)
    cells = [(name, combo) for name in sw.cells for combo in combos]
    if mode == "grid":
        steps = dev = test = 0
        for (name, combo), seed in itertools.product(cells, s.seeds):
            cfg = sw.trial_config(name, seed, combo)
            steps += cfg.meta.total_steps
            dev += _reports(cfg) * per.dev(cfg)
            test += per.test(cfg)
        trials = len(cells) * len(s.seeds) + len(base_cfgs)
        return PlanCounts("grid", len(cells), len(base_cfgs), trials, trials, trials, steps, dev + base_dev,
                          test + base_test, estimated=tuple(per.estimated))
    return _adaptive(sw, cells, base_cfgs, base_dev, base_test, per)


def _adaptive(sw: Sweep, cells: list, base_cfgs: list[RunConfig], base_dev: int, base_test: int,
              per: _Trials) -> PlanCounts:
    """Return the adaptive counts (see the module's docstring)."""
    s = sw.sweep
    notes: list[str] = []
    if not cells:
        trials = len(base_cfgs)
        return PlanCounts("adaptive", 0, trials, trials, trials, trials, 0, base_dev, base_test,
                          estimated=tuple(per.estimated))
    # Cells are counted alike: each seed's per-trial quantities from every cell, the largest where cells differ
    # (then the counts are upper bounds: which cells survive is not known before the sweep runs).
    by_seed: dict[int, list[RunConfig]] = {seed: [sw.trial_config(n, seed, c) for n, c in cells]
                                           for seed in s.seeds}
    first = by_seed[s.seeds[0]]
    totals = {cfg.meta.total_steps for cfg in first}
    per_report = {cfg.meta.steps_per_report for cfg in first}
    differ = len(totals) > 1 or len(per_report) > 1
    if differ:
        notes.append("cells differ in meta budget: each counted at the largest (an upper bound)")
    total = max(totals)
    dev_cap = max(per.dev_max(cfg) for cfg in first)
    # The sweep's own schedule (the one the driver runs); a rung's dev items capped by what the data holds.
    rungs = sw.rungs
    out_rungs, steps, dev, trials, runs = [], 0, 0, 0, 0
    for i, rung in enumerate(rungs):
        after = rungs[i + 1].cells if i + 1 < len(rungs) else 0
        # The meta steps a trial reaches in this rung, the largest cell's (search.adaptive.driver.cell_steps).
        rung_total = total if i == len(rungs) - 1 else rung_steps(rung.fraction, total)
        stopped = rung.cells - after
        trials += stopped * len(rung.seeds)
        steps += stopped * len(rung.seeds) * rung_total
        runs += rung.cells * len(rung.seeds)
        for seed in rung.seeds:
            items = {sum(per.dev_per_lang(cfg, rung.dev_items)) for cfg in by_seed[seed]}
            differ |= len(items) > 1
            dev += rung.cells * max(items)
        out_rungs.append(RungCount(rung.index, rung_total, _cap(rung.dev_items, dev_cap), len(rung.seeds), rung.cells,
                                   rung.cells * len(rung.seeds)))
    last = rungs[-1]
    test = 0
    for seed in last.seeds:
        items = {per.test(cfg) for cfg in by_seed[seed]}
        differ |= len(items) > 1
        test += last.cells * max(items)
    finished = last.cells * len(last.seeds) + len(base_cfgs)
    if s.adaptive.bound is not None:
        notes.append(f"sweep.adaptive.bound = {s.adaptive.bound}: a confidence bound may stop more cells (at most)")
    return PlanCounts("adaptive", len(cells), len(base_cfgs), trials + len(base_cfgs), runs + len(base_cfgs),
                      finished, steps, dev + base_dev, test + base_test,
                      upper_bound=s.adaptive.bound is not None or differ, rungs=tuple(out_rungs),
                      estimated=tuple(per.estimated), notes=tuple(notes))


def compute_seconds(counts: PlanCounts, step_seconds: float, item_seconds: float | None = None) -> float:
    """Return the trial compute of `counts`: meta steps x step seconds plus evaluated items x item seconds (none
    when `item_seconds` is None)."""
    return counts.meta_steps * step_seconds + counts.evaluated_items * (item_seconds or 0.0)



def items_per_target(sw: Sweep, sizes: SizeFn | None = None) -> tuple[int, int]:
    """Return (the fewest dev items one report scores in a dev language, a finished trial's test items per target):
    what a simulated predictive sweep (search/plan/predictive_plan.py) scores."""
    per, cfg = _Trials(sizes or DataSizes()), sw.trial_config(sw.cells[0])
    return min(per.dev_per_lang(cfg, cfg.eval.dev_max_examples)), per.test(cfg) // max(1, len(cfg.eval.target_langs))
