"""A predictive sweep (`sweep.mode: predictive`): a model of the map (map_model.py) chooses each next run, stops when no
run is worth its compute, and answers every target with a pick, its contenders and a predicted gain, with an
interval, for every cell, run or not.

Round by round, each one Tune run of its trials in fixed folders (`<assignment>_s<seed>`, as the adaptive sweep's):
    round 0     the baseline, and `init_share` of the cells with the first seed to the full budget, scoring dev at
                every fraction of `sweep.predictive.fractions` on the way (the learning curve)
    decision    read every run's dev outcomes (never test), refit the model, value every possible next run (one more
                seed of a cell to a fraction, or a short run continued to the full budget) by the knowledge gradient of
                the targets' picks per second (search.py, choose.py); record it
    round k     the `batch` best runs: a new seed starts from the base, a continued run from its checkpoints
    stop        nothing worth `min_value` points per grid trial's seconds, or `max_share` of the grid's compute spent
    test round  the picks (finished cells only) continue from their full-budget checkpoints to score test
Full-budget runs pause without test, their weights kept while their cell may still be some target's best (a cell
that later becomes a pick after all is rerun from the base in the test round); once the picks are tested the other
trials' checkpoints are deleted.

Everything a resume needs is in the experiment: `xlamaml_predictive.json` (rounds, decisions, spent, answer), written
whole after each round and each decision, and the trial folders. A resume reruns only the trials of the round in
progress whose round-end report is missing (as the adaptive driver does) and recomputes nothing decided.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from xlamaml.experiment import storage
from xlamaml.experiment.records import PredictiveRecord, read_predictive, trial_folder, write_predictive
from xlamaml.experiment.reports import trial_reports
from xlamaml.search.adaptive.driver import count_items, drop_checkpoints, read_dev, rung_end, todo
from xlamaml.search.predictive.choose import Action, contenders, picks
from xlamaml.search.predictive.map_model import Posterior
from xlamaml.search.predictive.prior import judged_mask
from xlamaml.search.predictive.search import SearchState, first_cells, map_design, next_runs, refit
from xlamaml.search.schedule import rung_steps
from xlamaml.search.spec import Sweep
from xlamaml.trainables.errors import InputError

log = logging.getLogger("xlamaml")


def new_record(sw: Sweep, grid: dict[str, Any] | None = None) -> PredictiveRecord:
    """Return the record a predictive sweep starts with: round 0 (the baseline, then the first cells: seed 0, full
    budget, dev at every fraction); `grid` the full grid's counts (search.plan.plan_counts as a dict)."""
    p = sw.sweep.predictive
    metric = "acc" if "acc" in sw.task.metrics else sw.task.metrics[-1]
    runs = [{"cell": sw.cells[c], "seed": 0, "from": 0.0, "to": 1.0, "dev_at": list(p.fractions)}
            for c in sorted(first_cells(sw.cells, p, seed=0))]
    return PredictiveRecord(list(sw.cells), list(sw.baseline_cells), list(sw.sweep.seeds), metric, list(sw.dev_langs),
                            list(p.fractions), rounds=[{"runs": runs, "test": False}],
                            grid=grid)


def steps_at(sw: Sweep, cell: str, fraction: float) -> int:
    """Return the meta steps of `fraction` of the cell's own budget (all of it at 1)."""
    return rung_steps(fraction, sw.trial_config(cell).meta.total_steps)


def round_trials(record: PredictiveRecord, index: int, sw: Sweep) -> list[dict[str, Any]]:
    """Return the trials of round `index` (the baseline's in round 0), each with its budget and folder."""
    dev_max = sw.cfg.eval.dev_max_examples
    out = [{"assignment": b["assignment"], "seed": b["seed"], "folder": trial_folder(b["assignment"], b["seed"]),
            "rung": {"index": 0, "steps": 0, "dev_items": dev_max}} for b in (record.baseline if index == 0 else [])]
    rnd = record.rounds[index]
    for run in rnd["runs"]:
        cell, seed = run["cell"], record.seeds[run["seed"]]
        rung = {"index": index, "steps": steps_at(sw, cell, run["to"]), "dev_items": dev_max,
                "dev_at": sorted({steps_at(sw, cell, f) for f in run["dev_at"]}), "test": bool(rnd["test"])}
        out.append({"assignment": cell, "seed": seed, "folder": trial_folder(cell, seed), "rung": rung})
    return out


def search_state(record: PredictiveRecord) -> tuple[SearchState, set[int]]:
    """Return (what the finished rounds ran: per cell index, seed index -> fraction reached; the cells with a run
    that errored, never run again)."""
    state, broken = SearchState(), set()
    where = {c: i for i, c in enumerate(record.cells)}
    for rnd, spent in zip(record.rounds, record.spent):
        if rnd["test"]:
            continue
        failed = set(spent.get("failed", []))
        for run in rnd["runs"]:
            c = where[run["cell"]]
            if run["cell"] in failed:
                broken.add(c)
            else:
                state.reached.setdefault(c, {})[run["seed"]] = float(run["to"])
    return state, broken


def run_of(act: Action, state: SearchState, cells: Sequence[str], fractions: Sequence[float]) -> dict[str, Any]:
    """Return the record's run for an action: a new seed from the base, or the cell's short run continued."""
    seeds = state.reached.get(act.cell, {})
    if act.continues:
        s = min(s for s, f in seeds.items() if f < 1)
        return {"cell": cells[act.cell], "seed": s, "from": seeds[s], "to": 1.0, "dev_at": [1.0]}
    return {"cell": cells[act.cell], "seed": len(seeds), "from": 0.0, "to": act.fraction,
            "dev_at": [f for f in fractions if f <= act.fraction]}


class DevOutcomes:
    """The runs' dev outcomes, read once each from the trial folders: the baseline's (its first trial) and each run's
    at each fraction it scored (`predictions/steps-<n>/`). Every array is over the same items per target: those the
    baseline and every file read scored, the first `n` of them (n the smallest count over targets)."""

    def __init__(self, exp: str, record: PredictiveRecord, sw: Sweep) -> None:
        self.exp, self.record, self.sw = exp, record, sw
        self.files: dict[tuple[int, int, float], dict[str, tuple[list[str], np.ndarray]]] = {}
        first = record.baseline[0]
        self.base_files = {t: self.read(trial_folder(first["assignment"], first["seed"]), None, t)
                           for t in record.dev_langs}

    def read(self, folder: str, steps: int | None, lang: str) -> tuple[list[str], np.ndarray]:
        """Return (uids, values) of a trial's dev outcomes of `lang` at `steps` (None: its last dev report)."""
        return read_dev(self.exp, folder, lang, self.record.metric, None, steps)

    def load(self, state: SearchState) -> None:
        """Read every file the state's runs wrote and this has not read yet; return None."""
        r = self.record
        for c, seeds in state.reached.items():
            for s, reached in seeds.items():
                for f in (f for f in r.fractions if f <= reached):
                    if (c, s, f) not in self.files:
                        folder = trial_folder(r.cells[c], r.seeds[s])
                        steps = steps_at(self.sw, r.cells[c], f)
                        self.files[(c, s, f)] = {t: self.read(folder, steps, t) for t in r.dev_langs}

    def arrays(self, state: SearchState) -> tuple[np.ndarray, Any]:
        """Return (the baseline's (targets, items) outcomes, search.Outcomes over the state's runs)."""
        self.load(state)
        r = self.record
        keep = []
        for t in r.dev_langs:
            shared = set(self.base_files[t][0]).intersection(*(set(v[t][0]) for v in self.files.values()))
            keep.append([u for u in self.base_files[t][0] if u in shared])
        n = min(len(k) for k in keep)
        if n == 0:
            raise InputError(f"{self.exp}: the runs and the baseline share no dev item of some target; expected the "
                             f"same dev items for every trial")

        def pick(uids: list[str], values: np.ndarray, items: list[str]) -> np.ndarray:
            where = {u: i for i, u in enumerate(uids)}
            return values[[where[u] for u in items[:n]]]

        base = np.stack([pick(*self.base_files[t], keep[i]) for i, t in enumerate(r.dev_langs)])
        cache: dict[tuple[int, int, float], np.ndarray] = {}

        def one(c: int, s: int, f: float) -> np.ndarray:
            if (c, s, f) not in cache:
                got = self.files[(c, s, f)]
                cache[(c, s, f)] = np.stack([pick(*got[t], keep[i]) for i, t in enumerate(r.dev_langs)])
            return cache[(c, s, f)]

        def outcomes(c: int, f: float, seeds: Sequence[int]) -> np.ndarray:
            return np.stack([one(c, s, f) for s in seeds], axis=1)  # (targets, seeds, items)

        return base, outcomes


def measured_seconds(record: PredictiveRecord) -> tuple[float, float]:
    """Return (seconds per meta step, seconds per dev report) measured on the finished rounds' cell runs (their
    accounts in `record.spent`: meta seconds over meta steps, the rest of their seconds over their dev reports)."""
    cells = [s for rnd, s in zip(record.rounds, record.spent) if not rnd["test"]]
    meta_s = sum(s.get("meta_seconds", 0.0) for s in cells)
    steps = sum(s.get("cell_meta_steps", 0) for s in cells)
    other = sum(s.get("eval_seconds", 0.0) for s in cells)
    reports = sum(s.get("dev_reports", 0) for s in cells)
    return (meta_s / steps if steps else 1.0), (other / reports if reports else 0.0)


def seconds_model(sw: Sweep, step_s: float, dev_s: float) -> Any:
    """Return search.Seconds: a run between two fractions of the cells' mean budget, scoring dev `reports` times."""
    total = float(np.mean([sw.trial_config(c).meta.total_steps for c in sw.cells]))
    return lambda frm, to, reports: step_s * total * (to - frm) + reports * dev_s


def run_seconds(record: PredictiveRecord, seconds: Any) -> float:
    """Return the estimated seconds of every cell run the finished rounds ran (the grid's are counted alike)."""
    return sum(seconds(r["from"], r["to"], len(r["dev_at"])) for rnd, _ in zip(record.rounds, record.spent)
               if not rnd["test"] for r in rnd["runs"])


def answer(post: Posterior, judged: np.ndarray, state: SearchState, reason: str) -> dict[str, Any]:
    """Return the sweep's answer: per target the pick (a finished cell), the contenders and every judged cell's
    predicted gain with a 90% interval, how many full-budget seeds it ran and the fraction it reached."""
    chosen = picks(post, judged, state.finished(len(post.cells)))
    lo, hi = post.interval()
    out: dict[str, Any] = {"stopped": reason, "targets": {}}
    for t, target in enumerate(post.targets):
        cells = {}
        for c in np.flatnonzero(judged[t]):
            reached = state.reached.get(int(c), {})
            cells[post.cells[c]] = {"mean": float(post.mean[t, c]), "lo": float(lo[t, c]), "hi": float(hi[t, c]),
                                    "full_seeds": len(state.full_seeds(int(c))),
                                    "reached": max(reached.values(), default=0.0)}
        pick = chosen.get(t)
        out["targets"][target] = {
            "pick": post.cells[pick] if pick is not None else None,
            "contenders": [post.cells[c] for c in contenders(post, judged, pick, t)] if pick is not None else [],
            "cells": cells}
    return out


def unlikely_cells(post: Posterior, judged: np.ndarray, finished: np.ndarray) -> list[int]:
    """Return the finished cells that may be no target's best: for every target they are judged on, under a 5% chance
    of beating its pick (choose.contenders)."""
    likely: set[int] = set()
    for t, pick in picks(post, judged, finished).items():
        likely.update(contenders(post, judged, pick, t))
    return [int(c) for c in np.flatnonzero(finished) if int(c) not in likely]


def drop_unlikely(exp: str, record: PredictiveRecord, post: Posterior, judged: np.ndarray,
                  state: SearchState) -> list[str]:
    """Delete the full-budget weights of the cells that may be no target's best (a pairs sweep would otherwise keep a
    checkpoint per finished run, about 1 GB each with mBERT); return those cells. Should one become a pick after all,
    the test round reruns its seeds from the base (the same seed reaches the same weights on the same kind of CPU)."""
    out = []
    for c in unlikely_cells(post, judged, state.finished(len(record.cells))):
        for s in state.full_seeds(c):
            drop_checkpoints(exp, trial_folder(record.cells[c], record.seeds[s]))
        out.append(record.cells[c])
    return out


def start_again(record: PredictiveRecord, sw: Sweep, broken: set[int], index: int) -> None:
    """Append the decision and round after rounds in which every cell run errored: a new first design among the
    cells that never errored, or (none left) an answer with no pick; return None."""
    left = [c for c in range(len(record.cells)) if c not in broken]
    p = sw.sweep.predictive
    entry = {"round": index, "values": [], "picks": {}, "grid_share": 0.0, "weights_dropped": [], "restart": True,
             "stop": None if left else "every cell's run errored (see error.txt in their trial folders)"}
    record.decisions.append(entry)
    if not left:
        record.answer = {"stopped": entry["stop"], "targets": {}}
        record.rounds.append({"test": True, "runs": []})
        return
    first = first_cells([record.cells[c] for c in left], p, seed=index)
    record.rounds.append({"test": False, "runs": [{"cell": record.cells[left[i]], "seed": 0, "from": 0.0, "to": 1.0,
                                                   "dev_at": list(p.fractions)} for i in sorted(first)]})


def decide(exp: str, record: PredictiveRecord, sw: Sweep, cache: dict[str, DevOutcomes]) -> None:
    """Append the decision after the last finished round and the round it adds (the next runs, or the picks' test
    round with the answer); return None. `cache` keeps the dev outcomes read, across decisions."""
    p, index = sw.sweep.predictive, len(record.spent) - 1
    state, broken = search_state(record)
    if not state.reached:  # every cell run so far errored: nothing to fit
        start_again(record, sw, broken, index)
        return
    judged = judged_mask(record.dev_langs, record.cells)
    if "dev" not in cache:
        cache["dev"] = DevOutcomes(exp, record, sw)
    dev = cache["dev"]
    base, outcomes = dev.arrays(state)
    design = map_design(record.dev_langs, record.cells, p.side)
    start = next((d["variances"] for d in reversed(record.decisions) if d.get("variances")), None)
    post, curve, one_run = refit(design, judged, state, outcomes, base, p, start)
    step_s, dev_s = measured_seconds(record)
    seconds = seconds_model(sw, step_s, dev_s)
    trial_s = seconds(0.0, 1.0, 1)
    batch, stop = next_runs(post, judged, state, curve, one_run, len(record.seeds), seconds, p, trial_s, broken)
    grid_s = trial_s * len(record.cells) * len(record.seeds)
    spent_s = run_seconds(record, seconds)
    reason = None
    if stop:
        reason = "no run is worth sweep.predictive.min_value" if batch else "every cell ran every seed"
    elif spent_s + sum(a.seconds for a, _ in batch) > p.max_share * grid_s:
        reason = f"the next runs would pass sweep.predictive.max_share ({p.max_share:g}) of the grid's compute"
    runs = [run_of(a, state, record.cells, p.fractions) for a, _ in batch]
    dropped = drop_unlikely(exp, record, post, judged, state)
    entry = {"round": index, "variances": dict(post.variances), "step_seconds": step_s, "dev_seconds": dev_s,
             "weights_dropped": dropped,
             "grid_share": spent_s / grid_s if grid_s else 0.0,
             "values": [{**r, "value": v, "seconds": a.seconds} for r, (a, v) in zip(runs, batch)],
             "picks": {record.dev_langs[t]: record.cells[c]
                       for t, c in picks(post, judged, state.finished(len(record.cells))).items()},
             "stop": reason}
    record.decisions.append(entry)
    if reason is None:
        record.rounds.append({"runs": runs, "test": False})
        return
    record.answer = answer(post, judged, state, reason)
    where = {c: i for i, c in enumerate(record.cells)}
    tested = sorted({v["pick"] for v in record.answer["targets"].values() if v["pick"] is not None}, key=where.get)
    record.rounds.append({"test": True, "runs": [
        {"cell": c, "seed": s, "from": 1.0, "to": 1.0, "dev_at": []} for c in tested
        for s in sorted(state.full_seeds(where[c]))]})


def round_spent(exp: str, record: PredictiveRecord, index: int, trials: list[dict[str, Any]]) -> dict[str, Any]:
    """Return what round `index` spent, read from its trials' reports and outcome files once, at its end: trials run,
    meta steps, dev and test items scored, trial-seconds, the cells whose trial errored, and the cell runs' meta and
    evaluation seconds, meta steps and dev reports (the decisions' seconds model reads these, not the reports again)."""
    steps = dev = test = done = cell_steps = dev_reports = 0
    seconds = meta_seconds = eval_seconds = 0.0
    failed = []
    for t in trials:
        reports = trial_reports(exp, t["folder"])
        if rung_end(reports, index) is None:
            failed.append(t["assignment"])
            continue
        done += 1
        own = [r for r in reports if r.get("rung/index") == index]
        before = [r for r in reports if r.get("rung/index", -1) < index and "meta/steps" in r]
        ran = int(own[-1].get("meta/steps", 0)) - int(before[-1]["meta/steps"] if before else 0)
        steps += ran
        took = sum(float(r.get("time_this_iter_s", 0.0)) for r in own)
        seconds += took
        if t["assignment"] != "baseline":  # a cell run: what the next decisions' seconds model is measured on
            start = float(before[-1].get("meta/seconds", 0.0)) if before else 0.0
            meta = float(own[-1].get("meta/seconds", 0.0)) - start
            meta_seconds += meta
            eval_seconds += max(0.0, took - meta)
            cell_steps += ran
            dev_reports += sum(1 for r in own if any(k.startswith("dev/") for k in r))
        points = t["rung"].get("dev_at") or [None]  # the baseline and the test round: one dev report, at the end
        dev += sum(count_items(exp, t["folder"], "dev", steps) for steps in points)
        if any(k.startswith("test/") for k in own[-1]):
            test += count_items(exp, t["folder"], "test", None)
    return {"round": index, "trials": done, "meta_steps": steps, "dev_items": dev, "test_items": test,
            "trial_seconds": seconds, "failed": sorted(set(failed)), "meta_seconds": meta_seconds,
            "eval_seconds": eval_seconds, "cell_meta_steps": cell_steps, "dev_reports": dev_reports}


def run_rounds(sw: Sweep, root: str, name: str, fit: Any, grid: dict[str, Any] | None = None) -> list[Any]:
    """Run (or continue) the rounds of the predictive sweep `root/name`; return the Tune results of every round run
    here. `fit(trials)` runs one Tune run of the given trials (search.sweep.fit); `grid` the full grid's counts, kept
    in the record for the analysis."""
    exp = storage.join(root, name)
    record = read_predictive(exp)
    if record is None:
        record = new_record(sw, grid)
        write_predictive(exp, record)
    results: list[Any] = []
    cache: dict[str, DevOutcomes] = {}
    while not record.finished():
        index = len(record.spent)
        if index == len(record.rounds):  # a round finished, its decision not yet made (a kill in between)
            decide(exp, record, sw, cache)
            write_predictive(exp, record)
            continue
        rnd = record.rounds[index]
        trials = round_trials(record, index, sw)
        remaining = todo(exp, trials, index)
        log.info("predictive sweep %s: round %d: %d %s; %d trials to run", exp, index, len(rnd["runs"]),
                 "picks' runs to score test" if rnd["test"] else "runs", len(remaining))
        t0 = time.perf_counter()
        if remaining:
            results += list(fit(remaining))
        spent = round_spent(exp, record, index, trials)
        spent["wall_seconds"] = time.perf_counter() - t0
        # An errored baseline or pick: a resume retries it (every gain needs the baseline; the test is the answer). An
        # errored cell run: that cell is never run again, the others go on.
        if spent["failed"] and (rnd["test"] or "baseline" in spent["failed"]):
            return results
        record.spent.append(spent)
        write_predictive(exp, record)
        if rnd["test"]:
            break
    tested = {trial_folder(r["cell"], record.seeds[r["seed"]]) for r in record.rounds[-1]["runs"]}
    for folder in {trial_folder(r["cell"], record.seeds[r["seed"]]) for rnd in record.rounds for r in rnd["runs"]}:
        if folder not in tested:  # never continued again: its weights would only fill the storage
            drop_checkpoints(exp, folder)
    log.info("predictive sweep %s: done after %d rounds: %s", exp, len(record.rounds),
             (record.answer or {}).get("stopped"))
    return results
