"""benchmarks/calibrate_sim.py: its statistics recover the noise adaptive_sim's World draws, and it reads a grid."""

import csv

import numpy as np

from benchmarks.calibrate_sim import write_fake
from benchmarks.grid_noise import (Grid, Trial, build_grid, cell_langs, disagreement, gain_rows,
                                   independent_disagreement, read_experiment, seed_stats)
from xlamaml.search.predictive.simulated import LANGS, Noise, World, calibrate_tau, read_gains, spearman, synthetic_aux


def test_cell_langs_and_exclusion():
    assert cell_langs("x-maml:hi") == {"hi"}
    assert cell_langs("xla-maml:ar>de") == {"ar", "de"}
    assert cell_langs("baseline") == set()


def world_grid(noise: Noise, cells: int = 12) -> Grid:
    """Return a Grid whose trials are a World's full-budget outcomes (dev = test = the World's dev items); its cells are
    named by assignments that trained on none of the targets, so every (cell, target) pair is judged."""
    gmap = synthetic_aux()
    gmap = type(gmap)(gmap.name, gmap.targets[:4], gmap.cells[:cells], np.nan_to_num(gmap.gains[:4, :cells]))
    others = [lang for lang in LANGS if lang not in gmap.targets]
    names = [f"x-maml:{x}" for x in others] + [f"xla-maml:en>{x}" for x in others if x != "en"]
    tau, _ = calibrate_tau(gmap, noise.rank_corr)
    w = World(gmap, noise, tau, 0)
    base = Trial("b", "baseline", 0, {}, {(s, t): w.base[i] for s in ("dev", "test") for i, t in enumerate(gmap.targets)})
    cells = {}
    for c, name in enumerate(gmap.cells):
        x = w.outcomes(c, 500, 500)
        cells[names[c]] = {s: Trial(f"{name}{s}", names[c], s, {}, {(sp, t): x[i, s] for sp in ("dev", "test")
                                                                    for i, t in enumerate(gmap.targets)})
                           for s in range(noise.seeds)}
    return Grid(base, cells, gmap.targets)


def test_recovers_the_worlds_disagreement_and_seed_share():
    noise = Noise(dev_items=4000, disagree=0.12, seed_sd=0.0, seed_share=0.6, seeds=2)
    g = world_grid(noise)
    r, pairs, items = disagreement(g, "dev")
    assert items == 4000 and pairs == 12 * 2 * 4
    assert abs(r - 0.12) < 0.01
    s = seed_stats(g, "dev")
    assert abs(s.share - 0.6) < 0.05
    assert abs(s.cross_share) < 0.05  # the World's cells flip independently
    assert abs(s.cross_disagree - independent_disagreement(0.12, s.p_base)) < 0.01


def test_recovers_the_worlds_seed_offset():
    noise = Noise(dev_items=3000, disagree=0.15, seed_sd=2.0, seed_share=0.5, seeds=2)
    s = seed_stats(world_grid(noise, cells=14), "dev")
    assert 1.2 < s.offset_sd < 2.8  # 14 cells x 2 seeds: a rough estimate of 2.0
    assert s.seed_sd > s.offset_sd


def test_spearman_ties():
    assert spearman(np.array([1, 2, 3]), np.array([3, 2, 1])) == -1
    assert abs(spearman(np.array([1, 1, 2, 3]), np.array([1, 2, 3, 4])) - 0.9487) < 1e-3


def test_reads_a_fake_experiment_and_writes_judged_gains(tmp_path):
    root = tmp_path / "grid"
    write_fake(root, ["ar", "de", "sw"], [42, 43], 50, 70, adaptive=False)
    trials = read_experiment(root)
    assert len(trials) == 1 + 9 * 2
    g = build_grid(trials)
    assert g.targets == ["ar", "de", "sw"] and len(g.cells) == 9
    rows = gain_rows(g)
    assert len(rows) == 3 * 4  # per target: 9 cells minus the 5 that trained on it
    assert all(t not in cell_langs(c) for t, c, _ in rows)
    t, c, v = rows[0]
    mean = np.mean([g.cells[c][s].items["test", t].mean() for s in (42, 43)])
    assert abs(v - 100 * (mean - g.base.items["test", t].mean())) < 1e-9
    path = tmp_path / "g.csv"
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([("target", "cell", "gain")] + rows)
    gm = read_gains(str(path))
    assert gm.judged.sum() == 12 and gm.gains.shape == (3, 9)


def test_trained_on_follows_the_assignment_english_never_counts():
    assert cell_langs("xla-maml:bg+de>hi") == {"bg", "de", "hi"}  # several languages joined by '+'
    assert cell_langs("xla-maml:en>hi") == {"hi"}
    assert cell_langs("x-maml:en") == set()
    g = Grid(Trial("b", "baseline", 0, {}), {}, ["en", "hi"])
    assert g.judged("xla-maml:en>hi", "en") and not g.judged("xla-maml:en>hi", "hi")
    assert g.judged("xla-maml:hi>en", "en") and g.judged("x-maml:en", "en")


def test_reads_the_fake_adaptive_record_through_the_project_reader(tmp_path):
    from benchmarks.low_budget import low_budget
    from xlamaml.experiment.records import read_adaptive

    root = tmp_path / "grid"
    write_fake(root, ["ar", "de", "sw"], [42, 43], 50, 70, adaptive=True)
    record = read_adaptive(str(tmp_path / "grid-adaptive"))
    assert record is not None and record.rungs[0].fraction == 0.1
    lb, rows = low_budget(build_grid(read_experiment(root)), record, [], None, None)
    assert (lb.fraction, lb.seed, lb.dev_items, lb.targets) == (0.1, 42, 50, 3)
    assert len(rows) == 3 * 4  # judged pairs only
