"""benchmarks/recorded_map.py, record_map.py, replay.py and map_stats.py on small maps made here."""

import copy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks.map_stats import (dev_excess, languages_matter, paired_noise_parts, ranking_by_fraction, report,
                                  t975)
from benchmarks.recorded_map import read_map, write_map
from benchmarks.replay import ReplayWorld, recorded_cost, replay, truth_map
from xlamaml.search.schedule import AdaptiveConfig

ROOT = Path(__file__).resolve().parents[1]
LANGS = ["de", "hi", "sw"]


def make_map(path: Path, *, noise: float = 0.0, dev_items: int = 200, test_items: int = 400, seeds: int = 3,
             langs: list[str] = LANGS, dev_shift: float = 0.0) -> Path:
    """Write a pairs map whose cells' gains are known: cell j lifts every item's chance by gains[j] (dev and test
    alike, dev by `dev_shift` more at the full budget), so a noiseless map ranks its cells on dev exactly as on test;
    return its path."""
    rng = np.random.default_rng(0)
    cells = [f"x-maml:{a}" if a == b else f"xla-maml:{a}>{b}" for a in langs for b in langs]
    fractions = [0.1, 0.5, 1.0]
    gains = np.linspace(-0.05, 0.15, len(cells))
    n_l = len(langs)
    u_dev, u_test = rng.random((n_l, dev_items)), rng.random((n_l, test_items))
    base_dev, base_test = (u_dev < 0.5).astype(np.int8), (u_test < 0.5).astype(np.int8)
    dev = np.zeros((len(cells), seeds, len(fractions), n_l, dev_items), np.int8)
    test = np.zeros((len(cells), seeds, n_l, test_items), np.int8)
    for j, g in enumerate(gains):
        for s in range(seeds):
            for i, f in enumerate(fractions):
                jitter = rng.normal(0, noise, (n_l, 1))
                dev[j, s, i] = u_dev < 0.5 + f * (g + dev_shift) + jitter
            test[j, s] = u_test < 0.5 + g + rng.normal(0, noise, (n_l, 1))
    shape = (len(cells), seeds)
    arrays = {"dev": dev, "test": test, "base_dev": base_dev, "base_test": base_test,
              "setup_s": np.ones(shape), "meta_s": np.full(shape + (3,), 10.0), "dev_s": np.full(shape + (3,), 1.0),
              "test_s": np.full(shape, 2.0), "base_s": np.ones(3)}
    info = {"cells": cells, "seeds": list(range(42, 42 + seeds)), "fractions": fractions, "steps": [10, 50, 100],
            "dev_langs": langs, "test_langs": langs, "run": {}, "sweep": {}, "versions": {"cpu": "test"}}
    return write_map(path, info, arrays)


def test_a_map_reads_back_what_was_written(tmp_path):
    m = read_map(make_map(tmp_path / "m.npz", dev_items=13, test_items=21))  # item counts not a multiple of 8
    assert m.dev.shape == (9, 3, 3, 3, 13) and m.test.shape == (9, 3, 3, 21)
    assert set(np.unique(m.dev)) <= {0, 1}
    # The truth: test gain over the baseline, mean over seeds and items; a cell is not judged where it trained.
    hi = m.dev_langs.index("hi")
    cell = m.cells.index("xla-maml:de>sw")
    want = 100 * (m.test[cell, :, hi].mean() - m.base_test[hi].mean())
    assert m.test_gains[hi, cell] == pytest.approx(want)
    assert np.isnan(m.test_gains[m.dev_langs.index("sw"), cell])
    assert m.judged.sum() == 3 * 9 - (2 * 6 + 3)  # 6 pairs lose 2 targets, the 3 x-maml cells 1


def test_a_file_of_another_layout_is_refused_by_name(tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, meta=np.array("{}"), dev=np.zeros(3))
    with pytest.raises(ValueError, match="bad.npz: not a recorded map: missing arrays test"):
        read_map(bad)


def test_a_budget_between_two_records_sees_the_lower_one(tmp_path):
    m = read_map(make_map(tmp_path / "m.npz"))
    w = ReplayWorld(m, truth_map(m, "m"), rep=0, resample=False)
    assert [w.fraction_index(s, 100) for s in (5, 10, 33, 50, 99, 100)] == [-1, 0, 0, 1, 1, 2]
    out = w.outcomes(0, 50, 100)
    assert out.shape == (3, 3, 200)  # (targets, seeds, items)
    assert (out == m.dev[0, :, 1].transpose(1, 0, 2)).all()
    # A replay resamples seeds and items, paired: the baseline is drawn on the same items.
    r = ReplayWorld(m, truth_map(m, "m"), rep=1)
    assert not (r.base == m.base_dev).all()
    assert sorted(r.seed_order) == [0, 1, 2]


def test_the_recorded_cost_charges_steps_and_items(tmp_path):
    m = read_map(make_map(tmp_path / "m.npz"))
    cost = recorded_cost(m)
    assert cost.total_steps == 100
    assert cost.step_s == pytest.approx(3 * 10.0 / 100)  # three segments of 10 s over 100 steps
    assert cost.item_s == pytest.approx((3 * 1.0 + 2.0) / (3 * 3 * 200 + 3 * 400))


def test_on_a_noiseless_map_every_method_finds_the_best_and_the_grid_costs_all(tmp_path):
    m = read_map(make_map(tmp_path / "m.npz"))
    table = replay(m, "m", [0.25, 0.6], reps=2, tpe=False, adaptive=AdaptiveConfig())
    grid = table["grid", 1.0]
    assert np.mean(grid.fraction) == pytest.approx(1.0)
    assert max(grid.regret) == pytest.approx(0.0, abs=1e-9)
    ad = table["adaptive (defaults)", 0.0]
    assert max(ad.regret) == pytest.approx(0.0, abs=1e-9) and np.mean(ad.fraction) < 1
    assert {name for name, _ in table} >= {"grid", "random", "asha", "adaptive", "adaptive (defaults)", "predictive",
                                           "predictive (own stop)", "grid, model's picks"}
    # The model pools the map's structure: on a noiseless map its picks on the grid's outcomes are the best too, and
    # the predictive search stops by itself before the grid's compute.
    assert max(table["grid, model's picks", 1.0].regret) == pytest.approx(0.0, abs=1e-9)
    own = table["predictive (own stop)", 0.0]
    assert np.mean(own.fraction) < 1 and np.mean(own.regret) < 0.5


def test_map_stats_sees_the_known_structure(tmp_path):
    m = read_map(make_map(tmp_path / "m.npz", test_items=2000))
    rows, text = languages_matter(m)
    assert all(r["lo"] > 0 for r in rows) and "clear of zero: 3 of 3" in text
    assert all(r["paired_lo"] > 0 and r["dev_paired_lo"] > 0 for r in rows)
    ranks, _ = ranking_by_fraction(m)
    assert np.nanmean(ranks[1.0][1]) > 0.9  # dev at the full budget ranks as test does
    assert "rank above noise" in report(m, "m")


def test_map_stats_measures_how_far_dev_gains_exceed_test_gains(tmp_path):
    excess, _ = dev_excess(read_map(make_map(tmp_path / "m.npz", dev_items=2000, test_items=2000)))
    assert np.all(np.abs(excess) < 1.5)  # dev and test lifted alike: no excess beyond the item noise
    excess, text = dev_excess(read_map(make_map(tmp_path / "s.npz", dev_items=2000, test_items=2000, dev_shift=0.06)))
    assert np.all(np.abs(excess - 6.0) < 1.5) and "exceed the test gains by +" in text


def test_paired_noise_parts_splits_a_seed_paired_difference_into_its_run_and_item_parts():
    # Outcomes of two cells on 4,000 items x 6 seeds: a seed moves cell a's whole run by sd 0.02 (the run part), and
    # each item is a coin flip around the cells' chances (the item part: per-item variance about 0.5 for p = 0.5).
    rng = np.random.default_rng(1)
    shift = rng.normal(0, 0.02, (6, 1))
    a = (rng.random((6, 4000)) < 0.52 + shift).astype(np.int8)
    b = (rng.random((6, 4000)) < 0.50).astype(np.int8)
    run, item = paired_noise_parts(a, b)
    assert 0.45 < item < 0.55
    assert 0.005 < np.sqrt(run) < 0.04
    assert t975(5) == 2.571 and abs(t975(60) - 2.000) < 0.003


@pytest.mark.parametrize("script", ["replay.py", "map_stats.py", "map_model_check.py", "prior_rank.py"])
def test_the_benchmarks_smoke_tests_run_on_the_recorded_maps(script):
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--smoke-test"], capture_output=True,
                         text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "## " in out.stdout


def test_record_map_smoke_test_writes_a_map_and_resumes(tmp_path, cache, data_dir):
    out = tmp_path / "smoke.npz"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "record_map.py"), "--smoke-test", "--out", str(out),
           "--workers", "1"]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert first.returncode == 0, first.stderr[-3000:]
    m = read_map(out)
    # 2 languages: 4 pair cells x 2 seeds, dev at 5 fractions of 4 meta steps on 3 targets.
    assert m.dev.shape == (4, 2, 5, 3, 16) and m.test.shape == (4, 2, 3, 24)
    assert m.steps == [1, 1, 1, 2, 4]
    assert (m.meta_s > 0).all() and (m.dev_s > 0).all() and (m.test_s > 0).all() and (m.setup_s > 0).all()
    assert m.info["versions"]["torch"] and m.info["run"]["model"]["name"] == "tiny"
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert again.returncode == 0 and "9 done, 0 to run" in again.stdout, again.stdout + again.stderr[-2000:]
    more = subprocess.run(cmd + ["--set", "sweep.seeds=[0,1,2]"], capture_output=True, text=True, timeout=600,
                          cwd=ROOT)  # more seeds reuse the trials recorded
    assert more.returncode == 0 and "9 done, 4 to run" in more.stdout, more.stdout + more.stderr[-2000:]
    assert read_map(out).dev.shape == (4, 3, 5, 3, 16)
    changed = subprocess.run(cmd + ["--set", "meta.inner_lr=2e-3"], capture_output=True, text=True, timeout=600,
                             cwd=ROOT)
    assert changed.returncode != 0 and "holds trials of another config" in changed.stderr
    bad = subprocess.run(cmd + ["--set", "meta.k=2"], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "meta.k" in bad.stderr


def test_calibrate_sim_reads_a_recorded_map(tmp_path):
    path = make_map(tmp_path / "m.npz", noise=0.03)
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "calibrate_sim.py"), "--map", str(path),
                          "--map-fraction", "0.5", "--fit-reps", "1"], capture_output=True, text=True, timeout=600,
                         cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "9 cells x seeds [42, 43, 44]" in out.stdout
    assert "rung 0: 50% of the meta steps, seed 42, 200 dev items" in out.stdout
    assert "flags for adaptive_sim.py: --disagree" in out.stdout


def test_a_config_key_added_after_a_recording_keeps_its_parts_key_at_its_default():
    from benchmarks.record_map import FRACTIONS, fingerprint, load_sweep
    from xlamaml.cli import preset_path

    sw = load_sweep(str(preset_path("map-en-aux-deep-t4")), [])
    as_recorded = copy.deepcopy(sw.to_dict())
    del as_recorded["run"]["eval"]["dev_offset"]  # the config before eval.dev_offset existed

    class Before:
        def to_dict(self):
            return as_recorded

    assert fingerprint(sw, FRACTIONS) == fingerprint(Before(), FRACTIONS)
    assert sw.to_dict()["run"]["eval"]["dev_offset"] == 0  # the digest leaves the sweep's own config alone
    moved = load_sweep(str(preset_path("map-en-aux-deep-t4")), ["eval.dev_offset=500"])
    assert fingerprint(moved, FRACTIONS) != fingerprint(sw, FRACTIONS)  # other dev rows: other outcomes


def test_record_map_refuses_to_resume_parts_that_ran_on_another_kind_of_machine(tmp_path):
    import json

    from benchmarks.record_map import FRACTIONS, SMOKE, compute, fingerprint, load_sweep, record
    from xlamaml.cli import preset_path

    sw = load_sweep(str(preset_path("map-pairs")), SMOKE)
    parts = tmp_path / "smoke.npz.parts"
    parts.mkdir()
    here = compute(sw)
    assert here["device"] == "cpu" and here["forward"] == "fp32"  # the smoke test asks for precision=fp32
    elsewhere = {**here, "forward": "bfloat16", "machine": "avx2 avx512f avx512_bf16 amx_bf16"}
    (parts / "spec.json").write_text(json.dumps({"key": fingerprint(sw, FRACTIONS), "compute": elsewhere}))
    # Refused before any English stage runs (record() would build one first): the same config (key) on another
    # precision and instruction set.
    with pytest.raises(SystemExit) as refused:
        record(str(preset_path("map-pairs")), SMOKE, tmp_path / "smoke.npz", FRACTIONS, workers=1, fresh=False)
    assert "ran on cpu (avx2 avx512f avx512_bf16 amx_bf16) with bfloat16" in str(refused.value.code)
    assert "--fresh" in str(refused.value.code)
    assert json.loads((parts / "spec.json").read_text())["compute"] == elsewhere  # the parts' record is kept
