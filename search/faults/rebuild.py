"""A resume whose Ray experiment state is damaged beyond repair: the run rebuilt from the sweep's record and the trial
folders, never replaced by new trials.

Every grid cell of the record (assignment x seed) is matched to its trial folder by the folder's params.json. A
finished cell (a final report with test metrics) is left as it is; an unfinished one runs again in its own folder,
continuing from its newest readable checkpoint (search/faults/continued.py, as an adaptive sweep's later rung does); a
cell with no folder starts fresh. Only grid sweeps without extra
`sweep.grid` axes can be rebuilt (each cell is then one assignment and seed); other sweeps get a one-line error.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
from dataclasses import dataclass
from typing import Any, Iterator


from xlamaml.experiment.reports import is_final, trial_reports
from xlamaml.search.faults.continued import set_aside
from xlamaml.experiment import storage
from xlamaml.trainables.assignment import flat_trial, folder_prefix
from xlamaml.trainables.config_parsing import nested
from xlamaml.trainables.errors import XlamamlError

log = logging.getLogger("xlamaml")


class RestoreFailed(Exception):
    """Ray could not restore its experiment state (it would start the experiment over); the message says why."""


class _RefuseRestart(logging.Filter):
    """Turns Ray's "Failed to restore the run state" (after which it starts the whole experiment anew, or, with no
    param space, one empty trial) into RestoreFailed, raised where Ray logs it."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Return True for every other record; raise RestoreFailed for that one."""
        if record.getMessage().startswith("Failed to restore the run state"):
            exc = record.exc_info[1] if record.exc_info else None
            text = " ".join(str(exc).split())[:200] if exc is not None else "no reason given"
            raise RestoreFailed(f"Ray could not restore its experiment state ({type(exc).__name__}: {text})")
        return True


@contextlib.contextmanager
def refusing_restart() -> Iterator[None]:
    """Run a block (a restored Tuner's fit) where Ray's failure to restore raises RestoreFailed instead of starting
    the experiment over."""
    refuse = _RefuseRestart()
    logger = logging.getLogger("ray.tune.execution.tune_controller")
    logger.addFilter(refuse)
    try:
        yield
    finally:
        logger.removeFilter(refuse)


class RebuildError(XlamamlError):
    """An experiment whose Ray state is damaged and which cannot be rebuilt from its record; the message says why."""


Key = tuple  # (assignment, seed, the value of each extra grid axis as JSON)


def _value(config: dict[str, Any], dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def cell_key(config: dict[str, Any], axes: list[str]) -> Key | None:
    """Return the cell a trial config belongs to: its assignment, seed and extra grid axes' values (None: no cell)."""
    flat = flat_trial(config)
    if flat.get("assignment") is None:
        return None
    return (flat["assignment"], flat.get("seed"), *(json.dumps(_value(flat, k), sort_keys=True) for k in axes))


@dataclass(frozen=True)
class Folder:
    """A trial folder of the experiment: its name, its cell and whether it finished."""

    name: str
    cell: Key | None
    finished: bool
    reports: int


def read_folder(exp: str, name: str, axes: list[str]) -> Folder:
    """Return what the trial folder `name` of `exp` holds: its cell (from params.json, else its reports' config)."""
    trial = storage.join(exp, name)
    reports = trial_reports(exp, name)
    config = None
    params = storage.join(trial, "params.json")
    if storage.exists(params):
        try:
            config = json.loads(storage.read_bytes(params))
        except ValueError:
            config = None
    if not isinstance(config, dict):
        config = next((r["config"] for r in reversed(reports) if isinstance(r.get("config"), dict)), None)
    cell = cell_key(config, axes) if isinstance(config, dict) else None
    finished = any(is_final(r) for r in reports)
    return Folder(name, cell, finished, len(reports))


def rebuilt_cells(exp: str, cells: list[dict[str, Any]], why: str,
                  combos: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Return the grid cells (x the extra axes' `combos`) still to run, each with its trial folder (`folder`) and the
    checkpoints to continue from (`resume_from`) when it has one (a folder whose params.json is cut and which
    reported nothing is known by its name); log one line per folder that is no cell of the sweep, and one that sums
    up. A cell of an extra axis carries that axis's value in it (nested, as the trial config holds it)."""
    combos = combos or [{}]
    axes = list(combos[0])
    wanted = [{**c, **nested(combo)} for c in cells for combo in combos]
    keys = {cell_key(c, axes): c for c in wanted}
    folders = [read_folder(exp, n, axes) for n in storage.list_folders(exp) if n != "assets" and not n.startswith(".")]
    by_cell: dict[Key, Folder] = {}
    for f in folders:
        if f.cell is None:  # params.json cut and no report yet: the folder's name says which cell it is
            named = [k for k, c in keys.items() if f.name.startswith(folder_prefix(c["assignment"], c["seed"]))]
            if len(named) == 1:
                f = dataclasses.replace(f, cell=named[0])
        if f.cell is None or f.cell not in keys:
            log.warning("resume: %s: not a trial of this sweep's record (no cell of it); left out",
                        storage.join(exp, f.name))
            continue
        best = by_cell.get(f.cell)
        if best is None or (f.finished, f.reports) > (best.finished, best.reports):
            by_cell[f.cell] = f
    log.warning("resume: %s; rebuilding the run from %s and the trial folders", why, exp)
    todo = []
    for key, cell in keys.items():
        f = by_cell.get(key)
        if f is not None and f.finished:
            continue
        if f is None:
            todo.append(dict(cell))
            continue
        previous = set_aside(exp, f.name)
        todo.append({**cell, "folder": f.name, "resume_from": previous})
    log.warning("resume: %d of %d trials finished; %d continue in their folders, %d start", len(keys) - len(todo),
                len(keys), sum("folder" in c for c in todo), sum("folder" not in c for c in todo))
    return todo


def check_rebuildable(mode: str) -> None:
    """Return None when a sweep of `mode` can be rebuilt from its record (grid; adaptive sweeps resume rung by rung
    from theirs); else raise RebuildError."""
    if mode != "grid":
        raise RebuildError(f"Ray's experiment state is damaged and a {mode} sweep cannot be rebuilt from its record; "
                           f"expected a grid sweep (rerun it under another --name)")
