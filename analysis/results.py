"""An experiment directory (Ray Tune layout) -> one tidy table of every trial's final metrics.

A damaged experiment (a full disk, a kill mid-write) still gives a table: a trial whose params.json is cut takes its
config from its reports, and a trial with neither is left out; each such file is one warning line.

In an adaptive sweep (its record, experiment.records.read_adaptive) a trial of a cell a decision stopped has status
'stopped': it never scored test, like an incomplete trial, but it is neither unfinished nor a failure."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import pandas as pd

from xlamaml.experiment.records import read_adaptive, read_predictive
from xlamaml.experiment.reports import Metric, final_metrics, has_split, read_reports
from xlamaml.analysis.aggregate import VARIANT
from xlamaml.analysis.trial_info import KNOWN_LANGS, TrialInfo, trial_info
from xlamaml.trainables.assignment import parse_assignment
from xlamaml.trainables.errors import InputError, MissingFileError

log = logging.getLogger("xlamaml")

CONFIG_COLUMNS: tuple[str, ...] = (
    "assignment", "method", "support", "query", "aux", "sampling", "parallel", "seed", "inner_lr", "outer_lr",
    "inner_steps", "first_order", "task", "model", "few_shot",
)
COLUMNS: tuple[str, ...] = (
    ("trial_id", "trial_dir", "status") + CONFIG_COLUMNS + ("split", "lang", "metric", "value", "iteration")
)


def trial_dirs(exp_dir: Path) -> list[Path]:
    """Return the trial folders of an experiment (those holding params.json), sorted by name."""
    if not exp_dir.is_dir():
        raise MissingFileError(f"{exp_dir}: experiment directory not found")
    dirs = sorted(p for p in exp_dir.iterdir() if p.is_dir() and (p / "params.json").is_file())
    if not dirs:
        raise MissingFileError(f"{exp_dir}: no trials in this directory (no subfolder holds a params.json)")
    if not any(is_xlamaml_trial(d) for d in dirs):
        raise InputError(f"{exp_dir}: not an xlamaml experiment (no trial's params.json holds a run config: task, "
                         f"method, meta, eval); expected a folder written by `xlamaml sweep`")
    return dirs


def is_xlamaml_trial(trial: Path) -> bool:
    """Return whether the trial folder's params.json holds an xlamaml run config (another program's Ray Tune trial
    does not)."""
    try:
        params = json.loads((trial / "params.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return True  # cut: repaired or reported elsewhere, not a reason to refuse the experiment
    return isinstance(params, dict) and {"task", "method", "meta", "eval"} <= set(params)


def folder_trial_id(name: str) -> str:
    """Return the Ray trial id in a trial folder's name ('T_abb19_00002_2_...' -> 'abb19_00002'), else the name."""
    # Needed for trials that failed before their first report: only the folder names them then.
    found = re.search(r"(?:^|_)([0-9a-f]{5}_\d{5})(?:_|$)", name)
    return found.group(1) if found else name


def read_params(path: Path) -> dict[str, Any]:
    """Return the config dict of a params.json, or raise a one-line InputError naming the file."""
    try:
        params = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise InputError(f"{path}:{e.lineno}: malformed JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(params, dict):
        raise InputError(f"{path}: expected a JSON object, got {type(params).__name__}")
    return params


def trial_status(trial_dir: Path, metrics: list[Metric], stopped: bool = False) -> str:
    """Return 'done' (test metrics reported), 'stopped' (no test metrics, its cell stopped by an adaptive sweep's
    decision: `stopped`), 'error' (error.txt, no test metrics) or 'incomplete'."""
    # Test metrics win over error.txt: a trial restored with resume_errored keeps the old error.txt
    # even after it finished, and its final report is as good as any.
    if has_split(metrics, "test"):
        return "done"
    if stopped:
        return "stopped"
    return "error" if (trial_dir / "error.txt").is_file() else "incomplete"


def stopped_cells(exp_dir: Path) -> dict[str, int]:
    """Return {cell: the rung after which it stopped} of an adaptive experiment's record, {cell: its last round} of
    the cells a finished predictive sweep ran but did not pick (never tested), {} for another experiment."""
    record = read_adaptive(str(exp_dir))
    if record is not None:
        return record.stopped()
    predictive = read_predictive(str(exp_dir))
    if predictive is None or not predictive.finished():
        return {}
    tested = {r["cell"] for r in predictive.rounds[-1]["runs"]}
    return {r["cell"]: i for i, rnd in enumerate(predictive.rounds) for r in rnd["runs"] if r["cell"] not in tested}


def trial_config(trial_dir: Path, reports: list[dict[str, Any]]) -> tuple[dict[str, Any], str] | None:
    """Return (the trial's config, the file it came from): its params.json, else, when that is cut or malformed, the
    `config` of its last report (one warning line); None when neither can be read (one warning line)."""
    path = trial_dir / "params.json"
    try:
        return read_params(path), str(path)
    except InputError as e:
        configs = [r["config"] for r in reports if isinstance(r.get("config"), dict)]
        if configs:
            log.warning("%s; the trial's config is read from its result.json instead", e)
            return configs[-1], str(trial_dir / "result.json")
        log.warning("%s; no report holds its config either: the trial is left out", e)
        return None


def trial_rows(trial_dir: Path, stopped: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    """Return the tidy rows of one trial (one placeholder row when it reported nothing; none when its config cannot
    be read); `stopped`: the assignments an adaptive sweep stopped."""
    reports = read_reports(trial_dir / "result.json")
    found = trial_config(trial_dir, reports)
    if found is None:
        return []
    info: TrialInfo = trial_info(*found)
    metrics = final_metrics(reports)
    ids = [r["trial_id"] for r in reports if r.get("trial_id")]
    head = {"trial_id": str(ids[-1]) if ids else folder_trial_id(trial_dir.name), "trial_dir": str(trial_dir),
            "status": trial_status(trial_dir, metrics, info.assignment in stopped), **info.as_dict()}
    if not metrics:
        # Keep trials that failed before their first report visible, with an empty metric.
        return [{**head, "split": None, "lang": None, "metric": None, "value": float("nan"), "iteration": None}]
    return [{**head, "split": m.split, "lang": m.lang, "metric": m.metric, "value": m.value,
             "iteration": m.iteration} for m in metrics]


def canonical(cell: str) -> str:
    """Return an assignment's canonical key (as trial_info names it), or the text itself when it does not parse."""
    try:
        return parse_assignment(cell, KNOWN_LANGS).key
    except ValueError:
        return cell


def load_results(exp_dir: str | Path) -> pd.DataFrame:
    """Return the experiment's tidy table: one row per trial x split x language x metric (final values)."""
    stopped = frozenset(canonical(cell) for cell in stopped_cells(Path(exp_dir)))
    rows = [row for d in trial_dirs(Path(exp_dir)) for row in trial_rows(d, stopped)]
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    df["value"] = df["value"].astype(float)
    # Nullable integers: a baseline has no inner_steps, a trial that never reported no iteration.
    for col in ("seed", "inner_steps", "iteration"):
        try:
            df[col] = df[col].astype("Int64")
        except (TypeError, ValueError):  # a hand-written config with, say, a string seed stays as it is
            pass
    return once_per_seed(df, str(exp_dir))


def once_per_seed(df: pd.DataFrame, exp: str) -> pd.DataFrame:
    """Return `df` with each (variant, seed) from one trial only: two trials of the same cell and seed (two drivers
    on one experiment, a copied folder) are one piece of evidence, not two seeds. The trial kept is a finished one,
    then the first by folder name; one warning line names what was left out."""
    key = [c for c in (*VARIANT, "seed") if c in df.columns]
    if df.empty or not key:
        return df
    trials = df.drop_duplicates("trial_dir").assign(_unfinished=lambda t: t["status"] != "done")
    trials = trials.sort_values(["_unfinished", "trial_dir"], kind="stable")
    repeated = trials[trials.duplicated(key, keep="first")]
    if repeated.empty:
        return df
    log.warning("%s: %d trial(s) repeat a variant and seed already counted (%s); each variant and seed is counted "
                "once", exp, len(repeated), ", ".join(Path(str(d)).name for d in repeated["trial_dir"][:3]))
    return df[~df["trial_dir"].isin(set(repeated["trial_dir"]))].reset_index(drop=True)
