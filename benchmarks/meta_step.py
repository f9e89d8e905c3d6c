"""Benchmark: time and peak memory of a first- and second-order meta step, as ratios to a plain
fine-tuning step on the same batch (K = N = 8, real XNLI en -> hi pairs).

    python benchmarks/meta_step.py                     # tiny, medium and the embedded model
    python benchmarks/meta_step.py --models tiny medium --reps 5
    python benchmarks/meta_step.py --freeze-embeddings # fast weights without the 96M embedding rows
    python benchmarks/meta_step.py --task mlqa --freeze-embeddings   # QA windows of 384 tokens
    python benchmarks/meta_step.py --precision fp32 bf16 --freeze-embeddings   # bf16 forward passes vs fp32
    python benchmarks/meta_step.py --models embedded --freeze-embeddings --precision fp32 bf16 --layers 0 8 --peers
                                                       # the README's speed table: fp32 vs bf16, L = 0 vs L = 8
                                                       # cached, second order against higher and TorchOpt
    python benchmarks/meta_step.py --models embedded --peers --kinds second-order second-order/torchopt --profile 25
                                                       # where a step's time goes, op by op (torch.profiler)
    python benchmarks/meta_step.py --models embedded --peers --levers --reps 5
                                                       # the defaults' meta step against higher and TorchOpt, and
                                                       # each speed lever on its own (issue 23's ratios)
    python benchmarks/meta_step.py --smoke-test        # tiny only, seconds
    python benchmarks/meta_step.py --device cuda --models mbert --precision fp32 bf16 --peers
                                                       # the paper's mBERT-base shapes with random weights, on a GPU

`mbert` is the tiny model path (random BERT, byte tokenizer) at mBERT-base sizes: hidden 768, 12 layers, 12 heads,
intermediate 3072, its word-embedding matrix resized to mBERT's 119547 rows and its position table to 512 (random
rows; byte token ids stay below 261, which changes no timing), so that the embedding gradient costs what mBERT's does.

`--layers L` (L >= 1) freezes the bottom L encoder layers and runs every step from the frozen-layer feature cache
(trainables/feature_cache.py: features computed once, stored float16, read memory-mapped), as a sweep does.
`--peers` adds the second-order step of `higher` (a test dependency) and of TorchOpt (`pip install --no-deps torchopt
optree graphviz`; skipped when it does not import) on the same batches, and our steps before the speed levers
(a dense word-embedding fast weight, the per-tensor AdamW loop), at fp32 and L = 0; `--levers` adds our steps with
each lever off on its own. The last lines give the ratios the speed goals are stated in.

Each (model, step kind) runs in its own process so the peak resident memory (CPU) or the peak
allocated memory (CUDA) belongs to that step alone. A benchmark, not a test: it prints, it asserts nothing.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import statistics
import time
from typing import Any, Callable

MODELS = {
    "tiny": dict(name="tiny", tiny=dict(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64)),
    "medium": dict(name="tiny", tiny=dict(hidden_size=256, num_layers=4, num_heads=4, intermediate_size=1024)),
    "embedded": dict(name="embedded"),
    "mbert": dict(name="tiny", tiny=dict(hidden_size=768, num_layers=12, num_heads=12, intermediate_size=3072)),
}
# Tables the tiny path sizes from its byte tokenizer and max_length, resized after loading (see the docstring).
RESIZE = {"mbert": dict(vocab_size=119547, max_position_embeddings=512)}
KINDS = ("finetune", "first-order", "second-order", "eval")  # eval: a forward pass over 64 pairs, no grad
PEERS = ("second-order/higher", "second-order/torchopt")  # the same step by other libraries
# Our step with one lever off (--levers): the word-embedding fast weight of the whole vocabulary instead of the
# episode's rows, the per-tensor AdamW loop instead of the fused kernel, or both (the step before either lever).
LEVERS = {"dense-embeddings": dict(sparse_embeddings=False), "loop-adamw": dict(fused=False),
          "as-before": dict(sparse_embeddings=False, fused=False)}
LEVER_KINDS = tuple(f"{k}/{v}" for k in ("first-order", "second-order") for v in LEVERS)


def peer_step(kind: str, model: Any, loss_fn: Callable[..., Any], inner_lr: float) -> Callable[[Any, Any], None]:
    """Return a function doing one second-order MAML step (inner SGD step, query loss, outer AdamW) with a peer."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    # The outer optimizer ours uses (fused AdamW), so that the rows compare the meta-step libraries alone.
    outer = torch.optim.AdamW(params, lr=1e-5, weight_decay=0.01, fused=True)
    if kind == "second-order/higher":
        import higher

        inner = torch.optim.SGD(params, lr=inner_lr)

        def step(support: Any, query: Any) -> None:
            with higher.innerloop_ctx(model, inner, copy_initial_weights=False) as (fmodel, diffopt):
                diffopt.step(loss_fn(fmodel, None, support))
                loss_fn(fmodel, None, query).backward()
            outer.step()
            outer.zero_grad(set_to_none=True)
        return step
    import torchopt

    # TorchOpt differentiates every parameter of the module it is given: hand it the modules whose parameters train
    # (frozen embeddings would otherwise fail with "does not require grad").
    trained = [m for m in model.modules() if m._parameters and all(p.requires_grad for p in m._parameters.values())]
    inner = torchopt.MetaSGD(torch.nn.ModuleList(trained), lr=inner_lr)

    def step(support: Any, query: Any) -> None:
        state = torchopt.extract_state_dict(model)
        inner.step(loss_fn(model, None, support))
        loss_fn(model, None, query).backward()
        outer.step()
        outer.zero_grad(set_to_none=True)
        torchopt.recover_state_dict(model, state)
    return step


def measure(model_key: str, kind: str, reps: int, max_length: int, freeze_embeddings: bool,
            device: str, threads: int, task_name: str = "xnli", precision: str = "fp32", layers: int = 0,
            profile_rows: int = 0) -> dict:
    """Return the median seconds of one `kind` step and the peak memory (and, with `profile_rows`, the top ops of
    one more step by self time), measured in this process."""
    # Imported here, in the measuring child process: the parent only spawns children and prints, so it never
    # holds torch or a model of its own.
    import torch

    from xlamaml.trainables.config import config_from_dict
    from xlamaml.trainables.maml import MetaLearner
    from xlamaml.trainables.models import apply_freezing
    from xlamaml.trainables.precision import autocast, autocast_dtype, with_autocast
    from xlamaml.trainables.data_source import TokenizingSource
    from xlamaml.trainables.stages import build_sampler
    from xlamaml.trainables.tasks.registry import get_task

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # a new task head's load report is expected
    hf_logging.disable_progress_bar()
    if threads:
        torch.set_num_threads(threads)
    cfg = config_from_dict({"task": task_name, "model": {**MODELS[model_key], "max_length": max_length},
                            "device": device, "meta": {"support_langs": ["en"], "query_langs": ["hi"], "k": 8, "n": 8}})
    task = get_task(task_name)
    amp = autocast_dtype(precision, torch.device(device))
    loss_fn, collate_mixed = with_autocast(task.loss, amp, device), task.collate_mixed
    model, tok = task.load_model(cfg.model, None, 0)
    if model_key in RESIZE:
        _resize_tables(model, **RESIZE[model_key])
    model.to(device)
    trainable = apply_freezing(model, freeze_embeddings or layers > 0, layers)
    dev = TokenizingSource(cfg, task, tok).sets("dev", ["en", "hi"], max_examples=400, train=True)
    if layers:  # as a trial reads them: features computed once, stored float16, memory-mapped
        import tempfile

        import numpy as np

        from xlamaml.trainables.feature_cache import FeatureTable, extract_features, run_from_features, with_feature_ids

        folder = tempfile.mkdtemp(prefix="xlamaml-bench-")
        table = FeatureTable(model.config.hidden_size)
        for lang, enc in dev.items():
            np.save(f"{folder}/{lang}.npy", extract_features(model, enc, layers, dtype="float16", device=device))
            dev[lang] = with_feature_ids(enc, table.add(np.load(f"{folder}/{lang}.npy", mmap_mode="r")))
        run_from_features(model, table, layers)
    sampler = build_sampler(cfg, dev)
    episodes = [sampler.next() for _ in range(reps + 2)]
    batches = [(collate_mixed(dev, e.support, device), collate_mixed(dev, e.query, device)) for e in episodes]
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    if kind == "eval":
        eval_batch = collate_mixed(dev, [("hi", r) for r in range(64)], device)
        eval_batch = {k: v for k, v in eval_batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}

        def step(support: Any, query: Any) -> None:
            with torch.no_grad(), autocast(amp, device):
                model.eval()
                model(**eval_batch)
    elif kind in PEERS:
        step = peer_step(kind, model, loss_fn, inner_lr=1e-5)
    elif kind == "finetune":
        # The meta step's outer optimizer (fused AdamW), so that the ratios to this step are the meta step's own cost.
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5, fused=True)

        def step(support: Any, query: Any) -> None:
            loss_fn(model, None, support).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
    else:
        order, _, lever = kind.partition("/")
        learner = MetaLearner(model, loss_fn, inner_lr=1e-5, inner_steps=1, first_order=order == "first-order",
                              outer_lr=1e-5, weight_decay=0.01, total_steps=10**6, **LEVERS.get(lever, {}))

        def step(support: Any, query: Any) -> None:
            learner.step([(support, query)])

    model.train()
    times = []
    for i, (support, query) in enumerate(batches):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        step(support, query)
        if device == "cuda":
            torch.cuda.synchronize()
        if i >= 2:  # the first two steps allocate optimizer state and warm up kernels
            times.append(time.perf_counter() - t0)
    if device == "cuda":
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        # ru_maxrss is in KiB on Linux: the growth over the loaded model is what the step costs.
        peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_rss) / 1024
    out = {"seconds": statistics.median(times), "peak_mb": peak_mb,
           "params": sum(p.numel() for p in model.parameters()), "trainable": trainable}
    if profile_rows:  # one more step under torch.profiler: where its time goes, op by op
        from torch.profiler import ProfilerActivity, profile

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
        with profile(activities=activities) as prof:
            step(*batches[-1])
        sort = "self_cuda_time_total" if device == "cuda" else "self_cpu_time_total"
        out["profile"] = prof.key_averages().table(sort_by=sort, row_limit=profile_rows, max_name_column_width=44)
    return out


def _resize_tables(model: Any, vocab_size: int, max_position_embeddings: int) -> None:
    """Give a tiny-path BERT `vocab_size` word-embedding rows and `max_position_embeddings` position rows (random,
    seeded); return None."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model.resize_token_embeddings(vocab_size, mean_resizing=False)
        embeddings = model.base_model.embeddings
        old = embeddings.position_embeddings
        table = torch.nn.Embedding(max_position_embeddings, old.embedding_dim)
        model._init_weights(table)
        table.weight.data[: old.num_embeddings] = old.weight.data
        embeddings.position_embeddings = table
        embeddings.position_ids = torch.arange(max_position_embeddings).expand((1, -1))  # buffers sized by the table
        embeddings.token_type_ids = torch.zeros_like(embeddings.position_ids)
        model.config.max_position_embeddings = max_position_embeddings


def _child(queue: mp.Queue, *args) -> None:
    try:
        queue.put(measure(*args))
    except Exception as e:  # reported in the table rather than killing the other measurements
        queue.put({"error": f"{type(e).__name__}: {e}"})


def main() -> None:
    """Print the table of step times, ratios to fine-tuning and peak memory; return None."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--emulated-reps", type=int, default=1,
                        help="steps timed for bf16 where the hardware only emulates it (20x slower on such CPUs)")
    parser.add_argument("--task", default="xnli", choices=["xnli", "mlqa"])
    parser.add_argument("--max-length", type=int, default=None, help="default: 128 (xnli), 384 (mlqa)")
    parser.add_argument("--freeze-embeddings", action="store_true")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--precision", nargs="+", default=["fp32"], choices=["fp32", "bf16", "auto"],
                        help="forward passes in fp32 and/or bf16 (torch.autocast); each gets its own rows")
    parser.add_argument("--layers", nargs="+", type=int, default=[0],
                        help="frozen bottom layers read from the feature cache (0: none); each gets its own rows")
    parser.add_argument("--peers", action="store_true",
                        help="also the second-order step of higher and TorchOpt, and ours before the speed levers")
    parser.add_argument("--profile", type=int, default=0, metavar="ROWS",
                        help="after each row, the top ROWS ops of one more step by self time (torch.profiler)")
    parser.add_argument("--levers", action="store_true",
                        help="also our first- and second-order steps with each speed lever off, and with both")
    parser.add_argument("--kinds", nargs="+", default=None, choices=list(KINDS) + list(PEERS) + list(LEVER_KINDS),
                        help="only these steps (default: every step; peers with --peers)")
    parser.add_argument("--smoke-test", action="store_true", help="tiny model, 2 reps")
    args = parser.parse_args()
    if args.smoke_test:
        args.models, args.reps = ["tiny"], 2
    if args.max_length is None:
        args.max_length = 384 if args.task == "mlqa" else 128

    ctx = mp.get_context("spawn")
    print(f"{args.task}: K = N = 8, max_length {args.max_length}, device {args.device}, "
          f"embeddings {'frozen' if args.freeze_embeddings else 'trained'}, median of {args.reps} steps")
    print(f"{'model':<9} {'params':>8} {'trainable':>9} {'precision':<9} {'L':>2} {'step':<30} {'s/step':>8} "
          f"{'x finetune':>10} {'speed-up':>8} {'peak MB':>8}")
    print("(x finetune: against the fine-tuning step of the same row group; speed-up: against fp32, L = 0, ours)")
    native = _native_bf16(args.device)
    if "bf16" in args.precision and not native:
        print(f"bf16 is emulated on this {args.device}: its rows time {args.emulated_reps} step(s) after 2 warm-ups")
    for key in args.models:
        reference: dict[str, float] = {}  # fp32, L = 0 seconds per kind
        for precision in args.precision:
            for layers in args.layers:
                kinds = list(KINDS)
                if args.peers and precision == "fp32" and layers == 0:
                    kinds += [k for k in PEERS if k != "second-order/torchopt" or _imports("torchopt")]
                if (args.levers or args.peers) and precision == "fp32" and layers == 0:
                    # --peers: the step before the levers too (the first-order goal is stated against it)
                    kinds += [k for k in LEVER_KINDS if args.levers or k.endswith("/as-before")]
                if args.kinds:
                    kinds = [k for k in kinds if k in args.kinds or k == "finetune"]  # finetune: the ratios' base
                base = None
                for kind in kinds:
                    queue = ctx.Queue()
                    reps = args.reps if precision == "fp32" or native else args.emulated_reps
                    proc = ctx.Process(target=_child, args=(queue, key, kind, reps, args.max_length,
                                                            args.freeze_embeddings, args.device, args.threads,
                                                            args.task, precision, layers, args.profile))
                    proc.start()
                    res = queue.get()
                    proc.join()
                    if "error" in res:
                        print(f"{key:<9} {'':>8} {'':>9} {precision:<9} {layers:>2} {kind:<30} failed: {res['error']}")
                        continue
                    base = res["seconds"] if kind == "finetune" else base
                    if precision == "fp32" and layers == 0:
                        reference[kind] = res["seconds"]
                    ours = kind.split("/")[0]  # a peer's step is compared with our step of the same kind
                    ratio = f"{res['seconds'] / base:10.2f}" if base and kind != "eval" else f"{'-':>10}"
                    speedup = f"{reference[ours] / res['seconds']:7.2f}x" if ours in reference else f"{'-':>8}"
                    print(f"{key:<9} {res['params'] / 1e6:7.2f}M {res['trainable'] / 1e6:8.2f}M {precision:<9} "
                          f"{layers:>2} {kind:<30} {res['seconds']:8.3f} {ratio} {speedup} {res['peak_mb']:8.0f}",
                          flush=True)
                    if "profile" in res:
                        print(res["profile"], flush=True)
        for line in summary(reference):
            print(f"{key}: {line}")


def summary(seconds: dict[str, float]) -> list[str]:
    """Return the ratios the speed goals are stated in, from the fp32, L = 0 seconds per step kind measured."""
    lines = []

    def ratio(slow: str, fast: str) -> str | None:
        return f"{seconds[slow] / seconds[fast]:.2f}x" if slow in seconds and fast in seconds else None

    peers = [f"{ratio(p, 'second-order')} faster than {p.split('/')[1]}" for p in PEERS if ratio(p, "second-order")]
    if peers:
        lines.append("second order, ours " + ", ".join(peers) + " (goals: 1.5x higher, faster than TorchOpt)")
    both = [f"{order} {ratio(f'{order}/as-before', order)}" for order in ("first-order", "second-order")
            if ratio(f"{order}/as-before", order)]
    if both:
        lines.append("ours faster than before the levers: " + ", ".join(both) + " (goal: first order 1.2x)")
    for order in ("first-order", "second-order"):
        before = f"{order}/as-before"
        levers = {"row-sparse embeddings": f"{order}/loop-adamw", "fused AdamW": f"{order}/dense-embeddings"}
        parts = [f"{name} {ratio(before, kind)}" for name, kind in levers.items() if ratio(before, kind)]
        if parts:
            lines.append(f"{order}, each lever alone over the step before: " + ", ".join(parts))
    return lines


def _native_bf16(device: str) -> bool:
    """Return True when `device` runs bf16 natively (asked in a child process: the parent keeps no torch state)."""
    ctx = mp.get_context("spawn")
    with ctx.Pool(1) as pool:
        return pool.apply(_native_bf16_here, (device,))


def _native_bf16_here(device: str) -> bool:
    import torch

    from xlamaml.trainables.precision import native_bf16

    return native_bf16(torch.device(device))


def _imports(module: str) -> bool:
    """Return True when `module` can be imported here (an optional peer library)."""
    import importlib.util

    return importlib.util.find_spec(module) is not None


if __name__ == "__main__":
    main()
