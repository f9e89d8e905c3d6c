"""The stage functions without Ray: encoding, the meta stage in chunks (as a trial runs it) and in one go,
few-shot, test scoring with averages; the tiny model on the shared data, one torch thread."""

import pytest
import torch

from xlamaml.cli import PRESETS
from xlamaml.trainables.config import load_config
from xlamaml.trainables.english_stage import english_stage
from xlamaml.trainables.evaluate import evaluate_sets
from xlamaml.trainables.data_source import TokenizingSource
from xlamaml.trainables.stages import advance_meta, few_shot_and_test, meta_stage, meta_summary, score_test, setup_torch, \
    start_meta
from xlamaml.trainables.tasks.base import Task
from xlamaml.trainables.tasks.registry import TASK_CLASSES, get_task
from xlamaml.trainables.task_specs import TASK_SPECS

pytestmark = pytest.mark.usefixtures("one_thread")


def smoke(*overrides: str):
    """Return the smoke preset's run config with `key=value` overrides."""
    return load_config(PRESETS / "smoke.yaml", list(overrides))


@pytest.fixture
def base(cache):
    """The smoke English stage (tiny model, seconds), built in a fresh cache."""
    cfg = smoke()
    setup_torch(cfg)
    return english_stage(cfg, get_task(cfg.task))


def load(cfg, base):
    """Return (task, model, data source) of `cfg` started from the base checkpoint."""
    setup_torch(cfg)
    task = get_task(cfg.task)
    model, tok = task.load_model(cfg.model, str(base), cfg.seed)
    return task, model, TokenizingSource(cfg, task, tok)


@pytest.mark.parametrize("name", sorted(TASK_SPECS))
def test_every_task_implements_the_interface(name):
    assert set(TASK_CLASSES) == set(TASK_SPECS)  # every task the config accepts has an implementation
    task = get_task(name)
    assert isinstance(task, Task) and task.name == name and task.spec is TASK_SPECS[name]
    assert task.metrics and task.langs and task.prediction_suffix.startswith(".")


def test_source_takes_the_first_rows_of_each_language(base):
    cfg = smoke()
    task, _, source = load(cfg, base)
    sets = source.sets("test", ["en", "hi"], max_examples=10)
    assert set(sets) == {"en", "hi"} and all(len(enc) == 10 for enc in sets.values())
    assert sets["en"].uids == sets["hi"].uids  # XNLI is parallel: every language scores the same pairs


def test_meta_stage_in_chunks_equals_one_go(base):
    """A trial runs the meta stage a report at a time; the weights must equal those of one uninterrupted run."""
    cfg = smoke()
    task, whole, source = load(cfg, base)
    summary = meta_stage(cfg, task, whole, source=source, device=torch.device("cpu"))
    assert summary["meta/steps"] == cfg.meta.total_steps == 4

    _, chunked, source = load(cfg, base)
    state = start_meta(cfg, task, chunked, source)
    while not state.done:
        advance_meta(cfg, task, state, count=3, device=torch.device("cpu"))  # 3 + 1: the last chunk stops at the budget
    assert meta_summary(state)["meta/steps"] == 4 and len(state.query_losses) == 4
    for (name, a), (_, b) in zip(whole.named_parameters(), chunked.named_parameters()):
        assert torch.equal(a, b), name


def test_score_test_scores_every_target_with_both_averages(base):
    cfg = smoke("method=baseline")
    task, model, source = load(cfg, base)
    metrics = score_test(cfg, task, model, source=source, device=torch.device("cpu"), pred_dir=None)
    for lang in cfg.eval.target_langs:
        assert 0.0 <= metrics[f"test/{lang}/acc"] <= 1.0
    mean = sum(metrics[f"test/{lang}/acc"] for lang in cfg.eval.target_langs) / 3
    assert metrics["test/avg/acc"] == pytest.approx(mean)
    assert metrics["test/avg_excl_aux/acc"] == pytest.approx(mean)  # the baseline has no auxiliary language


def test_few_shot_leaves_the_model_as_it_found_it(base):
    cfg = smoke("few_shot.enabled=true", "eval.target_langs=de,hi", "eval.max_examples=16")
    task, model, source = load(cfg, base)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    test = source.sets("test", ["de", "hi"], cfg.eval.max_examples)
    tuned = few_shot_and_test(cfg, task, model, source=source, device=torch.device("cpu"), test=test,
                              pred_dir=None)
    assert set(tuned) == {"test/de/acc", "test/hi/acc"}
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters())
    # Scored as is, the untouched model gives the zero-shot numbers, not the few-shot ones.
    plain = evaluate_sets(task, model, test, "test", cfg, device="cpu")
    assert set(plain) == set(tuned)
