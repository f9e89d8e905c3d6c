"""What `xlamaml analyze` says about an adaptive sweep (`xlamaml_adaptive.json` in the experiment).

- adaptive_picks.csv: per target the decisions judged (eval.dev_langs, else the targets), the pick: the final survivor
  not excluded for that target with the highest dev gain over the baseline (paired over the dev items and seeds, the
  baseline's dev outcomes on the same items), its dev gain and 95% interval, its test gain with 95% interval, p and p
  adjusted over the targets, and the survivors not distinguishable from it on dev (the 95% interval of cell minus
  pick, paired over items and seeds, holds 0; the pick itself counted).
- adaptive_stops.csv: every stopped cell, the rung after which it stopped, the recorded reason, its last dev gain per
  target (vs the baseline on the same items) and its best rank.
- adaptive_compute.csv: what the sweep spent (from the record) against what the full grid would have
  (search.plan.plan_counts; its trial-seconds estimated from this experiment's own rates), and the share.
- adaptive.md: the three, as text.

Gains are in points (percentage points for fractions such as accuracy). Test is read only for the picks; a stopped
cell never scored test, and its numbers are dev estimates from its last rung. The heatmaps of an adaptive experiment
(`aux_matrix`, `pairs_matrix`) show the stopped cells' last dev gains, hatched apart from the test gains of the rest.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from types import SimpleNamespace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from xlamaml.analysis.aggregate import scale_of
from xlamaml.analysis.corrections import CORRECTIONS, adjust
from xlamaml.analysis.heatmap import delta_matrix, pairs_matrix as finished_pairs_matrix
from xlamaml.analysis.langs import AVERAGES, excluded_from_avg, label_langs, label_sort_key, order_langs
from xlamaml.analysis.outcomes import ItemOutcomes, Outcomes
from xlamaml.analysis.results import canonical
from xlamaml.analysis.stats import ALPHA, TEST_NAME, Cell, Part, _part, bootstrap
from xlamaml.analysis.trial_info import KNOWN_LANGS
from xlamaml.experiment.records import AdaptiveRecord, Rung, read_adaptive, read_sweep, trial_folder
from xlamaml.experiment.reports import read_reports
from xlamaml.trainables.assignment import parse_assignment
from xlamaml.trainables.config import config_from_dict
from xlamaml.trainables.errors import InputError, XlamamlError
from xlamaml.trainables.local_files import write_text_whole
from xlamaml.trainables.tasks.outcomes import SUFFIX, read_outcomes

log = logging.getLogger("xlamaml")

Trials = list[tuple[Any, str]]  # (seed, trial dir)


@dataclass
class Adaptive:
    """An adaptive experiment as the analysis reads it: its record, the cells' fates and their per-item outcomes."""

    exp: Path
    record: AdaptiveRecord
    metric: str
    targets: list[str]  # the languages decisions judge on (dev)
    stopped: dict[str, tuple[int, str]]  # cell -> (the rung after which it stopped, the recorded reason)
    survivors: list[str]  # the cells of the last rung that finished it (scored test)
    excluded: dict[str, set[str]]  # target -> cells not judged on it (trained on its language)
    trials: dict[str, Trials]  # cell (or 'baseline') -> its trial folders that exist
    outcomes: Outcomes  # (trial dir, split, lang) -> per-item outcomes, dev of every trial and test of the finished
    scale: float  # 100 for fractions: gains in percentage points

    def cell_of(self, assignment: str) -> str:
        """Return the record's cell named by a tidy table's (canonical) assignment."""
        return next((c for c in self.record.cells if canonical(c) == assignment), assignment)

    @property
    def baseline(self) -> dict[Any, str]:
        """Return {seed: trial dir} of the baseline."""
        return dict(self.trials.get("baseline", []))

    def rung(self, index: int) -> Rung:
        """Return rung `index` of the record."""
        return self.record.rungs[index]


def dev_targets(exp_dir: Path, record: AdaptiveRecord) -> list[str]:
    """Return the languages the decisions judge (dev): the record's dev_langs, else the targets its decisions
    excluded cells on, else the dev languages of the sweep's run config (eval.dev_langs, else the targets)."""
    if record.dev_langs:
        return list(record.dev_langs)
    for d in record.decisions:
        if d.get("excluded"):
            return list(d["excluded"])
    try:
        return config_from_dict(read_sweep(str(exp_dir))["run"]).dev_langs
    except XlamamlError:
        return []


def trained_on(cell: str, lang: str) -> bool:
    """Return whether the cell's meta stage trained on `lang` (Assignment.trained_on; English never counts)."""
    try:
        return parse_assignment(cell, KNOWN_LANGS).trained_on(lang)
    except ValueError:
        return False


def _read(trial: Path, split: str, lang: str) -> ItemOutcomes | None:
    path = trial / "predictions" / f"{split}-{lang}{SUFFIX}"
    if not path.is_file():
        return None
    try:
        uids, values = read_outcomes(path)
    except XlamamlError as e:
        log.warning("adaptive: %s; left out", e)
        return None
    return ItemOutcomes(tuple(uids), values)


def load_adaptive(exp_dir: Path, df: pd.DataFrame) -> Adaptive | None:
    """Return the adaptive view of the experiment (None when it has no adaptive record); `df` its tidy table."""
    record = read_adaptive(str(exp_dir))
    if record is None:
        return None
    metric = record.metric
    targets = dev_targets(exp_dir, record)
    reasons = {c: str(reason) for d in record.decisions for c, reason in d["stopped"].items()}
    stopped = {c: (index, reasons[c]) for c, index in record.stopped().items()}
    last = len(record.rungs) - 1
    finished = len(record.decisions) >= last and len(record.spent) > last
    final = record.cells_in(last) if finished else []
    excluded = {t: {c for c in record.cells if trained_on(c, t)} for t in targets}
    for d in record.decisions:
        for t, cells in (d.get("excluded") or {}).items():
            excluded.setdefault(t, set()).update(cells)
    trials: dict[str, Trials] = {}

    def add(cell: str, seeds: list[Any]) -> None:
        found = [(s, str(exp_dir / trial_folder(cell, s))) for s in seeds if (exp_dir / trial_folder(cell, s)).is_dir()]
        trials[cell] = found

    add("baseline", [b["seed"] for b in record.baseline])
    for cell, (index, _) in stopped.items():
        add(cell, list(record.rungs[index].seeds))
    for cell in final:
        add(cell, list(record.rungs[last].seeds))
    done = set(df.loc[df["status"] == "done", "trial_dir"])
    survivors = [c for c in final if trials[c] and all(d in done for _, d in trials[c])]
    outcomes: Outcomes = {}
    for cell, own in trials.items():
        for _, trial in own:
            for lang in targets:
                got = _read(Path(trial), "dev", lang)
                if got is not None:
                    outcomes[(trial, "dev", lang)] = got
            if cell in survivors or cell == "baseline":
                for path in sorted((Path(trial) / "predictions").glob(f"test-*{SUFFIX}")):
                    lang = path.name[len("test-"):-len(SUFFIX)]
                    got = _read(Path(trial), "test", lang)
                    if got is not None:
                        outcomes[(trial, "test", lang)] = got
    scale = scale_of(df, metric) if (df["metric"] == metric).any() else 1.0
    return Adaptive(exp_dir, record, metric, targets, stopped, survivors, excluded, trials, outcomes, scale)


def gain_part(ad: Adaptive, cell: str, lang: str, split: str = "dev",
              reference: dict[Any, str] | None = None) -> tuple[Part | None, str]:
    """Return (the cell's per-item differences from the baseline on `lang`, '') or (None, why): paired by item on
    the items both scored (a stopped cell: its last rung's first dev items) and by seed where the reference ran it.
    `reference`: {seed: trial dir} to compare with instead of the baseline (another cell: cell minus it)."""
    ref = ad.baseline if reference is None else reference
    if not ad.trials.get(cell) or not ref:
        return None, "no trial folders of the cell or of its reference"
    return _part(lang, ad.trials[cell], ref, split, ad.metric, ad.outcomes)


def _boot(parts: list[Part], opts: Any) -> Any:
    return bootstrap([Cell({}, (p,)) for p in parts], opts.resamples, opts.seed)


def stopped_gain(ad: Adaptive, cell: str, lang: str) -> float:
    """Return a stopped cell's last dev gain over the baseline on `lang` (a target or `avg_excl_aux`), in the
    metric's units (NaN when its outcomes are missing)."""
    if lang in AVERAGES:
        aux = _aux(cell)
        langs = [t for t in ad.targets if lang == "avg" or t not in excluded_from_avg(aux)]
        values = [stopped_gain(ad, cell, t) for t in langs]
        return float(np.mean(values)) if values and all(math.isfinite(v) for v in values) else math.nan
    part, _ = gain_part(ad, cell, lang)
    return float(part.diffs.mean()) if part is not None else math.nan


def _aux(cell: str) -> str:
    try:
        return parse_assignment(cell, KNOWN_LANGS).aux
    except ValueError:
        return ""


def _method(cell: str) -> str:
    try:
        return parse_assignment(cell, KNOWN_LANGS).method
    except ValueError:
        return ""


# ---------------------------------------------------------------------------------------------------------- picks


PICK_COLUMNS: tuple[str, ...] = (
    "target", "pick", "method", "aux", "ranked_on", "dev_gain", "dev_ci_low", "dev_ci_high", "dev_items", "dev_seeds",
    "test_gain", "test_ci_low", "test_ci_high", "p_value", "p_adjusted", "significant", "test_items", "test_seeds",
    "correction", "family_size", "candidates", "indistinguishable_count", "indistinguishable",
)


def picks(ad: Adaptive, opts: Any) -> tuple[pd.DataFrame, list[str]]:
    """Return (adaptive_picks rows, one per target with a candidate; notes)."""
    notes: list[str] = []
    dev: dict[str, dict[str, Part]] = {}
    for t in ad.targets:
        dev[t] = {}
        for cell in ad.survivors:
            if cell in ad.excluded.get(t, set()):
                continue
            part, why = gain_part(ad, cell, t)
            if part is None:
                notes.append(f"adaptive_picks.csv: {cell} on dev {t}: {why}; not a candidate")
            else:
                dev[t][cell] = part
    flat = [(t, c, p) for t in ad.targets for c, p in dev[t].items()]
    result = _boot([p for _, _, p in flat], opts)
    gain = {(t, c): i for i, (t, c, _) in enumerate(flat)}
    rows = []
    for t in ad.targets:
        if not dev[t]:
            notes.append(f"adaptive_picks.csv: target {t}: no final survivor to pick (each trained on it, or none "
                         "finished)")
            continue
        pick = max(dev[t], key=lambda c: (result.delta[gain[(t, c)]], -ad.survivors.index(c)))
        i = gain[(t, pick)]
        others = [c for c in dev[t] if c != pick]
        diffs, kept = [], []
        for c in others:
            part, why = gain_part(ad, c, t, "dev", dict(ad.trials[pick]))
            if part is None:
                notes.append(f"adaptive_picks.csv: {c} minus {pick} on dev {t}: {why}")
            else:
                diffs.append(part)
                kept.append(c)
        versus = _boot(diffs, opts)
        same = [pick] + [c for k, c in enumerate(kept) if versus.ci_low[k] <= 0 <= versus.ci_high[k]]
        p = dev[t][pick]
        rows.append({"target": t, "pick": pick, "method": _method(pick), "aux": _aux(pick),
                     "ranked_on": f"dev {t} gain over the baseline, final survivors", "dev_gain": result.delta[i],
                     "dev_ci_low": result.ci_low[i], "dev_ci_high": result.ci_high[i], "dev_items": len(p.uids),
                     "dev_seeds": p.diffs.shape[0], "candidates": len(dev[t]),
                     "indistinguishable_count": len(same), "indistinguishable": ";".join(same)})
    tests: list[Part] = []
    at: list[int] = []
    for k, r in enumerate(rows):
        part, why = gain_part(ad, r["pick"], r["target"], "test")
        if part is None and not any(split == "test" and lang == r["target"] for _, split, lang in ad.outcomes):
            # A dev language that is no test target (eval.dev_langs beyond eval.target_langs): judged, never tested.
            notes.append(f"adaptive_picks.csv: {r['target']} is a dev language the sweep does not test "
                         f"(not in eval.target_langs); its pick has no test gain")
        elif part is None:
            notes.append(f"adaptive_picks.csv: {r['pick']} on test {r['target']}: {why}; no test gain")
        else:
            tests.append(part)
            at.append(k)
    result_t = _boot(tests, opts)
    for j, k in enumerate(at):
        rows[k].update({"test_gain": result_t.delta[j], "test_ci_low": result_t.ci_low[j],
                        "test_ci_high": result_t.ci_high[j], "p_value": result_t.p_value[j],
                        "test_items": len(tests[j].uids), "test_seeds": tests[j].diffs.shape[0]})
    frame = pd.DataFrame(rows, columns=list(PICK_COLUMNS))
    frame["p_adjusted"] = adjust(frame["p_value"].to_numpy(dtype=float), opts.correction)
    frame["significant"] = frame["p_adjusted"] < ALPHA
    frame["correction"] = opts.correction
    frame["family_size"] = int(np.isfinite(frame["p_value"].to_numpy(dtype=float)).sum())
    for col in ("dev_gain", "dev_ci_low", "dev_ci_high", "test_gain", "test_ci_low", "test_ci_high"):
        frame[col] = frame[col].astype(float) * ad.scale
    for col in ("dev_items", "dev_seeds", "test_items", "test_seeds", "candidates", "indistinguishable_count"):
        frame[col] = frame[col].astype("Int64")
    return frame[list(PICK_COLUMNS)], notes


# ---------------------------------------------------------------------------------------------------------- stops


def stops(ad: Adaptive) -> pd.DataFrame:
    """Return one row per stopped cell: rung, reason, last dev gain per target (points), best rank."""
    rows = []
    for cell, (index, reason) in ad.stopped.items():
        decision = next(d for d in ad.record.decisions if int(d["rung"]) == index)
        ranks = decision.get("ranks", {}).get(cell, {})
        best = min(ranks.items(), key=lambda kv: (kv[1], ad.targets.index(kv[0]) if kv[0] in ad.targets else 0),
                   default=(None, None))
        rung = ad.rung(index)
        row = {"cell": cell, "method": _method(cell), "aux": _aux(cell), "stopped_after_rung": index,
               "rung_steps": rung.steps, "rung_dev_items": rung.dev_items, "rung_seeds": len(rung.seeds),
               "reason": reason, "best_rank": best[1], "best_rank_target": best[0],
               "excluded_targets": ";".join(t for t in ad.targets if cell in ad.excluded.get(t, set()))}
        for t in ad.targets:
            row[f"dev_gain_{t}"] = stopped_gain(ad, cell, t) * ad.scale
        rows.append(row)
    columns = ["cell", "method", "aux", "stopped_after_rung", "rung_steps", "rung_dev_items", "rung_seeds", "reason",
               "best_rank", "best_rank_target", "excluded_targets"] + [f"dev_gain_{t}" for t in ad.targets]
    frame = pd.DataFrame(rows, columns=columns)
    frame["best_rank"] = frame["best_rank"].astype("Int64")
    return frame.sort_values(["stopped_after_rung", "cell"], kind="stable").reset_index(drop=True)


# -------------------------------------------------------------------------------------------------------- compute


def _grid_counts(exp: Path) -> Any:
    """Return the full grid's counts the adaptive record holds (search.plan.counts.plan_counts, written when the sweep
    started), as an object with their names."""
    record = read_adaptive(str(exp))
    if record is None or not record.grid:
        raise InputError(f"{exp}: the adaptive record holds no counts of the full grid (a sweep recorded before "
                         f"they were kept)")
    return SimpleNamespace(**record.grid)


def compute(ad: Adaptive, grid_counts: Callable[[Path], Any] | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Return (what the sweep spent against the full grid's counts, one row per quantity; notes); `grid_counts(exp)`
    counts the full grid (default: search.plan.plan_counts of the experiment's sweep)."""
    grid_counts = grid_counts or _grid_counts
    notes: list[str] = []
    # The trial folders the sweep ran (one per cell and seed, the same in every rung), for their reports' rates.
    folders = {trial_folder(b["assignment"], b["seed"]) for b in ad.record.baseline}
    for index, _ in enumerate(ad.record.spent):
        folders.update(trial_folder(c, s) for c in ad.record.cells_in(index) for s in ad.rung(index).seeds)
    total = ad.record.spent_total()
    own = {key: total[key] for key in ("trials", "meta_steps", "dev_items", "test_items")}
    own["trial_seconds"] = float(total["trial_seconds"])
    own["evaluated_items"] = own["dev_items"] + own["test_items"]
    # Rates of this experiment: meta seconds per meta step over the trials' last reports; the rest of the trial
    # seconds per evaluated item.
    meta_seconds = meta_steps = 0.0
    for folder in sorted(folders):
        reports = read_reports(ad.exp / folder / "result.json")
        last = next((r for r in reversed(reports) if "meta/steps" in r), None)
        if last is not None:
            meta_seconds += float(last.get("meta/seconds", 0.0))
            meta_steps += float(last.get("meta/steps", 0.0))
    per_step = meta_seconds / meta_steps if meta_steps else math.nan
    rest = own["trial_seconds"] - meta_seconds
    if rest < 0:
        notes.append(f"adaptive_compute.csv: the record's trial-seconds ({own['trial_seconds']:.1f} s) are below the "
                     f"reports' meta seconds ({meta_seconds:.1f} s); evaluation counted as free in the grid estimate")
    per_item = max(rest, 0.0) / own["evaluated_items"] if own["evaluated_items"] else 0.0
    grid: dict[str, float] = {}
    source = ""
    try:
        counts = grid_counts(ad.exp)
        grid = {"trials": counts.trials, "meta_steps": counts.meta_steps, "dev_items": counts.dev_items,
                "test_items": counts.test_items, "evaluated_items": counts.evaluated_items}
        grid["trial_seconds"] = counts.meta_steps * per_step + counts.evaluated_items * per_item
        source = "plan_counts(grid)" + (" (estimated sizes: " + ", ".join(counts.estimated) + ")"
                                        if counts.estimated else "")
    except XlamamlError as e:
        notes.append(f"adaptive_compute.csv: the full grid could not be counted ({e}); its columns are empty")
    rows = []
    for key in ("trials", "meta_steps", "dev_items", "test_items", "evaluated_items", "trial_seconds"):
        g = grid.get(key, math.nan)
        how = source
        if key == "trial_seconds" and grid:
            how = (f"estimated: {per_step:.4g} s per meta step and {per_item:.3g} s per item, this experiment's "
                   "rates")
        rows.append({"quantity": key, "adaptive": own[key], "grid": g,
                     "share": own[key] / g if g and math.isfinite(g) else math.nan, "grid_source": how})
    return pd.DataFrame(rows), notes


# ------------------------------------------------------------------------------------------------------- heatmaps


def _stopped_of(part: pd.DataFrame, methods: list[str]) -> pd.DataFrame:
    """Return one row per stopped variant of `methods` in the tidy table `part` (its first row)."""
    rows = part[(part["status"] == "stopped") & part["method"].isin(methods)]
    return rows.drop_duplicates("assignment")


def _note(ad: Adaptive, cells: list[str]) -> str:
    rungs = sorted({ad.stopped[c][0] for c in cells if c in ad.stopped})
    after = " or ".join(str(r) for r in rungs)
    return (f"hatched (dots): stopped after rung {after}, last dev estimate (gain over the baseline on the same dev "
            "items; not test, no significance)")


def heatmap_method(df: pd.DataFrame, rank: Callable[[str], int]) -> str | None:
    """Return the method an adaptive experiment's aux heatmap draws: 'xla-maml' when it finished or was stopped,
    else the first other."""
    methods = set(df.loc[df["status"].isin(["done", "stopped"]), "method"]) - {"baseline"}
    ranked = sorted(methods, key=lambda m: (m != "xla-maml", rank(m), m))
    return ranked[0] if ranked else None


def aux_matrix(part: pd.DataFrame, method: str, ad: Adaptive) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Return (the aux x target matrix: test gains of the finished cells, last dev gains of the stopped ones whose
    aux has no finished cell; the stopped mask; its note)."""
    try:
        matrix = delta_matrix(part, method=method)
    except XlamamlError:
        matrix = None
    if matrix is None:
        base = part[(part["status"] == "done") & (part["method"] == "baseline") & (part["split"] == "test")]
        columns = [lang for lang in order_langs(base["lang"]) if lang not in AVERAGES]
        if not columns:
            raise InputError("no finished baseline reports test: no heatmap")
        matrix = pd.DataFrame(index=pd.Index([], dtype=object), columns=columns, dtype=float)
        metric = ad.metric
        matrix.attrs = {"kind": "aux_target", "method": method, "split": "test", "metric": metric, "target": None,
                        "scale": ad.scale, "setting": ""}
    attrs = dict(matrix.attrs)
    stopped = _stopped_of(part, [method])
    shown: dict[str, tuple[str, float]] = {}  # aux -> (cell, its mean dev gain): the best stopped cell per aux
    for cell, aux in zip(map(ad.cell_of, stopped["assignment"]), stopped["aux"]):
        if aux in matrix.index:
            continue
        score = np.nanmean([stopped_gain(ad, cell, t) for t in ad.targets]) if ad.targets else math.nan
        if aux not in shown or score > shown[aux][1]:
            shown[aux] = (cell, score)
    rows = {aux: {t: stopped_gain(ad, cell, t) for t in matrix.columns} for aux, (cell, _) in shown.items()}
    if rows:
        matrix = pd.concat([matrix, pd.DataFrame.from_dict(rows, orient="index")[list(matrix.columns)]])
    matrix = matrix.loc[sorted(matrix.index, key=label_sort_key)].astype(float)
    matrix.index.name, matrix.columns.name = "auxiliary language", "target language"
    matrix.attrs = attrs
    mask = pd.DataFrame(False, index=matrix.index, columns=matrix.columns)
    mask.loc[list(rows)] = True
    return matrix, mask, _note(ad, [c for c, _ in shown.values()]) if rows else ""


def pairs_matrix(part: pd.DataFrame, ad: Adaptive) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Return (the support x query matrix of avg_excl_aux gains: test for the finished cells, last dev for the
    stopped ones; the stopped mask; its note)."""
    try:
        matrix = finished_pairs_matrix(part)
    except XlamamlError:
        matrix = pd.DataFrame(dtype=float)
        matrix.attrs = {"kind": "support_query", "method": "xla-maml (x-maml on the diagonal)", "split": "test",
                        "metric": ad.metric, "target": "avg_excl_aux", "scale": ad.scale, "setting": ""}
    attrs = dict(matrix.attrs)
    stopped = _stopped_of(part, ["xla-maml", "x-maml"])
    filled: list[tuple[str, str]] = []
    cells: list[str] = []
    for cell, support, query in zip(map(ad.cell_of, stopped["assignment"]), stopped["support"], stopped["query"]):
        present = support in matrix.index and query in matrix.columns and math.isfinite(matrix.loc[support, query])
        if present:
            continue
        matrix.loc[support, query] = stopped_gain(ad, cell, "avg_excl_aux")
        filled.append((support, query))
        cells.append(cell)
    order = sorted(set(matrix.index) | set(matrix.columns), key=label_sort_key)
    matrix = matrix.reindex(index=[x for x in order if x in matrix.index],
                            columns=[x for x in order if x in matrix.columns]).astype(float)
    matrix.index.name, matrix.columns.name = "support language", "query language"
    matrix.attrs = attrs
    mask = pd.DataFrame(False, index=matrix.index, columns=matrix.columns)
    for s, q in filled:
        mask.loc[s, q] = True
    return matrix, mask, _note(ad, cells) if cells else ""


def has_pairs(part: pd.DataFrame) -> bool:
    """Return whether the finished or stopped XLA-MAML trials hold ordered pairs beyond one support language."""
    own = part[part["status"].isin(["done", "stopped"]) & (part["method"] == "xla-maml")]
    return len({s for s in own["support"].dropna() if len(label_langs(s)) == 1}) > 1


# ----------------------------------------------------------------------------------------------------- the files


def _fmt(v: Any, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)) or v is pd.NA:
        return "-"
    if isinstance(v, (float, np.floating)):
        return f"{float(v):+.{digits}f}"
    return str(v)


def _interval(lo: Any, hi: Any) -> str:
    if not all(isinstance(x, (int, float, np.floating)) and math.isfinite(float(x)) for x in (lo, hi)):
        return "-"
    return f"[{float(lo):+.2f}, {float(hi):+.2f}]"


def _p(v: Any) -> str:
    return f"{float(v):.3g}" if isinstance(v, (int, float, np.floating)) and math.isfinite(float(v)) else "-"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return out + ["| " + " | ".join(r) + " |" for r in rows]


def markdown(ad: Adaptive, pick_rows: pd.DataFrame, stop_rows: pd.DataFrame, comp: pd.DataFrame, opts: Any,
             notes: list[str]) -> str:
    """Return adaptive.md: the sweep in one paragraph, then the picks, the stopped cells and the compute."""
    r = ad.record
    unit = "percentage points" if ad.scale == 100.0 else f"{ad.metric} points"
    rungs = "; ".join(f"rung {g.index}: {g.cells} cells x {len(g.seeds)} seed(s), {g.steps} meta steps, "
                      f"{g.dev_items} dev items" for g in r.rungs)
    lines = ["# Adaptive sweep", "",
             f"{len(r.cells)} cells, {len(r.baseline)} baseline trial(s), ranked on dev {ad.metric} over "
             f"{', '.join(ad.targets)}. {rungs}. Final survivors (scored test): "
             f"{', '.join(ad.survivors) or 'none yet'}. Gains in {unit}; {TEST_NAME}, 95% intervals, "
             f"{opts.resamples:,} resamples.", "",
             "## Picks per target (judged on dev)", "",
             "The final survivor not trained on the target with the highest dev gain over the baseline; its test "
             f"gain, p adjusted over the targets ({CORRECTIONS[opts.correction]}); the survivors whose dev "
             "difference from the pick has a 95% interval holding 0 (the pick included).", ""]
    lines += _table(["target", "pick", "dev gain", "dev 95% CI", "test gain", "test 95% CI", "p", "p adj.",
                     "indistinguishable on dev"],
                    [[x["target"], x["pick"], _fmt(x["dev_gain"]), _interval(x["dev_ci_low"], x["dev_ci_high"]),
                      _fmt(x["test_gain"]), _interval(x["test_ci_low"], x["test_ci_high"]), _p(x["p_value"]),
                      _p(x["p_adjusted"]) + (" *" if x["significant"] is True else ""),
                      f"{x['indistinguishable_count']} of {x['candidates']}: {x['indistinguishable']}"]
                     for _, x in pick_rows.iterrows()]) if len(pick_rows) else ["No target has a final survivor."]
    lines += ["", "## Stopped cells", "",
              "Never scored test; their gains are their last rung's dev estimates against the baseline on the same "
              "dev items (a cell trained on a target is not judged on it: '(excl.)').", ""]
    if len(stop_rows):
        body = []
        for _, x in stop_rows.iterrows():
            excl = set(str(x["excluded_targets"]).split(";"))
            gains = ", ".join(f"{t} {_fmt(x[f'dev_gain_{t}'])}" + (" (excl.)" if t in excl else "")
                              for t in ad.targets)
            body.append([x["cell"], str(x["stopped_after_rung"]), f"{x['rung_steps']} steps, {x['rung_dev_items']} "
                         f"items, {x['rung_seeds']} seed(s)", gains,
                         f"{x['best_rank']} ({x['best_rank_target']})" if pd.notna(x["best_rank"]) else "-",
                         str(x["reason"])])
        lines += _table(["cell", "after rung", "its budget", "last dev gain", "best rank", "reason"], body)
    else:
        lines += ["No cell was stopped."]
    lines += ["", "## Compute", "", "Spent (from the record) against the full grid (`xlamaml plan` counts); the "
              "grid's trial-seconds are estimated from this experiment's rates.", ""]
    lines += _table(["quantity", "adaptive", "grid", "share", "grid from"],
                    [[x["quantity"], _num(x["adaptive"]), _num(x["grid"]),
                      f"{100 * x['share']:.1f}%" if math.isfinite(x["share"]) else "-", x["grid_source"]]
                     for _, x in comp.iterrows()])
    if notes:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def _num(v: Any) -> str:
    if not isinstance(v, (int, float, np.integer, np.floating)) or not math.isfinite(float(v)):
        return "-"
    return f"{int(v):,}" if float(v).is_integer() else f"{float(v):,.1f}"


def write_adaptive(ad: Adaptive, opts: Any, out: Path, write_csv: Callable[[pd.DataFrame, Path], Path],
                   grid_counts: Callable[[Path], Any] | None = None) -> dict[str, Path]:
    """Return {name: path} of adaptive_picks.csv, adaptive_stops.csv, adaptive_compute.csv and adaptive.md."""
    pick_rows, notes = picks(ad, opts)
    stop_rows = stops(ad)
    comp, comp_notes = compute(ad, grid_counts)
    notes += comp_notes
    for line in notes:
        log.warning("%s", line)
    written = {}
    for name, frame in (("adaptive_picks.csv", pick_rows), ("adaptive_stops.csv", stop_rows),
                        ("adaptive_compute.csv", comp)):
        written[name] = write_csv(frame, out / name)
    write_text_whole(out / "adaptive.md", markdown(ad, pick_rows, stop_rows, comp, opts, notes))
    written["adaptive.md"] = out / "adaptive.md"
    return written
