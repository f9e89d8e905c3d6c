"""Benchmark: a sweep trial's setup time when it reads the sweep's assets (cold and warm node cache) against
reading the data folder and tokenizing it itself (what every trial did before assets), in one process.

    python benchmarks/trial_setup.py                                  # the demo preset, its first meta-learning cell
    python benchmarks/trial_setup.py --assignment x-maml:hi --reps 3
    python benchmarks/trial_setup.py --smoke-test                     # the smoke preset, seconds

The English stage comes from the cache when the preset's was built before (else it is trained first, minutes
for the demo). A benchmark, not a test: it prints, it asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable


def median_seconds(fn: Callable[[], Any], reps: int) -> float:
    """Return the median wall time of `reps` calls of `fn`."""
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    """Print a trial's median setup seconds from assets (cold and warm cache) and from the data folder; return None."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--assignment", default=None, help="default: the sweep's first meta-learning cell")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--smoke-test", action="store_true", help="the smoke preset, one repetition")
    args = parser.parse_args()
    if args.smoke_test:
        args.preset, args.reps = "smoke", 1

    # Imported after parsing, so `--help` answers without loading torch, transformers and Ray.
    from xlamaml.cli import preset_path
    from xlamaml.search.spec import load_sweep
    from xlamaml.search.sweep_assets import prepare_assets
    from xlamaml.experiment import storage
    from xlamaml.trainables.config_parsing import merge
    from xlamaml.search.trainable import XlaMamlTrainable

    sw = load_sweep(preset_path(args.preset))
    args.assignment = args.assignment or next(a for a in sw.assignments if not a.startswith("baseline"))
    with tempfile.TemporaryDirectory(prefix="xlamaml-bench-") as tmp:
        assets_root = storage.join(tmp, "exp", "assets")
        t0 = time.perf_counter()
        run = prepare_assets(sw, assets_root, remote=False)
        print(f"assets ready (tokenizing, English stage from the cache or trained): {time.perf_counter() - t0:.1f} s")
        trial = merge(run, {"assignment": args.assignment, "seed": sw.sweep.seeds[0], "threads": 1})
        base = next(p for p in Path(tmp, "exp", "assets").iterdir() if p.name.startswith("base-"))
        tokenizing = {**trial, "assets": None, "base_checkpoint": str(base)}  # the trial reads the data folder

        def cold() -> None:
            """Set a trial up on a node that has fetched nothing yet (a fresh cache); return None."""
            os.environ["XLAMAML_CACHE"] = tempfile.mkdtemp(dir=tmp)
            XlaMamlTrainable(trial)

        saved = os.environ.get("XLAMAML_CACHE")
        rows = [("tokenizing the data folder", median_seconds(lambda: XlaMamlTrainable(tokenizing), args.reps)),
                ("assets, cold node cache", median_seconds(cold, args.reps))]
        # XLAMAML_CACHE still names the last cold cache, which now holds the assets.
        rows.append(("assets, warm node cache", median_seconds(lambda: XlaMamlTrainable(trial), args.reps)))
        if saved is None:
            os.environ.pop("XLAMAML_CACHE", None)
        else:
            os.environ["XLAMAML_CACHE"] = saved
    print(f"\n{args.preset}, {args.assignment}: trial setup (load the base, read the data, start the meta stage), "
          f"median of {args.reps}")
    ref = rows[0][1]
    for name, seconds in rows:
        print(f"  {name:<28} {seconds:7.2f} s   {seconds / ref:5.2f}x")


if __name__ == "__main__":
    main()
