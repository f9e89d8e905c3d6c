"""The map model: its closed-form posterior against a brute-force Gaussian, its fitted effects, its calibration on maps
drawn from its own assumptions, and the design's groups."""

from __future__ import annotations

import numpy as np
import pytest

from xlamaml.search.predictive.map_model import (EFFECTS, Curve, Design, Observation, dev_observation, fit,
                                                 shared_item_var)

LANGS = ["ar", "de", "hi", "sw", "zh"]
PAIRS = [f"x-maml:{a}" if a == b else f"xla-maml:{a}>{b}" for a in LANGS for b in LANGS]
AUX = [f"xla-maml:en>{a}" for a in LANGS]


def judged(targets: list[str], cells: list[str]) -> np.ndarray:
    """Return the judged mask (a cell is not judged on its own auxiliary languages)."""
    from xlamaml.search.predictive.prior import judged_mask

    return judged_mask(targets, cells)


def draw_map(rng: np.random.Generator, design: Design, variances: dict[str, float]) -> np.ndarray:
    """Return (targets, cells) gains drawn from the model's prior with the given group variances."""
    theta = np.zeros(design.x.shape[1])
    for i, g in enumerate(design.group_of):
        theta[i] = rng.normal(0, np.sqrt(variances[EFFECTS[g]])) if g >= 0 else rng.normal(0, 2.0)
    g = design.x @ theta + rng.normal(0, np.sqrt(variances["residual"]), design.x.shape[0])
    return g.reshape(len(design.targets), len(design.cells))


def test_design_leaves_out_groups_that_repeat_another():
    d = Design.build(LANGS, AUX)
    present = {EFFECTS[g] for g in set(d.group_of.tolist()) if g >= 0}
    # en -> aux: support is always en (the intercept); query is the cell; target x support is the target.
    assert present == {"target", "query", "target x query"}
    d2 = Design.build(LANGS, PAIRS)
    assert {EFFECTS[g] for g in set(d2.group_of.tolist()) if g >= 0} == {
        "target", "method", "support", "query", "cell", "target x support", "target x query"}


def brute_force(design: Design, obs: list[Observation], variances: dict[str, float], curve: Curve,
                offsets: dict[str, float], runs: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """Return the posterior mean and sd of every gain from the joint Gaussian written out whole (a residual per
    entry, an offset per target and per cell), for comparison with fit's closed form."""
    n_t, n_c = len(design.targets), len(design.cells)
    n = n_t * n_c
    prior = np.array([10.0 ** 2 if g == -1 else variances[EFFECTS[g]] for g in design.group_of])
    # Latent g = X theta + r: covariance of g.
    k_gg = design.x @ np.diag(prior) @ design.x.T + variances["residual"] * np.eye(n)
    rows = [design.targets.index(o.target) * n_c + design.cells.index(o.cell) for o in obs]
    a = np.array([curve.at(o.fraction)[0] for o in obs])
    tix = [design.targets.index(o.target) for o in obs]
    off = np.array([[(offsets[o.target] if tix[i] == tix[j] else 0.0)
                     + (runs.get(o.cell, 0.0) if o.cell == p.cell else 0.0) for j, p in enumerate(obs)]
                    for i, o in enumerate(obs)])
    k_yy = (a[:, None] * k_gg[np.ix_(rows, rows)] * a[None, :] + off
            + np.diag([o.var + curve.at(o.fraction)[1] for o in obs]))
    k_gy = k_gg[:, rows] * a[None, :]
    y = np.array([o.value for o in obs])
    mean = k_gy @ np.linalg.solve(k_yy, y)
    var = np.diag(k_gg) - np.einsum("ij,ji->i", k_gy, np.linalg.solve(k_yy, k_gy.T))
    return mean.reshape(n_t, n_c), np.sqrt(var).reshape(n_t, n_c)


def test_closed_form_posterior_matches_the_joint_gaussian():
    rng = np.random.default_rng(0)
    design = Design.build(LANGS, PAIRS)
    variances = {g: v for g, v in zip(EFFECTS[:-1], [1.0, 0.8, 0.3, 1.2, 0.2, 0.25, 0.4])} | {"residual": 0.5}
    curve = Curve({0.25: 0.5}, {0.25: 2.0})
    obs = [Observation(t, c, float(rng.normal(1, 2)), float(rng.uniform(0.5, 3)), float(rng.choice([0.25, 1.0])))
           for t in LANGS for c in PAIRS[::3] if rng.random() < 0.7]
    offsets = {t: float(rng.uniform(0, 1)) for t in LANGS}
    runs = {c: float(rng.uniform(0, 2)) for c in PAIRS[::6]}  # some cells' runs share an offset over targets
    post = fit(design, obs, curve, start=variances, iterations=1, offset_var=offsets, run_var=runs)
    # One EM iteration moved the variances: compare with the brute force at the variances it ended with.
    post = fit(design, obs, curve, start=post.variances, iterations=0, offset_var=offsets, run_var=runs)
    mean, sd = brute_force(design, obs, post.variances, curve, offsets, runs)
    np.testing.assert_allclose(post.mean, mean, atol=1e-6)
    np.testing.assert_allclose(post.sd, sd, atol=1e-6)
    # The covariance column agrees with the sd on its own entry.
    t, c = 2, 7
    assert post.covariance(t, c)[c] == pytest.approx(post.sd[t, c] ** 2, rel=1e-9)


def test_no_observation_gives_the_prior():
    design = Design.build(LANGS, AUX)
    post = fit(design, [])
    assert np.allclose(post.mean, 0)
    assert np.all(post.sd > 1)


def test_em_finds_the_query_effect_and_shrinks_what_is_absent():
    rng = np.random.default_rng(1)
    design = Design.build(LANGS, PAIRS)
    truth = {g: 1e-4 for g in EFFECTS} | {"query": 4.0, "target": 1.0, "residual": 0.1}
    gains = draw_map(rng, design, truth)
    obs = [Observation(t, c, float(gains[i, j] + rng.normal(0, 0.3)), 0.09)
           for i, t in enumerate(LANGS) for j, c in enumerate(PAIRS)]
    post = fit(design, obs, iterations=100)
    # Five query levels drawn: compare with the variance of the effects actually drawn, not the 4.0 they came from.
    drawn = gains.reshape(len(LANGS), len(LANGS), len(LANGS)).mean(axis=(0, 1)).var()
    assert 0.5 * drawn < post.variances["query"] < 2 * drawn
    assert max(post.variances[g] for g in ("method", "support", "cell", "target x query")) < 0.05 * drawn
    assert np.corrcoef(post.mean.ravel(), gains.ravel())[0, 1] > 0.97


def test_held_out_intervals_are_calibrated_on_maps_from_the_model():
    rng = np.random.default_rng(2)
    design = Design.build(LANGS, PAIRS)
    mask = judged(LANGS, PAIRS)
    truth = {"target": 1.0, "method": 1.0, "support": 0.3, "query": 1.0, "cell": 0.2, "target x support": 0.1,
             "target x query": 0.3, "side": 1e-4, "residual": 0.3}
    hits = []
    for _ in range(30):
        gains = draw_map(rng, design, truth)
        seen = rng.choice(len(PAIRS), 12, replace=False)
        obs = [Observation(t, PAIRS[j], float(gains[i, j] + rng.normal(0, 1.0)), 1.0)
               for i, t in enumerate(LANGS) for j in seen if mask[i, j]]
        post = fit(design, obs, judged=mask)
        lo, hi = post.interval()
        out = mask.copy()
        out[:, seen] = False
        hits.append(((gains >= lo) & (gains <= hi))[out].mean())
    assert 0.8 <= np.mean(hits) <= 0.97, np.mean(hits)


def test_short_runs_count_less_and_a_later_fraction_supersedes():
    design = Design.build(LANGS, AUX)
    curve = Curve({0.25: 0.5}, {0.25: 4.0})
    short = fit(design, [Observation("ar", AUX[1], 4.0, 1.0, 0.25)], curve, iterations=0)
    full = fit(design, [Observation("ar", AUX[1], 4.0, 1.0, 1.0)], curve, iterations=0)
    assert short.sd[0, 1] > full.sd[0, 1]
    both = fit(design, [Observation("ar", AUX[1], -9.0, 1.0, 0.25), Observation("ar", AUX[1], 4.0, 1.0, 1.0)],
               curve, iterations=0)
    assert both.mean[0, 1] == pytest.approx(full.mean[0, 1])


def test_shared_seed_variance_is_what_a_run_moves_on_every_target():
    from xlamaml.search.predictive.map_model import shared_seed_var

    rng = np.random.default_rng(4)
    # 6 targets x 8 seeds: a run offset of sd 2 on every target, plus independent noise of sd 1.
    cells = [rng.normal(0, 2, (1, 8)) + rng.normal(0, 1, (6, 8)) for _ in range(200)]
    assert shared_seed_var(cells) == pytest.approx(4.0, rel=0.15)
    assert shared_seed_var([rng.normal(0, 1, (6, 8)) for _ in range(200)]) < 0.1
    assert shared_seed_var([np.zeros((6, 1))]) is None


def test_dev_observation_and_shared_item_variance():
    rng = np.random.default_rng(3)
    base = (rng.random(400) < 0.6).astype(int)
    x = np.stack([np.where(rng.random(400) < 0.2, 1 - base, base) for _ in range(3)])
    o = dev_observation("ar", AUX[0], x, base, seed_var=1.0)
    assert o.value == pytest.approx(100 * (x.mean(axis=0) - base).mean())
    assert o.var > 1.0 / 3
    # Cells that flip the same items share their error; independent flips share only what the baseline's outcome
    # fixes (the direction of a flip), a small part of it.
    flips = rng.random(400) < 0.2
    same = [np.where(flips, 1 - base, base)[None] for _ in range(4)]
    own = [np.where(rng.random(400) < 0.2, 1 - base, base)[None] for _ in range(4)]
    assert shared_item_var(same, base) > 3 * shared_item_var(own, base) > 0
