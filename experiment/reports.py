"""A trial's `result.json` (one JSON report a line): its whole reports, its last iteration, its final
`{split}/{lang}/{metric}` values. The one reader of that file kind, for the driver and the analysis alike.

Ray appends each report as one line, so a full disk or a kill can leave the last line cut, and a resume then appends
the next report to that cut line. Such lines are skipped (the report glued behind a cut one is kept), with one
warning line per file."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xlamaml.experiment import storage
from xlamaml.trainables.errors import InputError

log = logging.getLogger("xlamaml")
RESULT_FILE = "result.json"  # Ray Tune's name for a trial's reports


@dataclass(frozen=True)
class Metric:
    """One final `{split}/{lang}/{metric}` value of a trial and the iteration that reported it."""

    split: str
    lang: str
    metric: str
    value: float
    iteration: int | None


def parse_report(line: str) -> dict[str, Any] | None:
    """Return the report a result.json line holds: the whole line's JSON object, else the whole object that follows a
    cut one on it (a report appended after a half-written line), else None."""
    try:
        report = json.loads(line)
        return report if isinstance(report, dict) else None
    except json.JSONDecodeError:
        pass
    start = line.find('{"', 1)
    while start > 0:
        try:
            report = json.loads(line[start:])
            if isinstance(report, dict):
                return report
        except json.JSONDecodeError:
            pass
        start = line.find('{"', start + 1)
    return None


def parse_lines(text: str) -> tuple[list[str], list[dict[str, Any]], list[int]]:
    """Return (the text's non-empty lines, the reports they hold, the numbers of the lines holding none)."""
    lines, reports, bad = [], [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        lines.append(line)
        report = parse_report(line)
        if report is None:
            bad.append(number)
        else:
            reports.append(report)
    return lines, reports, bad


def read_reports(location: str | Path, strict: bool = False, warn: bool = True) -> list[dict[str, Any]]:
    """Return the reports of the result.json at `location` (a path or a storage URI) in file order ([] when the file
    is missing); a cut or malformed line is skipped, with one warning line for the file unless not `warn`
    (`strict`: an InputError naming the file and line instead)."""
    location = str(location)
    if not storage.exists(location):
        return []
    _, reports, bad = parse_lines(storage.read_bytes(location).decode("utf-8", "replace"))
    if bad and strict:
        raise InputError(f"{location}:{bad[0]}: malformed JSON; expected one JSON object a line (Ray's result.json)")
    if bad and warn:
        log.warning("%s: %d cut or malformed line(s) skipped (line %s); the trial's other reports are read", location,
                    len(bad), ", ".join(map(str, bad[:5])))
    return reports


def trial_reports(exp: str, folder: str) -> list[dict[str, Any]]:
    """Return the whole reports of the trial folder `folder` of the experiment `exp`, in order (none when none)."""
    return read_reports(storage.join(exp, folder, RESULT_FILE), warn=False)


def last_reported_iteration(location: str) -> int:
    """Return the highest `training_iteration` among the whole reports of the result.json at `location` (0 if none)."""
    iterations = [r["training_iteration"] for r in read_reports(location, warn=False)
                  if isinstance(r.get("training_iteration"), int) and not isinstance(r["training_iteration"], bool)]
    return max(iterations, default=0)


def is_final(report: dict[str, Any] | None) -> bool:
    """Return whether `report` is a finished trial's final report (it holds test metrics)."""
    return report is not None and any(key.startswith("test/") for key in report)


def metric_key(key: str, value: Any) -> tuple[str, str, str] | None:
    """Return (split, lang, metric) for a `{split}/{lang}/{metric}` key with a number, else None."""
    parts = key.split("/")
    # bool is an int in Python; `done` and friends are flags, not metrics.
    if len(parts) != 3 or not all(parts) or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return parts[0], parts[1], parts[2]


def _splits(report: dict[str, Any]) -> set[str]:
    return {parsed[0] for key, value in report.items() if (parsed := metric_key(key, value))}


def final_metrics(reports: list[dict[str, Any]]) -> list[Metric]:
    """Return each split's metrics from the last report holding that split (dev first, then test, ...)."""
    # After a resume Ray appends the replayed iterations again, so the last line is the trial's
    # latest state: the final value of a split is that of the last line that reports it.
    last: dict[str, dict[str, Any]] = {}
    for report in reports:
        for split in _splits(report):
            last[split] = report
    out = []
    for split in sorted(last, key=lambda s: (s != "dev", s != "test", s)):
        report = last[split]
        iteration = report.get("training_iteration")
        for key, value in report.items():
            parsed = metric_key(key, value)
            if parsed and parsed[0] == split:
                out.append(Metric(split, parsed[1], parsed[2], float(value),
                                  int(iteration) if isinstance(iteration, (int, float)) else None))
    return out


def has_split(metrics: list[Metric], split: str) -> bool:
    """Return whether any metric belongs to `split`."""
    return any(m.split == split for m in metrics)

