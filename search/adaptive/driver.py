"""An adaptive sweep (`sweep.mode: adaptive`): every cell on a small budget first, then only the cells likely to be some
target's best, up to the full budget and every seed.

Rung by rung (`search/schedule.py`): each rung is one Tune run of its trials (cell x seed), in fixed trial folders
(`<assignment>_s<seed>`). A trial stops at the rung's meta steps, scores the rung's first dev items and keeps its
checkpoint; the rule (`search/adaptive/rule.py`) reads those dev outcomes, per target, and keeps `keep_count` cells.
A kept cell's trials continue from their checkpoints in the next rung (their optimizer, schedule, sampler and RNG go
on; the schedule was set for the full budget from the start); a seed a cell has not run yet starts from the base.
Only the last rung (the full budget) scores test, so test is scored for the baseline and the final survivors only,
and no decision ever reads it.

Everything a resume needs is in the experiment: `xlamaml_adaptive.json` (the rungs, every decision, what each rung
spent), written whole after each rung, and the trial folders. A resume never restores Ray's experiment state: it
finds, for the rung in progress, the trials whose rung-end report exists (done, not run again) and continues the
others from their newest readable checkpoints (as a rebuilt grid run does, `search/faults/rebuild.py`). So no decision is
lost and no rung is run twice.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from xlamaml.experiment.reports import trial_reports
from xlamaml.search.adaptive.rule import Decision, decide
from xlamaml.search.spec import Sweep
from xlamaml.search.faults.continued import PREVIOUS, has_state, set_aside
from xlamaml.search.schedule import rung_steps
from xlamaml.experiment import storage
from xlamaml.experiment.records import AdaptiveRecord, Rung, read_adaptive, trial_folder, write_adaptive
from xlamaml.trainables.assignment import parse_assignment
from xlamaml.trainables.errors import InputError, MissingFileError
from xlamaml.trainables.tasks.outcomes import SUFFIX, parse_outcomes

log = logging.getLogger("xlamaml")


def new_record(sw: Sweep, grid: dict[str, Any] | None = None) -> AdaptiveRecord:
    """Return the record an adaptive sweep starts with: its cells, baseline trials and rungs (the sweep's own
    schedule), the metric and dev targets its decisions use, and `grid`: what the full grid would run
    (search.plan.plan_counts as a dict, which search/sweep.py passes: the planner is not imported here)."""
    metric = "acc" if "acc" in sw.task.metrics else sw.task.metrics[-1]
    return AdaptiveRecord(list(sw.cells), list(sw.baseline_cells), list(sw.rungs), metric, dev_langs=sw.dev_langs,
                          grid=grid)


def cell_steps(sw: Sweep, cell: str, rung: Rung, last: bool) -> int:
    """Return the meta steps a trial of `cell` reaches in `rung`: its share of the cell's own budget (an assignment
    with two query languages has twice the steps), all of it in the last rung."""
    total = sw.trial_config(cell).meta.total_steps
    return total if last else rung_steps(rung.fraction, total)


def rung_trials(record: AdaptiveRecord, index: int, sw: Sweep) -> list[dict[str, Any]]:
    """Return the trial cells of rung `index` (the baseline's in rung 0), each with its rung budget and folder."""
    rung, last = record.rungs[index], index == len(record.rungs) - 1
    dev_max = sw.cfg.eval.dev_max_examples
    out = [{"assignment": b["assignment"], "seed": b["seed"], "folder": trial_folder(b["assignment"], b["seed"]),
            "rung": {"index": 0, "steps": 0, "dev_items": dev_max}} for b in (record.baseline if index == 0 else [])]
    for cell in record.cells_in(index):
        budget = {"index": index, "steps": cell_steps(sw, cell, rung, last), "dev_items": rung.dev_items}
        out += [{"assignment": cell, "seed": s, "folder": trial_folder(cell, s), "rung": dict(budget)}
                for s in rung.seeds]
    return out


def rung_end(reports: list[dict[str, Any]], index: int) -> dict[str, Any] | None:
    """Return the report that ended rung `index` for a trial (its last report of that rung, once done), or None."""
    own = [r for r in reports if r.get("rung/index") == index]
    return own[-1] if own and own[-1].get("done") else None


def todo(exp: str, trials: list[dict[str, Any]], index: int) -> list[dict[str, Any]]:
    """Return the trials of rung `index` still to run: those without their rung-end report, each continuing from its
    folder's checkpoints (`resume_from`) when it has any."""
    out = []
    for t in trials:
        if rung_end(trial_reports(exp, t["folder"]), index) is not None:
            continue
        out.append({**t, "resume_from": set_aside(exp, t["folder"])} if has_state(exp, t["folder"]) else dict(t))
    return out


def read_dev(exp: str, folder: str, lang: str, metric: str, items: int | None,
             steps: int | None = None) -> tuple[list[str], np.ndarray]:
    """Return (uids, values) of a trial's dev outcomes of `lang` (its first `items`; `steps`: those a predictive
    round's dev point kept in `predictions/steps-<n>/`), or raise a one-line error."""
    sub = () if steps is None else (f"steps-{steps}",)
    location = storage.join(exp, folder, "predictions", *sub, f"dev-{lang}{SUFFIX}")
    if not storage.exists(location):
        raise MissingFileError(f"{location}: no dev outcomes; expected the trial to have scored dev there "
                               f"(eval.write_predictions must stay on in an adaptive or predictive sweep)")
    uids, values = parse_outcomes(storage.read_bytes(location).decode("utf-8"), location)
    if metric not in values:
        raise InputError(f"{location}: no column {metric!r}; expected the dev metric the search ranks on")
    return uids[:items] if items else uids, values[metric][:items] if items else values[metric]


def rung_scores(exp: str, record: AdaptiveRecord, index: int, langs: list[str],
                cells: list[str] | None = None) -> dict[str, dict[str, np.ndarray]]:
    """Return scores[target][cell] = (seeds, items) dev outcomes of rung `index` for `cells` (default: all the rung's)
    (dev only: test is never read)."""
    rung = record.rungs[index]
    scores: dict[str, dict[str, np.ndarray]] = {}
    for lang in langs:
        read = {(cell, seed): read_dev(exp, trial_folder(cell, seed), lang, record.metric, rung.dev_items)
                for cell in (record.cells_in(index) if cells is None else cells) for seed in rung.seeds}
        # Every cell is judged on the same items: those every trial scored. With XNLI that is all of them; where the
        # dev split depends on the seed (MLQA's held-out test), only items that are dev for every seed, so an item
        # one seed holds out as test is never judged on.
        first = next(iter(read.values()))[0] if read else []
        shared = set(first).intersection(*(set(uids) for uids, _ in read.values()))
        common = [u for u in first if u in shared]
        if read and not common:
            raise InputError(f"{exp}: the trials of rung {index} share no dev-{lang} item; expected the same dev items "
                             f"for every seed (eval.dev_max_examples too small for a seed-dependent split?)")
        scores[lang] = {}
        for cell in dict.fromkeys(c for c, _ in read):
            rows = []
            for seed in rung.seeds:
                uids, values = read[(cell, seed)]
                where = {u: i for i, u in enumerate(uids)}
                rows.append(values[[where[u] for u in common]])
            scores[lang][cell] = np.stack(rows)
    return scores


def excluded(cells: list[str], langs: list[str]) -> dict[str, list[str]]:
    """Return, per target, the cells not judged on it: their meta stage trained on that language's dev set."""
    out: dict[str, list[str]] = {}
    for lang in langs:
        out[lang] = [c for c in cells if parse_assignment(c).trained_on(lang)]
    return out


def rung_spent(exp: str, record: AdaptiveRecord, index: int, trials: list[dict[str, Any]],
               langs: list[str]) -> dict[str, Any]:
    """Return what rung `index` spent, read from its trials' reports and outcome files: trials run, meta steps,
    dev and test items scored, and trial-seconds."""
    steps = dev = test = 0
    seconds = 0.0
    for t in trials:
        reports = trial_reports(exp, t["folder"])
        end = rung_end(reports, index)
        if end is None:  # errored: it spent what it spent, but nothing of it is counted
            continue
        before = rung_end(reports, index - 1) if index > 0 else None
        steps += int(end.get("meta/steps", 0)) - int((before or {}).get("meta/steps", 0))
        # Each report's own seconds (Ray's time_total_s restarts when a trial continues in a later rung).
        seconds += sum(float(r.get("time_this_iter_s", 0.0)) for r in reports if r.get("rung/index") == index)
        items = t["rung"]["dev_items"]
        dev += sum(len(read_dev(exp, t["folder"], lang, record.metric, items)[0]) for lang in langs)
        if any(k.startswith("test/") for k in end):
            test += count_items(exp, t["folder"], "test")
    return {"rung": index, "trials": sum(rung_end(trial_reports(exp, t["folder"]), index) is not None for t in trials),
            "meta_steps": steps, "dev_items": dev, "test_items": test,
            "trial_seconds": seconds}


def count_items(exp: str, folder: str, split: str, steps: int | None = None) -> int:
    """Return how many items a trial scored on `split`, counted in its per-item outcome files (`steps`: those a
    predictive round's dev point kept in `predictions/steps-<n>/`)."""
    preds = storage.join(exp, folder, "predictions", *(() if steps is None else (f"steps-{steps}",)))
    if not storage.exists(preds):
        return 0
    total = 0
    for name in storage.list_files(preds):
        if name.startswith(f"{split}-") and name.endswith(SUFFIX):
            location = storage.join(preds, name)
            total += len(parse_outcomes(storage.read_bytes(location).decode("utf-8"), location)[0])
    return total


def drop_checkpoints(exp: str, folder: str) -> None:
    """Delete a stopped trial's checkpoints (it is never continued); return None."""
    trial = storage.join(exp, folder)
    if not storage.exists(trial):
        return
    fs, _ = storage.filesystem(trial)
    for name in storage.list_folders(trial):
        if name.startswith("checkpoint_") or name == PREVIOUS:
            fs.delete_dir(storage.filesystem(storage.join(trial, name))[1])


def decision_entry(index: int, decision: Decision, excluded_cells: dict[str, list[str]]) -> dict[str, Any]:
    """Return the record's entry for the decision after rung `index`."""
    return {"rung": index, "kept": list(decision.kept), "stopped": dict(decision.stopped),
            "ranks": decision.ranks, "estimates": decision.estimates, "excluded": excluded_cells}


def run_rungs(sw: Sweep, root: str, name: str, fit: Any, grid: dict[str, Any] | None = None) -> list[Any]:
    """Run (or continue) the rungs of the adaptive sweep `root/name`; return the Tune results of every rung run here.
    `fit(cells)` runs one Tune run of the given trial cells (search.sweep.fit); `grid` the full grid's counts."""
    exp = storage.join(root, name)
    record = read_adaptive(exp)
    if record is None:
        record = new_record(sw, grid)
        write_adaptive(exp, record)
    langs = sw.dev_langs
    a = sw.sweep.adaptive
    results: list[Any] = []
    for index in range(len(record.spent), len(record.rungs)):
        if index > 0:  # the decision before it is recorded: its stopped cells' weights are never needed again
            for cell in record.decisions[index - 1]["stopped"]:
                for seed in record.rungs[index - 1].seeds:
                    drop_checkpoints(exp, trial_folder(cell, seed))
        trials = rung_trials(record, index, sw)
        remaining = todo(exp, trials, index)
        rung = record.rungs[index]
        log.info("adaptive sweep %s: rung %d of %d: %d cells x %d seeds, %d meta steps, %s dev items per target; "
                 "%d trials to run", exp, index, len(record.rungs) - 1, len(record.cells_in(index)),
                 len(rung.seeds), rung.steps, rung.dev_items or "all", len(remaining))
        t0 = time.perf_counter()
        if remaining:
            results += list(fit(remaining))
        # A trial that errored (after sweep.max_failures retries) has no report ending the rung: its cell is stopped
        # (the others go on); in the last rung it is left for a resume to retry, and the sweep exits non-zero.
        failed = [t for t in trials if rung_end(trial_reports(exp, t["folder"]), index) is None]
        if failed and (index == len(record.rungs) - 1 or any(t["assignment"] == "baseline" for t in failed)):
            return results  # a resume retries them: every gain needs the baseline, and the last rung is the answer
        if index < len(record.rungs) - 1:
            broken = sorted({t["assignment"] for t in failed} - {"baseline"})
            judged = [c for c in record.cells_in(index) if c not in broken]
            keep = record.rungs[index + 1].cells  # the schedule's count (search/schedule.py), as the plan printed
            ex = excluded(judged, langs)
            decision = decide(rung_scores(exp, record, index, langs, judged), min(keep, len(judged)), top_k=a.top_k,
                              bound=a.bound, excluded=ex)
            entry = decision_entry(index, decision, ex)
            entry["stopped"].update({c: f"errored in rung {index} (see error.txt in its trial folders)"
                                     for c in broken})
            record.decisions.append(entry)
            log.info("adaptive sweep %s: after rung %d, %d cells go on, %d stopped%s", exp, index,
                     len(decision.kept), len(entry["stopped"]), f" ({len(broken)} errored)" if broken else "")
        spent = rung_spent(exp, record, index, trials, langs)
        spent["wall_seconds"] = time.perf_counter() - t0
        record.spent.append(spent)
        write_adaptive(exp, record)  # whole: a kill before this line reruns only the decision, from the same files
    return results
