"""A recorded map written out as the experiments benchmarks/calibrate_sim.py reads: a finished grid sweep (its
full-budget trials) and an adaptive sweep's record whose rung 0 is one of the map's fractions with its first seed.

    python benchmarks/calibrate_sim.py --map benchmarks/maps/pairs.npz        # uses this module

Only what calibrate_sim reads is written: per trial params.json, result.json (its last report) and the per-item
outcome files predictions/{dev,test}-<lang>.items.tsv; the adaptive record holds rung 0's per-target dev estimates.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from benchmarks.recorded_map import RecordedMap
from xlamaml.experiment.records import AdaptiveRecord, Rung, write_adaptive
from xlamaml.experiment.reports import RESULT_FILE
from xlamaml.trainables.tasks.outcomes import SUFFIX, write_outcomes


def _trial(folder: Path, cell: str, seed: int, dev: dict[str, np.ndarray], test: dict[str, np.ndarray]) -> None:
    """Write one finished trial (params, last report, per-item outcomes); return None."""
    (folder / "predictions").mkdir(parents=True)
    (folder / "params.json").write_text(json.dumps({"trial": {"assignment": cell, "seed": seed}}))
    report = {}
    for split, sets in (("dev", dev), ("test", test)):
        for lang, x in sets.items():
            write_outcomes(folder / "predictions" / f"{split}-{lang}{SUFFIX}", [str(i) for i in range(len(x))],
                           {"acc": x})
            report[f"{split}/{lang}/acc"] = float(x.mean())
    report["done"] = True
    (folder / RESULT_FILE).write_text(json.dumps(report) + "\n")


def write_experiments(m: RecordedMap, root: Path, fraction: float) -> tuple[Path, Path]:
    """Return (grid folder, adaptive folder) written under `root` from the map; rung 0 is `fraction` of the meta
    steps (one of the map's) with the map's first seed on every dev item."""
    if fraction not in m.fractions:
        raise SystemExit(f"--map-fraction {fraction}: not one of the map's fractions {m.fractions}")
    fi = m.fractions.index(fraction)
    grid, adaptive = root / "grid", root / "grid-adaptive"
    test_of = {lang: i for i, lang in enumerate(m.test_langs)}
    _trial(grid / "baseline", "baseline", m.seeds[0], dict(zip(m.dev_langs, m.base_dev)),
           {lang: m.base_test[i] for lang, i in test_of.items()})
    for ci, cell in enumerate(m.cells):
        for si, seed in enumerate(m.seeds):
            name = f"{cell.replace(':', '_').replace('>', '-')}_s{seed}"
            _trial(grid / name, cell, seed, dict(zip(m.dev_langs, m.dev[ci, si, -1])),
                   {lang: m.test[ci, si, i] for lang, i in test_of.items()})
    adaptive.mkdir(parents=True)
    est = {cell: {lang: float(m.dev[ci, 0, fi, li].mean()) for li, lang in enumerate(m.dev_langs)}
           for ci, cell in enumerate(m.cells)}
    rungs = [Rung(0, m.steps[fi], None, (m.seeds[0],), len(m.cells), fraction),
             Rung(1, m.steps[-1], None, tuple(m.seeds), len(m.cells), 1.0)]
    write_adaptive(str(adaptive), AdaptiveRecord(list(m.cells), [{"assignment": "baseline", "seed": m.seeds[0]}],
                                                 rungs, "acc", [{"rung": 0, "kept": list(m.cells), "stopped": {},
                                                                 "ranks": {}, "estimates": est, "excluded": {}}],
                                                 dev_langs=list(m.dev_langs)))
    return grid, adaptive
