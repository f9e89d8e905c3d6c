"""The search space: language assignments (as strings, see trainables.assignment) and hyper-parameters.

    en-aux    baseline, X-MAML aux and XLA-MAML en -> aux for every auxiliary language (Figure 2 rows)
    pairs     every ordered pair a -> b of the languages; a == b is the X-MAML diagonal
    two-aux   every unordered pair {a, b}: XLA-MAML a -> b and b -> a, X-MAML a+b
    list      the assignment strings given in `items`
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from ray import tune

from xlamaml.trainables.assignment import parse_assignment
from xlamaml.trainables.config_parsing import nested
from xlamaml.trainables.errors import ConfigError
from xlamaml.trainables.languages import XNLI_LANGS
from xlamaml.trainables.methods import METHODS

KINDS = ("en-aux", "pairs", "two-aux", "list")
# Distributions a `sweep.space` entry may name, with how many numbers each takes.
DISTRIBUTIONS = {"loguniform": 2, "uniform": 2, "quniform": 3, "randint": 2, "choice": None}


@dataclass
class AssignmentSpec:
    """`sweep.assignments`: which assignment strings a sweep covers (kind, languages, methods, or a list)."""

    kind: str = "en-aux"
    langs: list[str] = field(default_factory=lambda: [l for l in XNLI_LANGS if l != "en"])
    methods: list[str] = field(default_factory=lambda: list(METHODS))
    items: list[str] = field(default_factory=list)  # kind "list": explicit assignment strings


def grid_trials(names: list[str], seeds: list[int], *, seedless_baseline: bool) -> list[dict[str, Any]]:
    """Return the assignment and seed of every grid trial: each assignment with each seed, except the baseline, which
    runs once (first seed) when `seedless_baseline`: scoring a shared base involves no random number."""
    return [{"assignment": name, "seed": seed} for name in names for seed in seeds
            if not (seedless_baseline and name == "baseline" and seed != seeds[0])]


def seedless_baseline(cfg: Any, task: Any) -> bool:
    """Return True when a baseline trial of `cfg` gives the same result for every trial seed: no few-shot stage (it
    shuffles by seed) and a data split that does not depend on the seed (MLQA's held-out split does)."""
    return not cfg.few_shot.enabled and "seed" not in task.data_split_key(cfg)


def assignments(spec: AssignmentSpec) -> list[str]:
    """Return the assignment strings the spec covers (baseline first when asked), each checked."""
    if spec.kind not in KINDS:
        raise ConfigError(f"config key sweep.assignments.kind: expected one of {', '.join(KINDS)}; got {spec.kind!r}")
    methods = set(spec.methods)
    unknown = methods - set(METHODS)
    if unknown:
        raise ConfigError(f"config key sweep.assignments.methods: unknown method {sorted(unknown)[0]!r}; "
                          f"expected one of {', '.join(METHODS)}")
    out = ["baseline"] if "baseline" in methods else []
    if spec.kind == "list":
        out = list(spec.items)
    elif spec.kind == "en-aux":
        for aux in spec.langs:
            if aux == "en":
                continue
            out += [a for m, a in (("x-maml", f"x-maml:{aux}"), ("xla-maml", f"xla-maml:en>{aux}")) if m in methods]
    elif spec.kind == "pairs":
        for a, b in itertools.product(spec.langs, repeat=2):
            if a == b and "x-maml" in methods:
                out.append(f"x-maml:{a}")
            elif a != b and "xla-maml" in methods:
                out.append(f"xla-maml:{a}>{b}")
    else:  # two-aux
        for a, b in itertools.combinations(spec.langs, 2):
            if "xla-maml" in methods:
                out += [f"xla-maml:{a}>{b}", f"xla-maml:{b}>{a}"]
            if "x-maml" in methods:
                out.append(f"x-maml:{a}+{b}")
    for a in out:
        parse_assignment(a)  # fails with the bad string named
    if not out:
        raise ConfigError("config key sweep.assignments: the spec selects no assignment")
    return out


def distribution(key: str, spec: Any) -> Any:
    """Return the Tune distribution for one `sweep.space` entry, e.g. {"loguniform": [1e-6, 1e-3]}."""
    if not isinstance(spec, dict) or len(spec) != 1:
        raise ConfigError(f"config key sweep.space.{key}: expected one of "
                         f"{', '.join(DISTRIBUTIONS)} with its arguments, e.g. {{loguniform: [1.0e-6, 1.0e-3]}}")
    (name, args), = spec.items()
    if name not in DISTRIBUTIONS:
        raise ConfigError(f"config key sweep.space.{key}: unknown distribution {name!r}; expected one of "
                         f"{', '.join(DISTRIBUTIONS)}")
    if not isinstance(args, list) or (DISTRIBUTIONS[name] is not None and len(args) != DISTRIBUTIONS[name]):
        raise ConfigError(f"config key sweep.space.{key}: {name} takes a list of {DISTRIBUTIONS[name] or 'values'}")
    if name == "choice":
        return tune.choice(args)
    return getattr(tune, name)(*[float(a) if name != "randint" else int(a) for a in args])


def distribution_values(key: str, spec: Any) -> list[Any]:
    """Return values that span one `sweep.space` entry: a range's ends, or every choice (what validation tries)."""
    distribution(key, spec)  # a malformed entry: its one-line error
    (name, args), = spec.items()
    if name == "choice":
        return list(args)
    if name == "randint":  # [low, high): high itself is never drawn
        return [int(args[0]), int(args[1]) - 1]
    return [float(args[0]), float(args[1])]


def hyper_space(space: dict[str, Any]) -> dict[str, Any]:
    """Return the nested Tune search space for `sweep.space` ({"meta.inner_lr": {"loguniform": [...]}, ...})."""
    return nested({key: distribution(key, spec) for key, spec in space.items()})
