"""Before a resume: Ray's own files that a full disk or a kill left cut, repaired or set aside, one line per file.

    <trial>/result.json       cut or glued lines dropped (the reports they hold kept), so Ray appends whole lines
    <trial>/params.json       rewritten from the config in the trial's reports when it cannot be read
    experiment_state-*.json   a cut one is set aside (`.damaged-<name>`), so Ray restores from the newest whole one
    basic-variant-state-*, search_gen_state-*, tuner.pkl   checked whole (their pickle opcodes walked, never run)

`damaged_state` says whether Ray's experiment state is beyond that (no whole state file, or a cut `tuner.pkl`):
the resume then rebuilds the run from the sweep's record and the trial folders (`search/faults/rebuild.py`).
"""

from __future__ import annotations

import json
import logging
import pickletools
from dataclasses import dataclass, field

from xlamaml.experiment.reports import parse_report
from xlamaml.experiment import storage

log = logging.getLogger("xlamaml")
STATE_PREFIXES = ("experiment_state-",)
SEARCH_STATE_PREFIXES = ("basic-variant-state-", "search_gen_state-")
TUNER_FILE = "tuner.pkl"


@dataclass
class Repair:
    """What a repair did: one line per file it changed or set aside, and the damage it could not mend."""

    lines: list[str] = field(default_factory=list)
    damaged_state: str | None = None  # why Ray's experiment state cannot be restored, else None


def whole_pickle(data: bytes) -> bool:
    """Return whether `data` is a whole pickle (its opcodes walked up to STOP; nothing is unpickled or run)."""
    try:
        for _ in pickletools.genops(data):
            pass
    except Exception:  # any malformed or cut stream  # noqa: BLE001
        return False
    return bool(data)


def whole_json(data: bytes) -> bool:
    """Return whether `data` is one whole JSON document."""
    try:
        json.loads(data)
    except ValueError:
        return False
    return True


def repair_result(location: str) -> str | None:
    """Rewrite a trial's result.json without its cut or glued lines (keeping the reports they hold); return the line
    that says so, or None when it was whole."""
    text = storage.read_bytes(location).decode("utf-8", "replace")
    lines = [line for line in text.splitlines() if line.strip()]
    cut = sum(not whole_json(line.encode()) for line in lines)
    if not cut and (not text or text.endswith("\n")):
        return None
    kept = [r for r in (parse_report(line) for line in lines) if r is not None]
    storage.write_bytes(location, "".join(json.dumps(r) + "\n" for r in kept).encode())
    return f"{location}: {max(cut, 1)} cut line(s) repaired or dropped; {len(kept)} report(s) kept"


def repair_params(location: str, result: str) -> str | None:
    """Rewrite a trial's params.json from the config in its reports when it cannot be read; return the line that
    says what was done, or None when it was whole."""
    if storage.exists(location) and whole_json(storage.read_bytes(location)):
        return None
    configs = []
    if storage.exists(result):
        for line in storage.read_bytes(result).decode("utf-8", "replace").splitlines():
            report = parse_report(line) if line.strip() else None
            if report is not None and isinstance(report.get("config"), dict):
                configs.append(report["config"])
    if not configs:
        return f"{location}: cut or missing, and no report holds the trial's config; left as it is"
    storage.write_bytes(location, json.dumps(configs[-1], indent=2, sort_keys=True).encode())
    return f"{location}: cut or missing; rewritten from the config in the trial's result.json"


def repair_trials(exp: str) -> list[str]:
    """Repair the result.json and params.json of every trial folder of `exp`; return one line per file changed."""
    lines = []
    for folder in storage.list_folders(exp):
        if folder == "assets" or folder.startswith("."):
            continue
        trial = storage.join(exp, folder)
        result = storage.join(trial, "result.json")
        if storage.exists(result):
            lines.append(repair_result(result))
        if storage.exists(result) or storage.exists(storage.join(trial, "params.json")):
            lines.append(repair_params(storage.join(trial, "params.json"), result))
    return [line for line in lines if line]


def _files(exp: str, prefixes: tuple[str, ...]) -> list[str]:
    """Return the names of the files directly in `exp` that start with one of `prefixes`, newest name first."""
    return sorted((n for n in storage.list_files(exp) if "/" not in n and n.startswith(prefixes)), reverse=True)


def repair_state(exp: str) -> tuple[list[str], str | None]:
    """Set aside Ray's cut experiment-state and search-state files; return (one line per file set aside, why the
    state cannot be restored or None)."""
    lines: list[str] = []
    tuner = storage.join(exp, TUNER_FILE)
    if not storage.exists(tuner) or not whole_pickle(storage.read_bytes(tuner)):
        return lines, f"{tuner}: cut or missing"
    for prefixes, check in ((STATE_PREFIXES, whole_json), (SEARCH_STATE_PREFIXES, whole_pickle)):
        for name in _files(exp, prefixes):
            location = storage.join(exp, name)
            if not check(storage.read_bytes(location)):
                storage.move(location, storage.join(exp, f".damaged-{name}"))
                lines.append(f"{location}: cut; set aside as .damaged-{name}")
    if not _files(exp, STATE_PREFIXES):
        return lines, f"{exp}: no whole experiment_state-*.json"
    return lines, None


def repair_experiment(exp: str) -> Repair:
    """Repair what Ray left cut in the experiment `exp` (one warning line per file); return what was done."""
    lines = repair_trials(exp)
    state_lines, damaged = repair_state(exp)
    lines += state_lines
    for line in lines:
        log.warning("resume: %s", line)
    return Repair(lines, damaged)
