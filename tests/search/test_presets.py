"""Every preset loads, validates and says in its header what it is and how to launch it."""


import pytest

from xlamaml.cli import PRESETS
from xlamaml.search.space import assignments
from xlamaml.search.spec import load_sweep
from xlamaml.trainables.config import load_config

NAMES = sorted(p.stem for p in PRESETS.glob("*.yaml"))


def test_the_presets_the_project_promises_exist():
    assert {"smoke", "demo", "paper-xnli-mbert-fig2", "paper-xnli-mbert-pairs", "paper-xnli-xlmr",
            "tune-xnli", "pairs-adaptive"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_preset_loads_and_documents_itself(name):
    path = PRESETS / f"{name}.yaml"
    header = path.read_text().split("\n")[0]
    assert header.startswith(f"# {name}:")
    assert "Launch:" in path.read_text()
    load_config(path)
    sw = load_sweep(path)
    assert assignments(sw.sweep.assignments)


def test_paper_presets_hold_the_papers_settings():
    cfg = load_config(PRESETS / "paper-xnli-mbert-fig2.yaml")
    m = cfg.meta
    assert (m.k, m.n, m.inner_lr, m.outer_lr, m.weight_decay, m.steps_per_query_lang, m.first_order) == (
        8, 8, 1e-5, 1e-5, 0.01, 500, False)
    sw = load_sweep(PRESETS / "paper-xnli-mbert-fig2.yaml")
    assert sw.sweep.seeds == [1, 2, 3] and len(assignments(sw.sweep.assignments)) == 15
    pairs = load_sweep(PRESETS / "paper-xnli-mbert-pairs.yaml")
    assert len(assignments(pairs.sweep.assignments)) == 226


def test_pairs_adaptive_is_the_paper_pairs_sweep_searched_adaptively():
    grid, adaptive = load_sweep(PRESETS / "paper-xnli-mbert-pairs.yaml"), load_sweep(PRESETS / "pairs-adaptive.yaml")
    assert adaptive.run == grid.run and adaptive.sweep.mode == "adaptive"
    assert adaptive.sweep.assignments == grid.sweep.assignments and adaptive.sweep.seeds == grid.sweep.seeds
