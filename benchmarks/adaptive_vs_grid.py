"""A grid sweep and an adaptive sweep over the same cells, on the embedded model and the shared data: the compute
each spent and, per target, the grid's pick and the adaptive pick with their test gains and intervals.

    python benchmarks/adaptive_vs_grid.py                      # 6 languages: 36 ordered pairs x 2 seeds (CPU, ~35 min)
    python benchmarks/adaptive_vs_grid.py --size full          # the 15 x 15 pairs x 3 seeds, all test pairs (a GPU)
    python benchmarks/adaptive_vs_grid.py --smoke-test         # 3 languages, 1 report: seconds to a few minutes

Both sweeps start from the demo preset (the cached fast path: layers 0-9 frozen and read from the feature cache,
first-order meta steps), with targets = dev languages = the pair languages; only `sweep.mode` differs. Each pick is
chosen on dev and reported on test: the grid's from its best_per_target.csv (every cell at full budget), the adaptive
one's from adaptive_picks.csv. An interrupted run resumes both sweeps (same --storage and --name).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from xlamaml.analysis.analyze import analyze  # noqa: E402
from xlamaml.cli import preset_path  # noqa: E402
from xlamaml.experiment.records import SWEEP_FILE, read_adaptive  # noqa: E402
from xlamaml.experiment.reports import trial_reports  # noqa: E402
from xlamaml.search.plan.counts import plan_counts  # noqa: E402
from xlamaml.search.spec import from_record, load_sweep  # noqa: E402
from xlamaml.search.sweep import run_sweep  # noqa: E402

SIZES = {
    "smoke": dict(langs=["de", "hi", "sw"], seeds=[42, 43], test=100, dev=60, steps=8),
    "small": dict(langs=["ar", "de", "es", "hi", "sw", "zh"], seeds=[42, 43], test=300, dev=200, steps=40,
                  ),
    "full": dict(langs=["ar", "bg", "de", "el", "en", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur", "vi", "zh"],
                 seeds=[42, 43, 44], test=None, dev=500, steps=40),
}


def overrides(size: dict, mode: str, extra: list[str]) -> list[str]:
    """Return the --set overrides of one of the two sweeps."""
    langs = ",".join(size["langs"])
    test = "null" if size["test"] is None else size["test"]
    return [f"sweep.mode={mode}", "sweep.assignments.kind=pairs", f"sweep.assignments.langs=[{langs}]",
            "sweep.assignments.methods=[baseline,x-maml,xla-maml]", f"sweep.seeds=[{','.join(map(str, size['seeds']))}]",
            f"eval.target_langs=[{langs}]", f"eval.dev_langs=[{langs}]", f"eval.max_examples={test}",
            f"eval.dev_max_examples={size['dev']}", f"meta.steps_per_query_lang={size['steps']}",
            f"meta.steps_per_report={size['steps']}", *extra]


def run(storage: str, name: str, sets: list[str]) -> Path:
    """Return the experiment folder after running (or resuming) the sweep `name`."""
    exp = Path(storage, name)
    if (exp / SWEEP_FILE).is_file():
        return Path(run_sweep(None, storage, name, resume=True))
    return Path(run_sweep(load_sweep(preset_path("demo"), sets), storage, name))


def grid_spent(exp: Path) -> dict[str, float]:
    """Return what a finished grid sweep spent: trials, meta steps, evaluated items (the plan's exact counts, which the
    trials ran), and trial-seconds (the seconds of the trials' reports)."""

    plan = plan_counts(from_record(str(exp)), "grid")
    seconds = sum(float(report.get("time_this_iter_s", 0.0)) for folder in exp.iterdir() if folder.is_dir()
                  for report in trial_reports(str(exp), folder.name))
    return {"trials": plan.trials, "meta_steps": plan.meta_steps, "dev_items": plan.dev_items,
            "test_items": plan.test_items, "trial_seconds": seconds}


def fmt_gain(delta: float, lo: float, hi: float) -> str:
    """Return 'delta [lo, hi]' (points)."""
    return f"{delta:+.2f} [{lo:+.2f}, {hi:+.2f}]"


def compare(grid_exp: Path, ad_exp: Path, grid_out: Path, ad_out: Path) -> str:
    """Return the markdown comparison: compute spent, then per target the two picks (test gains in points)."""
    g, a = grid_spent(grid_exp), read_adaptive(str(ad_exp)).spent_total()
    lines = ["| compute | grid | adaptive | adaptive / grid |", "|---|---|---|---|"]
    for key, label in (("trials", "trials"), ("meta_steps", "meta steps"), ("dev_items", "dev items scored"),
                       ("test_items", "test items scored"), ("trial_seconds", "trial-seconds")):
        lines.append(f"| {label} | {g[key]:,.0f} | {a[key]:,.0f} | {a[key] / g[key]:.0%} |")
    grid = pd.read_csv(grid_out / "best_per_target.csv")
    ad = pd.read_csv(ad_out / "adaptive_picks.csv")
    cells = pd.read_csv(grid_out / "significance.csv")
    cells = cells[cells["split"] == "test"]
    lines += ["", "| target | grid pick | its test gain [95% CI] | adaptive pick | its test gain [95% CI] | "
                  "the adaptive pick in the grid | indistinguishable on dev (adaptive) |",
              "|---|---|---|---|---|---|---|"]
    for _, row in ad.iterrows():
        target = row["target"]
        mine = grid[grid["target"] == target]
        theirs = mine.iloc[0] if len(mine) else None
        same = cells[(cells["target"] == target) & (cells["assignment"] == row["pick"])]
        lines.append(" | ".join([
            f"| {target}", theirs["assignment"] if theirs is not None else "-",
            fmt_gain(*(100 * theirs[k] for k in ("delta", "ci_low", "ci_high"))) if theirs is not None else "-",
            row["pick"], fmt_gain(row["test_gain"], row["test_ci_low"], row["test_ci_high"]),
            fmt_gain(*(100 * same.iloc[0][k] for k in ("delta", "ci_low", "ci_high"))) if len(same) else "-",
            f"{int(row['indistinguishable_count'])} of {int(row['candidates'])} |"]))
    return "\n".join(lines)


def main() -> None:
    """Run both sweeps (or resume them), analyze both, print the comparison; return None."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", choices=sorted(SIZES), default="small")
    p.add_argument("--smoke-test", action="store_true", help="the smallest size: 3 languages, 8 meta steps")
    p.add_argument("--storage", default="runs")
    p.add_argument("--name", default=None, help="experiment name prefix (default: adaptive-vs-grid-<size>)")
    p.add_argument("--set", action="append", default=[], help="more key=value overrides for both sweeps")
    args = p.parse_args()
    size_name = "smoke" if args.smoke_test else args.size
    size = SIZES[size_name]
    prefix = args.name or f"adaptive-vs-grid-{size_name}"
    t0 = time.perf_counter()
    grid_exp = run(args.storage, f"{prefix}-grid", overrides(size, "grid", args.set))
    t_grid = time.perf_counter() - t0
    ad_exp = run(args.storage, f"{prefix}-adaptive", overrides(size, "adaptive", args.set))
    t_ad = time.perf_counter() - t0 - t_grid
    grid_out, ad_out = grid_exp / "analysis", ad_exp / "analysis"
    analyze(grid_exp, grid_out)
    analyze(ad_exp, ad_out)
    print(f"size {size_name}: {len(size['langs'])} languages, {len(size['langs']) ** 2} cells x "
          f"{len(size['seeds'])} seeds; driver wall: grid {t_grid:.0f} s, adaptive {t_ad:.0f} s")
    print(compare(grid_exp, ad_exp, grid_out, ad_out))


if __name__ == "__main__":
    main()
