"""Benchmark: a whole sweep trial's peak resident memory and seconds, on the feature cache (loading only the layers
it runs, or the whole model as before) against the same trial without the cache, each in a fresh process.

    python benchmarks/trial_memory.py                      # the demo preset, its first meta-learning cell
    python benchmarks/trial_memory.py --assignment 'xla-maml:en>de'   # as in docs/benchmarks.md (~1.5 min)
    python benchmarks/trial_memory.py --smoke-test         # the smoke preset with layer 0 cached, seconds

Each trial is set up from the sweep's assets (the English stage comes from the cache when the preset's was built
before) and trained to its end (meta stage, dev and test scoring) by `XlaMamlTrainable`, as a Ray worker runs it,
in a process of its own: its peak resident memory (VmHWM) is the trial's, imports (torch, Ray Tune, transformers)
and the in-process Ray a trial's report starts included; `imports` is that peak before the trial's setup, the floor
every variant shares. anon / file: the anonymous and file-backed (libraries, memory-mapped features and weights)
resident memory at the trial's end. A benchmark, not a test: it prints, it asserts nothing.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import tempfile
import time
from typing import Any

VARIANTS = {  # name: (trial config overrides, load only the top layers)
    "feature cache, top layers only": ({}, True),
    "feature cache, whole model loaded (before)": ({}, False),
    "no feature cache": ({"meta": {"feature_cache": False}}, False),
}


def memory_mb() -> dict[str, float]:
    """Return this process's peak resident memory (VmHWM) and its anonymous and file-backed parts now, in MB.

    VmHWM, not ru_maxrss: on Linux a spawned child's ru_maxrss starts at its parent's resident size at the spawn
    (exec carries the old high-water mark over), which here is the parent that built the assets."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key = line.split(":")[0]
            if key in ("VmHWM", "RssAnon", "RssFile"):
                out[key] = int(line.split()[1]) / 1024
    return out


def run_trial(trial: dict[str, Any], top_only: bool, workdir: str) -> dict[str, float]:
    """Return the memory (MB) after the imports and at the end of one whole trial (run in `workdir`, where it writes
    its predictions, as a Ray trial does in its folder), and its setup and total seconds."""
    import os

    os.chdir(workdir)
    from xlamaml.search.trainable import XlaMamlTrainable
    from xlamaml.trainables import top_layers

    imports = memory_mb()["VmHWM"]
    if not top_only:
        top_layers.load_top = lambda *args, **kwargs: None  # the whole model, as trials loaded it before
    t0 = time.perf_counter()
    trainable = XlaMamlTrainable(trial)
    setup = time.perf_counter() - t0
    while not trainable.train().get("done"):
        pass
    end = memory_mb()
    return {"imports_mb": imports, "peak_mb": end["VmHWM"], "anon_mb": end["RssAnon"], "file_mb": end["RssFile"],
            "setup_s": setup, "total_s": time.perf_counter() - t0}


def _child(queue: mp.Queue, trial: dict[str, Any], top_only: bool, workdir: str) -> None:
    try:
        queue.put(run_trial(trial, top_only, workdir))
    except Exception as e:  # reported in the table rather than killing the other measurements
        queue.put({"error": f"{type(e).__name__}: {e}"})


def main() -> None:
    """Print each variant's peak memory and seconds, and the cached trial's share of the uncached one's; return None."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--assignment", default=None, help="default: the sweep's first meta-learning cell")
    parser.add_argument("--smoke-test", action="store_true", help="the smoke preset, layer 0 cached")
    args = parser.parse_args()
    overrides = []
    if args.smoke_test:
        args.preset = "smoke"
        overrides = ["meta.freeze_embeddings=true", "meta.freeze_layers=1", "english.epochs=1"]

    # Imported after parsing, so `--help` answers without loading torch, transformers and Ray.
    from xlamaml.experiment import storage
    from xlamaml.presets import preset_path
    from xlamaml.search.spec import load_sweep
    from xlamaml.search.sweep_assets import prepare_assets
    from xlamaml.trainables.config_parsing import merge

    sw = load_sweep(preset_path(args.preset), overrides=overrides)
    args.assignment = args.assignment or next(a for a in sw.assignments if not a.startswith("baseline"))
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="xlamaml-bench-") as tmp:
        run = prepare_assets(sw, storage.join(tmp, "exp", "assets"), remote=False)
        trial = merge(run, {"assignment": args.assignment, "seed": sw.sweep.seeds[0], "threads": 2})
        rows = {}
        print(f"{args.preset}, {args.assignment}: one whole trial per process (setup, meta stage, dev and test)")
        print(f"  {'variant':<44} {'imports':>8} {'peak MB':>8} {'anon MB':>8} {'file MB':>8} {'setup s':>8} "
              f"{'total s':>8}")
        for name, (extra, top_only) in VARIANTS.items():
            queue = ctx.Queue()
            proc = ctx.Process(target=_child, args=(queue, merge(trial, extra), top_only, tempfile.mkdtemp(dir=tmp)))
            proc.start()
            res = queue.get()
            proc.join()
            if "error" in res:
                print(f"  {name:<44} failed: {res['error']}")
                continue
            rows[name] = res
            print(f"  {name:<44} {res['imports_mb']:8.0f} {res['peak_mb']:8.0f} {res['anon_mb']:8.0f} "
                  f"{res['file_mb']:8.0f} {res['setup_s']:8.2f} {res['total_s']:8.1f}", flush=True)
    names = list(VARIANTS)
    if names[0] in rows and names[2] in rows:
        for name in names[:2]:
            if name in rows:
                print(f"{name}: peak memory {rows[name]['peak_mb'] / rows[names[2]]['peak_mb']:.0%} of the uncached "
                      f"trial's (goal for the first: at most 60%)")


if __name__ == "__main__":
    main()
