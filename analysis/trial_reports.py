"""A trial's `result.json` (one JSON report a line) -> its final `{split}/{lang}/{metric}` values."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainables.errors import InputError


@dataclass(frozen=True)
class Metric:
    split: str
    lang: str
    metric: str
    value: float
    iteration: int | None


def read_reports(path: Path) -> list[dict[str, Any]]:
    """Return the reports of a result.json in file order ([] when the file is missing)."""
    if not path.is_file():
        return []
    reports = []
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                report = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(f"{path}:{number}: malformed JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(report, dict):
                raise InputError(f"{path}:{number}: expected a JSON object, got {type(report).__name__}")
            reports.append(report)
    return reports


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

