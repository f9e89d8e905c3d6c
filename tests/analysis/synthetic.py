"""Synthetic Ray Tune experiment directories with known numbers, for the analysis tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

LANGS = ("en", "hi", "de", "sw")

# Test accuracy per trial (seed) and target; the expected results in the tests are computed by hand.
BASELINE = {1: {"en": 0.80, "hi": 0.60, "de": 0.70, "sw": 0.50}, 2: {"en": 0.82, "hi": 0.62, "de": 0.72, "sw": 0.52}}
XLA_HI = {1: {"en": 0.81, "hi": 0.66, "de": 0.72, "sw": 0.50}, 2: {"en": 0.83, "hi": 0.64, "de": 0.74, "sw": 0.52}}
XLA_SW = {1: {"en": 0.80, "hi": 0.63, "de": 0.71, "sw": 0.58}}
X_HI = {1: {"en": 0.80, "hi": 0.64, "de": 0.70, "sw": 0.49}, 2: {"en": 0.82, "hi": 0.66, "de": 0.72, "sw": 0.51}}


def config(assignment: str | None, seed: int, **overrides: Any) -> dict[str, Any]:
    """Return a trial config like the sweep's: full nested config plus (usually) an assignment."""
    cfg: dict[str, Any] = {
        "task": "xnli", "method": "xla-maml", "seed": seed,
        "meta": {"support_langs": ["en"], "query_langs": ["hi"], "sampling": "cover", "parallel": True,
                 "inner_lr": 1e-5, "outer_lr": 1e-5, "inner_steps": 1, "first_order": False,
                 "steps_per_query_lang": 500, "k": 8, "n": 8},
        "eval": {"target_langs": list(LANGS)}, "model": {"name": "embedded"}, "few_shot": {"enabled": False},
    }
    if assignment is not None:
        cfg["assignment"] = assignment
    for key, value in overrides.items():
        if key in cfg["meta"]:
            cfg["meta"][key] = value
        else:
            cfg[key] = value
    return cfg


def metrics(split: str, values: dict[str, float], aux: set[str], metric: str = "acc") -> dict[str, float]:
    """Return `{split}/{lang}/{metric}` plus both averages, as the trainable reports them."""
    out = {f"{split}/{lang}/{metric}": v for lang, v in values.items()}
    out[f"{split}/avg/{metric}"] = sum(values.values()) / len(values)
    rest = [v for lang, v in values.items() if lang not in aux]
    out[f"{split}/avg_excl_aux/{metric}"] = sum(rest) / len(rest) if rest else float("nan")
    return out


def report(iteration: int, trial_id: str, dev: dict[str, float], aux: set[str],
           test: dict[str, float] | None = None, metric: str = "acc") -> dict[str, Any]:
    """Return one result.json line: Ray's bookkeeping keys, dev metrics, and test metrics when final."""
    line: dict[str, Any] = {"training_iteration": iteration, "trial_id": trial_id, "time_this_iter_s": 1.5,
                            "meta/steps": iteration * 10, "meta/query_loss": 0.7, "done": False,
                            "config": {"seed": 1, "meta": {"k": 8}}, **metrics("dev", dev, aux, metric)}
    if test is not None:
        line.update(metrics("test", test, aux, metric))
        line["done"] = True
    return line


def write_trial(exp: Path, name: str, params: dict[str, Any], reports: list[dict[str, Any]] | None,
                error: str | None = None) -> Path:
    """Return the trial folder written under `exp`: params.json, result.json lines, error.txt."""
    trial = exp / name
    trial.mkdir(parents=True)
    (trial / "params.json").write_text(json.dumps(params, indent=2))
    if reports is not None:
        (trial / "result.json").write_text("".join(json.dumps(r) + "\n" for r in reports))
    if error is not None:
        (trial / "error.txt").write_text(error)
    return trial


def dev_of(test: dict[str, float]) -> dict[str, float]:
    """Return dev numbers a little below the test numbers (any distinct values do)."""
    return {lang: round(v - 0.01, 4) for lang, v in test.items()}


def done_trial(exp: Path, name: str, params: dict[str, Any], test: dict[str, float], aux: set[str]) -> Path:
    """Return a finished trial with two reports, the last holding test metrics."""
    first = report(1, name, dev_of({k: v - 0.02 for k, v in test.items()}), aux)
    return write_trial(exp, name, params, [first, report(2, name, dev_of(test), aux, test)])


def make_experiment(exp: Path) -> Path:
    """Return an experiment dir: baseline, xla-maml en>hi (2 seeds), en>sw (resumed), x-maml hi (2 seeds, one
    without an assignment string), an errored and a pending trial, and non-trial files Ray leaves."""
    exp.mkdir(parents=True, exist_ok=True)
    for seed in (1, 2):
        done_trial(exp, f"T_base_{seed}", config("baseline", seed), BASELINE[seed], set())
        done_trial(exp, f"T_xla_hi_{seed}", config("xla-maml:en>hi", seed), XLA_HI[seed], {"hi"})
    done_trial(exp, "T_xmaml_hi_1", config("x-maml:hi", 1), X_HI[1], {"hi"})
    # Same variant written the pre-assignment way: method + meta.*_langs (x-maml is never parallel).
    done_trial(exp, "T_xmaml_hi_2", config(None, 2, method="x-maml", support_langs=["hi"], query_langs=["hi"],
                                             parallel=False), X_HI[2], {"hi"})
    # Resumed after a crash at iteration 3: iterations 2 and 3 are reported again, with new numbers.
    sw = XLA_SW[1]
    write_trial(exp, "T_xla_sw_1", config("xla-maml:en>sw", 1), [
        report(1, "xla_sw", dev_of({k: v - 0.05 for k, v in sw.items()}), {"sw"}),
        report(2, "xla_sw", dev_of({k: v - 0.04 for k, v in sw.items()}), {"sw"}),
        report(3, "xla_sw", dev_of({k: v - 0.03 for k, v in sw.items()}), {"sw"}),
        report(2, "xla_sw", dev_of({k: v - 0.02 for k, v in sw.items()}), {"sw"}),
        report(3, "xla_sw", dev_of(sw), {"sw"}, sw),
    ])
    write_trial(exp, "T_xla_de_1", config("xla-maml:en>de", 1),
                [report(1, "xla_de", dev_of(BASELINE[1]), {"de"})], error="RuntimeError: CUDA out of memory")
    write_trial(exp, "T_xla_ur_1", config("xla-maml:en>ur", 1), None)
    (exp / "xlamaml_sweep.json").write_text("{}")
    (exp / "experiment_state-2026.json").write_text("{}")
    (exp / "not_a_trial").mkdir()
    return exp


def items_trial(exp: Path, name: str, assignment: str, seed: int, items: dict[str, Any], aux: set[str],
                dev: dict[str, float] | None = None, metric: str = "acc") -> Path:
    """Return a finished trial whose test metrics are the means of its per-item outcomes `items` (lang -> values;
    uids '0', '1', ... shared by every language), written as predictions/test-<lang>.items.tsv."""
    from xlamaml.trainables.tasks.outcomes import write_outcomes

    test = {lang: float(sum(v) / len(v)) for lang, v in items.items()}
    cfg = config(assignment, seed, eval={"target_langs": list(items)})
    line = report(1, name, dev if dev is not None else test, aux, test, metric)
    trial = write_trial(exp, name, cfg, [line])
    for lang, values in items.items():
        write_outcomes(trial / "predictions" / f"test-{lang}.items.tsv", [str(i) for i in range(len(values))],
                       {metric: list(values)})
    return trial
