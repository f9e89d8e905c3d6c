"""How well a map's cells can be ranked before anything runs: each prior ranker of xlamaml.search.predictive.prior,
and the map model fitted to the other targets, judged leave-one-target-out on the recorded maps.

    python benchmarks/prior_rank.py                  # every map in benchmarks/maps/
    python benchmarks/prior_rank.py --smoke-test     # the smallest map: seconds

Per target: the truth is the map's full-budget test gains over every seed and item (cells judged on the target). A
ranker scores the target's cells without its outcomes: random (the mean over 2,000 orders), "always English" (a cell
whose auxiliary language is English first), the URIEL+ composite distance, the encoder's similarity
(benchmarks/maps/encoder_similarity.csv), the mean of each cell over the other targets (a map measured before), and
the map model (xlamaml.search.predictive.map_model) fitted to every other target's dev outcomes with the URIEL+
distances as covariates. It prints NDCG@3 and top-pick regret (points), the mean over targets.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # the map model's small matrices: BLAS threads only contend

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.map_model_check import observe, run_shared_var  # noqa: E402
from benchmarks.recorded_map import MAPS, RecordedMap, add_map_arguments, chosen_maps, read_map  # noqa: E402
from xlamaml.search.predictive.encoder_similarity import read_similarity  # noqa: E402
from xlamaml.search.predictive.map_model import Design, fit  # noqa: E402
from xlamaml.search.predictive.prior import (english_scores, ndcg_at, other_target_scores,  # noqa: E402
                                             similarity_scores, top_regret, uriel_scores)
from xlamaml.search.predictive.side_info import cell_distances  # noqa: E402

SIMILARITY = MAPS / "encoder_similarity.csv"


def model_scores(m: RecordedMap) -> np.ndarray:
    """Return (targets, cells): per target, the map model's posterior mean fitted to the other targets' dev outcomes
    (every cell and seed) with URIEL+ distances as covariates."""
    design = Design.build(m.dev_langs, m.cells, cell_distances(m.dev_langs, m.cells))
    obs, shared, runs = observe(m, list(range(len(m.cells))), list(range(len(m.seeds))), run_shared_var(m))
    out = np.full(m.judged.shape, np.nan)
    for ti, t in enumerate(m.dev_langs):
        post = fit(design, [o for o in obs if o.target != t], judged=m.judged, offset_var=shared, run_var=runs)
        out[ti] = post.mean[ti]
    return out


def rank_table(m: RecordedMap, name: str) -> str:
    """Return the markdown table of every ranker's NDCG@3 and top-pick regret on one map, leave-one-target-out."""
    truth, judged = m.test_gains, m.judged
    targets, cells = m.dev_langs, m.cells
    rankers: dict[str, np.ndarray | None] = {
        "always English": english_scores(targets, cells),
        "URIEL+ composite": uriel_scores(targets, cells),
        "encoder similarity": (similarity_scores(targets, cells, read_similarity(SIMILARITY))
                               if SIMILARITY.exists() else None),
        "mean over the other targets": other_target_scores(
            {(t, c): truth[i, j] for i, t in enumerate(targets) for j, c in enumerate(cells) if judged[i, j]},
            targets, cells),
        "map model on the other targets (dev)": model_scores(m),
    }
    rng = np.random.default_rng(0)
    lines = [f"## {name}: {len(cells)} cells, {len(targets)} targets, leave-one-target-out", "",
             "| ranker | NDCG@3 | top-pick regret (points) |", "|---|---|---|"]
    rand_n, rand_r = [], []
    for t in range(len(targets)):
        g = truth[t, judged[t]]
        draws = [rng.permutation(len(g)).astype(float) for _ in range(2000)]
        rand_n.append(np.mean([ndcg_at(g, d) for d in draws]))
        rand_r.append(np.mean([top_regret(g, d) for d in draws]))
    lines.append(f"| random | {np.mean(rand_n):.2f} | {np.mean(rand_r):.2f} |")
    for label, scores in rankers.items():
        if scores is None:
            lines.append(f"| {label} | n/a ({SIMILARITY.name} missing: benchmarks/encoder_similarity.py) | |")
            continue
        if label == "always English" and not np.nanmax(scores) > 0:
            lines.append(f"| {label} | n/a (no cell of this map has English as its auxiliary language) | |")
            continue
        n = [ndcg_at(truth[t, judged[t]], scores[t, judged[t]]) for t in range(len(targets))]
        r = [top_regret(truth[t, judged[t]], scores[t, judged[t]]) for t in range(len(targets))]
        lines.append(f"| {label} | {np.mean(n):.2f} | {np.mean(r):.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Print each recorded map's prior-ranking table; return None."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_map_arguments(p)
    args = p.parse_args(argv)
    for path in chosen_maps(args.map, args.smoke_test):
        print(rank_table(read_map(path), path.stem) + "\n", flush=True)


if __name__ == "__main__":
    main()
