"""xlamaml: cross-lingual meta-learning (XLA-MAML) with a Ray Tune search over language assignments.

The Python API: the functions the command line calls, imported on first use (`import xlamaml` loads no torch or Ray).

    import xlamaml

    sweep = xlamaml.load_sweep("smoke", ["sweep.seeds=[0,1]"])  # a preset name or a YAML file, and --set overrides
    print("\\n".join(xlamaml.make_plan(sweep, "smoke").lines()))  # what it will run, before it runs
    exp = xlamaml.run_sweep(sweep, "runs", "my-sweep")           # the experiment folder (a str for an s3:// URI)
    table = xlamaml.load_results(exp)                           # one row per trial x split x language x metric
    files = xlamaml.analyze(exp, f"{exp}/analysis")             # {file name: path}: table.md, heatmap.png, picks

`examples/quickstart.ipynb` runs exactly this on the tiny model (the test suite executes it).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = ["load_sweep", "run_sweep", "make_plan", "load_results", "analyze", "Options"]

# name -> (module, attribute): resolved on first use, so `import xlamaml` stays light.
_API = {
    "run_sweep": ("xlamaml.search.sweep", "run_sweep"),
    "make_plan": ("xlamaml.search.plan.planner", "make_plan"),
    "load_results": ("xlamaml.analysis.results", "load_results"),
    "analyze": ("xlamaml.analysis.analyze", "analyze"),
    "Options": ("xlamaml.analysis.analyze", "Options"),
}


def load_sweep(preset_or_path: str, overrides: list[str] | None = None) -> Any:
    """Return the checked Sweep of a preset name (`xlamaml presets`) or a YAML file, with `key=value` overrides."""
    from xlamaml.presets import preset_path
    from xlamaml.search.spec import load_sweep as load

    return load(preset_path(preset_or_path), overrides)


def __getattr__(name: str) -> Any:
    """Return the API function `name`, importing its module on first use."""
    if name in _API:
        module, attribute = _API[name]
        return getattr(import_module(module), attribute)
    raise AttributeError(f"module 'xlamaml' has no attribute {name!r}")
