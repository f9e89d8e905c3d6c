"""The methods benchmarks/adaptive_sim.py compares on a simulated World (search/predictive/simulated.py), each charged the
same compute (Cost): the grid, random subsets of cells, the adaptive sweep (the sweep's own `schedule` and `decide`),
ASHA and Optuna TPE; how a run is scored (regret, the returned set); one repetition of them all (`simulate`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Optional

import numpy as np

from xlamaml.search.predictive.simulated import Cost, GainMap, Noise, World, calibrate_tau
from xlamaml.search.predictive.simulated_search import trial_seconds
from xlamaml.search.adaptive.rule import decide, seed_variance
from xlamaml.experiment.records import Rung
from xlamaml.search.schedule import AdaptiveConfig, keep_ratio, rung_steps, schedule

Z95 = 1.959964


@dataclass
class Run:
    """A method's outcome: per cell its finished seeds' full-budget dev outcomes, and the seconds spent."""

    seconds: float = 0.0
    finished: dict[int, list[int]] = field(default_factory=dict)  # cell -> seed indices finished at full budget
    note: str = ""  # the budget knob the method was set to
    picks: Optional[dict[int, int]] = None  # target index -> cell index, where the method picks by its own rule
    contenders: Optional[dict[int, list[int]]] = None  # target index -> the cells it returns as possibly best


def run_grid(world: World, cost: Cost, cells: Optional[list[int]] = None) -> Run:
    """Return the grid over `cells` (all by default): every seed at the full budget."""
    cells = list(range(len(world.map.cells))) if cells is None else cells
    per = trial_seconds(cost, len(world.map.targets), world.noise)
    return Run(per * len(cells) * world.noise.seeds, {c: list(range(world.noise.seeds)) for c in cells})


def run_random(world: World, cost: Cost, fraction: float, rng: np.random.Generator) -> Run:
    """Return a uniform random subset of the cells, as many as the fraction of the grid's compute pays for."""
    n = max(1, int(fraction * len(world.map.cells) + 1e-9))
    run = run_grid(world, cost, sorted(rng.choice(len(world.map.cells), n, replace=False).tolist()))
    return replace(run, note=f"{n} cells")


def sim_rungs(a: AdaptiveConfig, n_cells: int, n_targets: int, cost: Cost, noise: Noise) -> list[Rung]:
    """Return the rungs of a simulated adaptive sweep: the sweep's own schedule (search.schedule, what the planner
    counts and the driver runs) for this map's cells, targets, budget, dev items and seeds."""
    return schedule(a, n_cells, total_steps=cost.total_steps, dev_max=noise.dev_items, seeds=list(range(noise.seeds)),
                    targets=n_targets)


def adaptive_seconds(a: AdaptiveConfig, n_cells: int, n_targets: int, cost: Cost, noise: Noise) -> float:
    """Return the exact compute of an adaptive sweep without a bound (with one it is at most this)."""
    rungs = sim_rungs(a, n_cells, n_targets, cost, noise)
    total, done = 0.0, {}  # seed -> steps reached by the cells still in
    for rung in rungs:
        for s in rung.seeds:
            total += rung.cells * (cost.train(rung.steps - done.get(s, 0)) + cost.evaluate(n_targets * rung.dev_items))
            done[s] = rung.steps
    return total + rungs[-1].cells * len(rungs[-1].seeds) * cost.evaluate(n_targets * noise.test_items)


def run_adaptive(world: World, cost: Cost, a: AdaptiveConfig) -> Run:
    """Return the adaptive sweep: schedule's rungs, decide() after each, the last rung's survivors finished."""
    gmap, noise = world.map, world.noise
    rungs = sim_rungs(a, len(gmap.cells), len(gmap.targets), cost, noise)
    excluded = gmap.excluded()
    alive = list(range(len(gmap.cells)))
    run, done = Run(), {}
    for i, rung in enumerate(rungs):
        for s in rung.seeds:
            run.seconds += len(alive) * (cost.train(rung.steps - done.get(s, 0))
                                         + cost.evaluate(len(gmap.targets) * rung.dev_items))
            done[s] = rung.steps
        if i == len(rungs) - 1:
            break
        scores = {t: {gmap.cells[c]: world.outcomes(c, rung.steps, cost.total_steps)[ti, :len(rung.seeds),
                                                                                      :rung.dev_items]
                      for c in alive} for ti, t in enumerate(gmap.targets)}
        keep = min(rungs[i + 1].cells, len(alive))  # the schedule's count, as the sweep driver takes it
        decision = decide(scores, keep, top_k=a.top_k, bound=a.bound, excluded=excluded)
        index = {name: j for j, name in enumerate(gmap.cells)}
        alive = [index[name] for name in decision.kept]
    run.seconds += len(alive) * len(rungs[-1].seeds) * cost.evaluate(len(gmap.targets) * noise.test_items)
    run.finished = {c: list(rungs[-1].seeds) for c in alive}
    ratio = keep_ratio(a, len(gmap.cells), len(gmap.targets))
    run.note = (f"keep {a.keep:g}" + (f" (used {ratio:.2f})" if ratio != a.keep else "")
                + (f", per_target {a.per_target:g}" if a.per_target != AdaptiveConfig.per_target else ""))
    return run


def milestones(cost: Cost, eta: int, grace: float) -> list[int]:
    """Return ASHA's rung budgets in meta steps: grace * eta**k, rounded to reports, then the full budget."""
    out, f = [], grace
    while f < 1:
        steps = rung_steps(f, cost.total_steps)
        if steps < cost.total_steps and steps not in out:
            out.append(steps)
        f *= eta
    return out + [cost.total_steps]


def avg_gain(world: World, cell: int, seed: int, steps: int, cost: Cost) -> float:
    """Return a run's dev gain over the baseline averaged over the targets it is judged on (points)."""
    x = world.outcomes(cell, steps, cost.total_steps)[:, seed, :].mean(axis=1)
    judged = world.map.judged[:, cell]
    return float(100 * (x - world.base.mean(axis=1))[judged].mean())


def run_asha(world: World, cost: Cost, budget: float, rng: np.random.Generator, eta: int = 3,
             grace: float = 1 / 9) -> Run:
    """Return ASHA over (cell, seed) trials in random order, run one after another until the budget is spent."""
    n_c, n_t = len(world.map.cells), len(world.map.targets)
    trials = [(c, s) for c in range(n_c) for s in range(world.noise.seeds)]
    order = rng.permutation(len(trials))
    marks = milestones(cost, eta, grace)
    recorded: dict[int, list[float]] = {m: [] for m in marks}
    run = Run()
    for started, k in enumerate(order):
        if run.seconds >= budget:
            break
        run.note = f"eta {eta}, grace {grace:.2g}, {started + 1} of {len(trials)} trials"
        c, s = trials[k]
        prev = 0
        for m in marks:
            run.seconds += cost.train(m - prev) + cost.evaluate(n_t * world.noise.dev_items)
            prev = m
            value = avg_gain(world, c, s, m, cost)
            values = recorded[m]
            # Ray's ASHA: stop below the (1 - 1/eta) quantile of the values recorded at this rung; the first
            # trial to reach a rung has nothing to compare with and continues.
            stop = m < cost.total_steps and values and value < np.percentile(values, 100 * (1 - 1 / eta))
            values.append(value)
            if stop:
                break
        else:
            run.seconds += cost.evaluate(n_t * world.noise.test_items)
            run.finished.setdefault(c, []).append(s)
    return run


def run_tpe(world: World, cost: Cost, budgets: list[float], seed: int, eta: int = 3,
            grace: float = 1 / 9) -> list[Run]:
    """Return Optuna TPE over the cell with MedianPruner, reports at ASHA's rung budgets, as it stood when each of
    `budgets` (ascending seconds) was spent: one sequential run, so a smaller budget's run is a prefix of it."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed),
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=5))
    n_t = len(world.map.targets)
    names = world.map.cells
    marks = milestones(cost, eta, grace)
    used: dict[int, list[float]] = {}  # cell -> final values of its finished seeds
    started: dict[int, int] = {}
    run, out, idle = Run(), [], 0  # idle: asks for a cell whose seeds all ran
    while len(out) < len(budgets):
        if run.seconds >= budgets[len(out)]:
            out.append(Run(run.seconds, {c: list(s) for c, s in run.finished.items()}, run.note))
            continue
        # It keeps asking for cells whose seeds all ran (asks get slower with every trial): count it as done.
        if idle > 50:
            out += [Run(run.seconds, {c: list(s) for c, s in run.finished.items()}, run.note + ", then idle")] * (
                len(budgets) - len(out))
            break
        trial = study.ask()
        c = names.index(trial.suggest_categorical("cell", names))
        s = started.get(c, 0)
        run.note = f"{len(study.trials)} trials"
        if s >= world.noise.seeds:  # every seed of the cell ran: tell what they gave, at no cost
            study.tell(trial, float(np.mean(used[c])) if used.get(c) else -100.0)
            idle += 1
            continue
        started[c] = s + 1
        prev, pruned = 0, False
        for step, m in enumerate(marks):
            run.seconds += cost.train(m - prev) + cost.evaluate(n_t * world.noise.dev_items)
            prev = m
            value = avg_gain(world, c, s, m, cost)
            if m < cost.total_steps:
                trial.report(value, step)
                if trial.should_prune():
                    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                    pruned = True
                    break
        if not pruned:
            run.seconds += cost.evaluate(n_t * world.noise.test_items)
            run.finished.setdefault(c, []).append(s)
            used.setdefault(c, []).append(value)
            study.tell(trial, value)
    return out


@dataclass
class Score:
    """Per target: the regret of the pick (points), whether the true best is in the returned set, the set's size."""

    regret: list[float] = field(default_factory=list)
    best_in_set: list[bool] = field(default_factory=list)
    set_size: list[int] = field(default_factory=list)
    fraction: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def score(world: World, run: Run, cost: Cost, into: Score) -> None:
    """Add a run's per-target regret, best-in-set and set size (on full-budget dev outcomes) to `into`; return None."""
    gmap = world.map
    for ti in range(len(gmap.targets)):
        cells = [c for c in sorted(run.finished) if gmap.judged[ti, c]]
        best = int(np.argmax(world.true[ti]))
        if not cells:  # nothing finished on this target: the baseline stays, gain 0
            into.regret.append(float(world.true[ti, best]) - 0.0)
            into.best_in_set.append(False)
            into.set_size.append(0)
            continue
        if run.picks is not None:  # the method's own pick and set (a model's posterior, not the raw dev means)
            pick = run.picks.get(ti)
            returned = (run.contenders or {}).get(ti, [] if pick is None else [pick])
            into.regret.append(float(world.true[ti, best] - (world.true[ti, pick] if pick is not None else 0.0)))
            into.best_in_set.append(best in returned)
            into.set_size.append(len(returned))
            continue
        arrays = [world.outcomes(c, cost.total_steps, cost.total_steps)[ti, run.finished[c]] for c in cells]
        means = np.stack([x.mean(axis=0) for x in arrays])  # (cells, items): seed means
        seeds = np.array([len(x) for x in arrays])
        pick = int(np.argmax(means.mean(axis=1)))
        d = means - means[pick]
        se = np.sqrt(d.var(axis=1, ddof=1) / d.shape[1] + seed_variance(arrays) * (1 / seeds + 1 / seeds[pick]))
        in_set = d.mean(axis=1) + Z95 * se >= 0
        in_set[pick] = True
        into.regret.append(float(world.true[ti, best] - world.true[ti, cells[pick]]))
        into.best_in_set.append(best in [c for c, ok in zip(cells, in_set) if ok])
        into.set_size.append(int(in_set.sum()))


def fit_keep(a: AdaptiveConfig, gmap: GainMap, cost: Cost, noise: Noise, budget: float) -> Optional[AdaptiveConfig]:
    """Return `a` with the largest keep ratio (a 0.01 grid) whose exact compute fits `budget`, or None."""
    best = None
    for keep in np.arange(0.01, 1.0, 0.01):
        b = replace(a, keep=round(float(keep), 2))
        if adaptive_seconds(b, len(gmap.cells), len(gmap.targets), cost, noise) <= budget * (1 + 1e-9):
            best = b
    return best


Method = Callable[[World, float, int], Optional[Run]]  # None: the method cannot be set that cheap


def methods(gmap: GainMap, cost: Cost, noise: Noise, adaptive: AdaptiveConfig, grid_s: float,
            ) -> dict[str, Method]:
    """Return the compared methods: name -> (world, fraction, rep) -> run."""
    def adapt(world: World, fraction: float, rep: int) -> Optional[Run]:
        """Return the adaptive run whose keep ratio fits the fraction, or None where none does."""
        # The keep ratio is fitted to the fraction; where per_target alone costs more, it is dropped (and said so).
        a = fit_keep(adaptive, gmap, cost, noise, fraction * grid_s)
        a = a or fit_keep(replace(adaptive, per_target=0.0), gmap, cost, noise, fraction * grid_s)
        return run_adaptive(world, cost, a) if a is not None else None

    out: dict[str, Method] = {
        "random": lambda w, f, rep: run_random(w, cost, f, np.random.default_rng([rep, 3, int(f * 1000)])),
        "asha": lambda w, f, rep: run_asha(w, cost, f * grid_s, np.random.default_rng([rep, 4, int(f * 1000)])),
        "adaptive": adapt,
    }
    return out


def simulate(gmap: GainMap, cost: Cost, noise: Noise, adaptive: AdaptiveConfig, fractions: list[float], reps: int,
             tpe: bool = True, make_world: Optional[Callable[[int], World]] = None,
             predictive: bool = True, predictive_to: Optional[float] = 1.0) -> dict[tuple[str, float], Score]:
    """Return (method, fraction) -> its scores over `reps` repetitions, the grid under ('grid', 1.0). `make_world`
    (rep -> world) replaces the simulated World: benchmarks/replay.py passes one that replays a recorded map.
    `predictive` adds the predictive search (benchmarks/sim_predictive.py) at each fraction and at its own stop, and
    the model's picks on the grid's outcomes; its own stop is capped at `predictive_to` of the grid's compute (None:
    the largest of `fractions`, for maps where a run to the end takes minutes)."""
    from benchmarks.sim_predictive import grid_model_picks, run_predictive  # it imports this module
    if make_world is None:
        tau, _ = calibrate_tau(gmap, noise.rank_corr)
        make_world = lambda rep: World(gmap, noise, tau, rep)  # noqa: E731
    grid_s = run_grid(make_world(0), cost).seconds
    table: dict[tuple[str, float], Score] = {}
    for rep in range(reps):
        world = make_world(rep)
        run = run_grid(world, cost)
        cell = table.setdefault(("grid", 1.0), Score())
        score(world, run, cost, cell)
        cell.fraction.append(run.seconds / grid_s)
        runs = [("adaptive (defaults)", 0.0, run_adaptive(world, cost, adaptive))]
        runs += [(name, f, method(world, f, rep)) for name, method in methods(gmap, cost, noise, adaptive,
                                                                             grid_s).items() for f in fractions]
        if predictive:  # one sequential run per repetition, read off at each fraction and where it stops itself
            per = trial_seconds(cost, len(gmap.targets), noise)
            cap = [predictive_to * grid_s] if predictive_to else []
            snaps, own = run_predictive(world, cost, [f * grid_s for f in fractions] + cap, per)
            runs += [("predictive", f, r) for f, r in zip(fractions, snaps)]
            runs += [("predictive (own stop)", 0.0, own), ("grid, model's picks", 1.0, grid_model_picks(world, cost))]
        if tpe:  # one run per repetition, read off at each fraction
            runs += [("tpe", f, r) for f, r in zip(fractions, run_tpe(world, cost, [f * grid_s for f in fractions],
                                                                       seed=rep))]
        for name, f, run in runs:
            if run is None:  # the method cannot be set that cheap
                continue
            cell = table.setdefault((name, f), Score())
            cell.notes.append(run.note)
            score(world, run, cost, cell)
            cell.fraction.append(run.seconds / grid_s)
    return table
