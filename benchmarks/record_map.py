"""Record a map once, so that any search can be replayed on it for free (benchmarks/replay.py): every (cell, seed) of
a sweep preset's grid runs its whole meta budget, scoring every dev language's items at several fractions of the meta
steps and every test language's items at the end, each part timed. The result is one .npz in the layout of
benchmarks/recorded_map.py.

    python benchmarks/record_map.py --preset map-pairs          # -> benchmarks/maps/pairs.npz
    python benchmarks/record_map.py --preset map-en-aux         # -> benchmarks/maps/en-aux.npz
    python benchmarks/record_map.py --preset map-pairs --full   # the 15 x 15 map, every test item, 3 seeds (a GPU)
    python benchmarks/record_map.py --smoke-test                # the tiny model, 3 cells: seconds

Each trial computes what a sweep trial of the same config computes (the same stage functions: trainables.stages),
in-process: the English stage and the feature cache are built once (node cache), then `--workers` processes run the
trials, each loading the base as a trial does. Finished trials are kept in `<out>.parts/`, so an interrupted recording
resumes where it stopped (a changed config, or a machine of another kind or precision, refuses to mix with them;
--fresh starts over).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.recorded_map import MAPS, write_map  # noqa: E402
from xlamaml.cli import preset_path  # noqa: E402
from xlamaml.search.schedule import rung_steps  # noqa: E402
from xlamaml.search.spec import Sweep, load_sweep  # noqa: E402
from xlamaml.trainables.data_source import DataSource, dev_reports  # noqa: E402
from xlamaml.trainables.errors import XlamamlError  # noqa: E402

FRACTIONS = [0.05, 0.1, 0.25, 0.5, 1.0]
# Run-config keys added after maps were recorded, with the value every earlier trial had: (section, key, default).
ADDED_LATER = [("eval", "dev_offset", 0)]
ALL = ["ar", "bg", "de", "el", "en", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur", "vi", "zh"]
# --full: every language as a target, every test item, 3 seeds; the cells of every language (en -> aux: all but en).
FULL = ["eval.target_langs=[]", "eval.dev_langs=[]", "eval.max_examples=null", "sweep.seeds=[1,2,3]"]
SMOKE = ["model.name=tiny", "model.max_length=48", "english.max_examples=64", "english.epochs=1",
         "meta.freeze_embeddings=false", "meta.freeze_layers=0", "english.freeze_embeddings=false",
         "english.freeze_layers=0", "meta.steps_per_query_lang=4", "meta.k=4", "meta.n=4", "meta.inner_lr=1e-3",
         "meta.outer_lr=1e-3", "eval.max_examples=24", "eval.dev_max_examples=16", "sweep.assignments.kind=pairs",
         "sweep.assignments.langs=[de,hi]", "eval.target_langs=[de,hi,sw]", "eval.dev_langs=[de,hi,sw]",
         "sweep.seeds=[0,1]", "meta.max_examples=32", "precision=fp32"]

log = logging.getLogger("record_map")


# ------------------------------------------------------------------------------------------------------ one trial


class _Worker:
    """What a worker process keeps between trials: the sweep, the base, the feature table and the encoded sets."""

    def __init__(self, preset: str, sets: list[str], base: str, features: str | None, threads: int):
        import torch
        import transformers

        from xlamaml.trainables.data_source import TokenizingSource
        from xlamaml.trainables.feature_cache import CachedSource, FeatureTable
        from xlamaml.trainables.models import load_tokenizer

        torch.set_num_threads(threads)
        logging.getLogger("xlamaml").setLevel(logging.WARNING)
        transformers.utils.logging.disable_progress_bar()  # one "Loading weights" bar per trial otherwise
        transformers.utils.logging.set_verbosity_error()
        self.sw = load_sweep(preset, sets)
        self.task, self.base = self.sw.task, base
        cfg = self.sw.cfg
        # The model name's tokenizer, as sweeps tokenize (prepare() encodes the same sets with it).
        source = TokenizingSource(cfg, self.task, load_tokenizer(cfg.model))
        self.table = None
        if features is not None:
            self.table = FeatureTable(transformers.AutoConfig.from_pretrained(base).hidden_size)
            source = CachedSource(source, Path(features), self.table)
        self.source = _Memo(source)

    def run(self, assignment: str, seed: Any, fractions: list[float]) -> dict[str, Any]:
        """Return one trial's outcomes and seconds (dev at every fraction, test at the end)."""
        from xlamaml.trainables.feature_cache import cached_layers, run_from_features
        from xlamaml.trainables.models import apply_freezing
        from xlamaml.trainables.precision import autocast, autocast_dtype
        from xlamaml.trainables.stages import advance_meta, setup_torch, start_meta
        from xlamaml.trainables.tasks.nli import predict

        cfg = self.sw.trial_config(assignment, seed)
        t0 = time.perf_counter()
        device = setup_torch(cfg)
        model, _ = self.task.load_model(cfg.model, self.base, cfg.seed, tokenizer=False)
        model.to(device)
        layers = cached_layers(cfg)
        if layers is not None:
            run_from_features(model, self.table, layers)
        meta = start_meta(cfg, self.task, model, self.source) if cfg.method != "baseline" else None
        dev = dev_reports(self.source, cfg)
        amp = autocast_dtype(cfg.precision, device)

        def outcomes(sets: dict) -> np.ndarray:
            """Return the (langs, items) 0/1 outcomes of `model` on `sets` (as evaluate_sets scores them)."""
            rows = []
            with autocast(amp, device):
                for enc in sets.values():
                    rows.append(predict(model, enc, cfg.eval.batch_size, device) == enc.labels)
            return np.stack(rows).astype(np.int8)

        out: dict[str, Any] = {"setup_s": time.perf_counter() - t0, "dev": [], "meta_s": [], "dev_s": []}
        total = cfg.meta.total_steps
        for f in fractions:
            t = time.perf_counter()
            if meta is not None:
                advance_meta(cfg, self.task, meta, count=rung_steps(f, total) - meta.learner.steps_done,
                             device=device)
            out["meta_s"].append(time.perf_counter() - t)
            t = time.perf_counter()
            out["dev"].append(outcomes(dev))
            out["dev_s"].append(time.perf_counter() - t)
            if meta is None:  # the baseline has no meta steps: dev is scored once
                break
        if meta is not None:
            apply_freezing(model, False, 0)
        t = time.perf_counter()
        out["test"] = outcomes(self.source.sets("test", cfg.eval.target_langs, cfg.eval.max_examples))
        out["test_s"] = time.perf_counter() - t
        out["dev"] = np.stack(out["dev"])  # (fractions, langs, items)
        return out


class _Memo(DataSource):
    """A DataSource that encodes (and attaches the features of) each set once per worker."""

    def __init__(self, inner: DataSource):
        super().__init__(inner.cfg, inner.task)
        self.inner, self.memo = inner, {}

    def get(self, key: Any) -> Any:
        """Return the encoded set `key`, encoded on first use."""
        if key not in self.memo:
            self.memo[key] = self.inner.get(key)
        return self.memo[key]

    def english(self) -> tuple[Any, str]:
        """Return the inner source's English data."""
        return self.inner.english()

    def extra_names(self, langs: list[str]) -> dict[str, list[str]]:
        """Return the inner source's extra sets."""
        return self.inner.extra_names(langs)


_WORKER: _Worker | None = None


def _init(*args: Any) -> None:
    global _WORKER
    _WORKER = _Worker(*args)


def _run(assignment: str, seed: Any, fractions: list[float]) -> dict[str, Any]:
    assert _WORKER is not None
    return _WORKER.run(assignment, seed, fractions)


# ------------------------------------------------------------------------------------------------------ the map


def prepare(sw: Sweep) -> tuple[str, str | None]:
    """Return (the base checkpoint folder, the feature-cache folder or None), each built once in the node cache."""
    from xlamaml.trainables.data_source import TokenizingSource, needed_sets
    from xlamaml.trainables.english_stage import english_stage
    from xlamaml.trainables.feature_cache import cached_layers, ensure_local_features, source_sets
    from xlamaml.trainables.models import load_tokenizer
    from xlamaml.trainables.stages import setup_torch

    cfg, task = sw.cfg, sw.task
    device = setup_torch(cfg)
    base = english_stage(cfg, task)
    layers = cached_layers(cfg)
    if layers is None:
        return str(base), None
    model, _ = task.load_model(cfg.model, str(base), cfg.seed, tokenizer=False)
    keys = list(dict.fromkeys(k for a in sw.assignments for k in needed_sets(sw.trial_config(a, sw.sweep.seeds[0]),
                                                                               task)))
    folder = ensure_local_features(model.to(device), source_sets(TokenizingSource(cfg, task, load_tokenizer(cfg.model)),
                                                                 keys),
                                   layers=layers, dtype=cfg.meta.feature_dtype, batch_size=cfg.eval.batch_size,
                                   device=device)
    return str(base), str(folder)


def fingerprint(sw: Sweep, fractions: list[float]) -> str:
    """Return a digest of everything a trial's outcomes depend on (the parts of another config never mix). The seed
    list is left out: each part names its seed, so more seeds reuse the trials already recorded."""
    d = json.loads(json.dumps(sw.to_dict(), default=str))  # a copy: to_dict hands out the sweep's own run dict
    d["sweep"] = {k: v for k, v in d["sweep"].items() if k != "seeds"}
    for section, key, default in ADDED_LATER:  # at its default a later key changes no outcome: older parts still fit
        if d["run"].get(section, {}).get(key) == default:
            del d["run"][section][key]
    text = json.dumps({"sweep": d, "fractions": fractions}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def part_name(assignment: str, seed: Any) -> str:
    """Return the file name of one finished trial in the parts folder."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in f"{assignment}_s{seed}") + ".npz"


def versions() -> dict[str, str]:
    """Return the versions and machine that produced a map."""
    import torch
    import transformers

    from xlamaml.search.plan.measure import hardware

    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                                cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    cpu = hardware(torch.device("cpu"), torch.get_num_threads()).removeprefix("CPU ").rsplit(",", 1)[0]
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "xlamaml_commit": commit, "cpu": cpu, "cpu_flags": cpu_flags(), "cpus": str(os.cpu_count()),
            "gpu": gpu}


def cpu_flags() -> str:
    """Return the instruction sets among avx2, avx512f, avx512_bf16 and amx_bf16 this CPU has, space-separated (the
    ones bf16 speed and the kernels' rounding depend on)."""
    from xlamaml.trainables.precision import cpu_flags as have

    return " ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in have())


def compute(sw: Sweep) -> dict[str, str]:
    """Return what this machine runs a trial's arithmetic on: the device, the forward passes' dtype, and the CPU's
    instruction sets or the GPU's name."""
    import torch

    from xlamaml.trainables.models import pick_device
    from xlamaml.trainables.precision import autocast_dtype

    device = pick_device(sw.cfg.device)
    dtype = autocast_dtype(sw.cfg.precision, device)
    return {"device": device.type, "forward": "fp32" if dtype is None else str(dtype).removeprefix("torch."),
            "machine": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_flags()}


def check_compute(parts: Path, held: dict[str, str] | None, here: dict[str, str]) -> None:
    """Refuse to add trials to `parts` when its trials ran on another kind of machine (return None where they match).

    The fingerprint digests the config, which says `precision: auto`, not what it resolved to: without this check a
    recording begun on a bf16 CPU and resumed on an fp32 one would mix trials of two precisions into one map. Even
    where the outcomes agree (the demo's fp32 table is the same on AVX2 and AMX CPUs), the seconds each trial records,
    which replays charge, would mix two machines' speeds (3.3x apart on those two)."""
    if held is None:  # parts recorded before this check: nothing to compare
        print(f"record_map: {parts} does not name the machine its trials ran on; taken as this one "
              f"({_describe(here)})", flush=True)
    elif held != here:
        raise SystemExit(f"{parts}: its trials ran on {_describe(held)}, this machine runs {_describe(here)}; their "
                         f"outcomes would differ, and one map comes from one kind of machine: resume on such a "
                         f"machine, or pass --fresh to start over")


def _describe(c: dict[str, str]) -> str:
    return f"{c['device']} ({c['machine'] or 'no flags read'}) with {c['forward']} forward passes"


def record(preset: str, sets: list[str], out: Path, fractions: list[float], workers: int, fresh: bool) -> Path:
    """Return `out` after recording every trial of the preset's grid (resuming from `<out>.parts/`)."""
    t_start = time.perf_counter()
    sw = load_sweep(preset, sets)
    cells, seeds = sw.cells, list(sw.sweep.seeds)
    if "baseline" not in sw.assignments:
        raise SystemExit(f"{preset}: sweep.assignments.methods must include baseline (gains are over it)")
    parts = out.with_name(out.name + ".parts")
    key = fingerprint(sw, fractions)
    spec_file = parts / "spec.json"
    earlier_s = 0.0  # the wall time of earlier invocations that recorded trials of these parts
    here = compute(sw)
    if parts.is_dir() and not fresh:
        spec = json.loads(spec_file.read_text()) if spec_file.is_file() else {}
        held, earlier_s = spec.get("key"), float(spec.get("wall_s", 0.0))
        if held != key:
            raise SystemExit(f"{parts}: holds trials of another config (key {held}, this one {key}); "
                             f"pass --fresh to start over")
        check_compute(parts, spec.get("compute"), here)
    elif parts.is_dir():
        for f in parts.iterdir():
            f.unlink()
    parts.mkdir(parents=True, exist_ok=True)
    spec_file.write_text(json.dumps({"key": key, "compute": here, "sweep": sw.to_dict(), "fractions": fractions,
                                     "wall_s": earlier_s}, default=str))
    t0 = time.perf_counter()
    base, features = prepare(sw)
    prepare_s = time.perf_counter() - t0
    # Seed-major: a recording cut short leaves whole seeds of every cell, which `--set sweep.seeds=[...]` can assemble.
    trials = [("baseline", seeds[0])] + [(c, s) for s in seeds for c in cells]
    todo = [(a, s) for a, s in trials if not (parts / part_name(a, s)).is_file()]
    print(f"record_map: {len(cells)} cells x {len(seeds)} seeds + baseline; {len(trials) - len(todo)} done, "
          f"{len(todo)} to run on {workers} workers (base and features ready in {prepare_s:.0f} s)", flush=True)
    threads = max(1, (os.cpu_count() or 1) // workers)
    t_trials = time.perf_counter()
    with ProcessPoolExecutor(workers, initializer=_init, initargs=(preset, sets, base, features, threads),
                             mp_context=__import__("multiprocessing").get_context("spawn")) as pool:
        futures = {pool.submit(_run, a, s, fractions): (a, s) for a, s in todo}
        for i, fut in enumerate(as_completed(futures), 1):
            a, s = futures[fut]
            r = fut.result()
            tmp = parts / (part_name(a, s) + ".tmp.npz")
            np.savez(tmp, dev=r["dev"], test=r["test"], setup_s=r["setup_s"], meta_s=r["meta_s"], dev_s=r["dev_s"],
                     test_s=r["test_s"])
            tmp.replace(parts / part_name(a, s))
            elapsed = time.perf_counter() - t_trials
            print(f"record_map: {i}/{len(todo)} {a} seed {s}: dev {100 * r['dev'][-1].mean():.1f} test "
                  f"{100 * r['test'].mean():.1f}  ({elapsed:.0f} s, eta {elapsed / i * (len(todo) - i):.0f} s)",
                  flush=True)
    wall = earlier_s + time.perf_counter() - t_start  # every invocation's, so a resumed map states its whole cost
    spec_file.write_text(json.dumps({**json.loads(spec_file.read_text()), "wall_s": wall}, default=str))
    return assemble(sw, parts, out, fractions, {"prepare_s": prepare_s, "workers": workers, "wall_s": wall,
                                               "preset": Path(preset).stem, "sets": sets})


def assemble(sw: Sweep, parts: Path, out: Path, fractions: list[float], run_info: dict[str, Any]) -> Path:
    """Return `out` written from the finished trials in `parts`."""
    cells, seeds = sw.cells, list(sw.sweep.seeds)
    base = np.load(parts / part_name("baseline", seeds[0]))
    trial = {(c, s): np.load(parts / part_name(c, s)) for c in cells for s in seeds}
    arrays = {
        "dev": np.stack([[trial[c, s]["dev"] for s in seeds] for c in cells]),
        "test": np.stack([[trial[c, s]["test"] for s in seeds] for c in cells]),
        "base_dev": base["dev"][0], "base_test": base["test"],
        "setup_s": np.array([[float(trial[c, s]["setup_s"]) for s in seeds] for c in cells]),
        "meta_s": np.array([[trial[c, s]["meta_s"] for s in seeds] for c in cells]),
        "dev_s": np.array([[trial[c, s]["dev_s"] for s in seeds] for c in cells]),
        "test_s": np.array([[float(trial[c, s]["test_s"]) for s in seeds] for c in cells]),
        "base_s": np.array([float(base["setup_s"]), float(base["dev_s"][0]), float(base["test_s"])]),
    }
    cfg = sw.cfg
    total = cfg.meta.total_steps
    info = {"cells": cells, "seeds": seeds, "fractions": fractions, "steps": [rung_steps(f, total) for f in fractions],
            "dev_langs": cfg.dev_langs, "test_langs": list(cfg.eval.target_langs), "run": sw.run,
            "sweep": sw.to_dict()["sweep"], "versions": versions(), "recorded": time.strftime("%Y-%m-%d"),
            **run_info}
    write_map(out, info, arrays)
    print(f"record_map: wrote {out} ({out.stat().st_size / 1e6:.2f} MB) in {run_info['wall_s']:.0f} s", flush=True)
    return out


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and record the map."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--preset", default="map-pairs", help="a sweep preset (name or file) with a grid over cells")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE", help="override a key")
    p.add_argument("--out", help="the map file (default: benchmarks/maps/<preset without map->.npz)")
    p.add_argument("--fractions", default=",".join(map(str, FRACTIONS)), help="dev is scored at these fractions")
    p.add_argument("--workers", type=int, default=max(1, min(2, os.cpu_count() or 1)), help="trial processes")
    p.add_argument("--full", action="store_true", help="the 15 x 15 map, every test item, 3 seeds (a GPU)")
    p.add_argument("--fresh", action="store_true", help="drop finished trials of an earlier recording")
    p.add_argument("--smoke-test", action="store_true", help="the tiny model, 2 languages: seconds")
    args = p.parse_args(argv)
    sets = list(args.sets)
    name = args.preset.removeprefix("map-")
    if args.full:
        try:
            kind = load_sweep(str(preset_path(args.preset)), sets).sweep.assignments.kind
        except XlamamlError as e:
            print(f"record_map: {e}", file=sys.stderr)
            raise SystemExit(2) from None
        langs = [x for x in ALL if kind != "en-aux" or x != "en"]
        sets, name = FULL + [f"sweep.assignments.langs=[{','.join(langs)}]"] + sets, name + "-full"
    if args.smoke_test:
        sets, name = SMOKE + sets, "smoke"
    out = Path(args.out) if args.out else MAPS / f"{name}.npz"
    out.parent.mkdir(parents=True, exist_ok=True)
    fractions = [float(x) for x in args.fractions.split(",")]
    if fractions[-1] != 1.0 or any(b <= a for a, b in zip(fractions, fractions[1:])):
        raise SystemExit(f"--fractions {args.fractions}: expected increasing fractions ending with 1")
    try:
        record(str(preset_path(args.preset)), sets, out, fractions, args.workers, args.fresh)
    except XlamamlError as e:  # a bad preset or key: one line naming it
        print(f"record_map: {e}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
