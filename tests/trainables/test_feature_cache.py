"""The frozen-layer feature cache: a cached run equals the uncached one (fp32 cache), in evaluation, in meta steps
(first and second order), through `xlamaml run` and for both tasks; float16 storage; bad files. Tiny models, one
torch thread, the shared data."""

import json

import numpy as np
import pytest
import torch

from xlamaml.cli import PRESETS
from xlamaml.trainables.config import load_config
from xlamaml.trainables.data_source import SetKey, TokenizingSource, needed_sets
from xlamaml.trainables.english_stage import english_stage
from xlamaml.trainables.feature_cache import (FeatureCacheError, bottom_key, cached_layers, ensure_local_features,
                                      extract_features, feature_file, source_sets)
from xlamaml.trainables.models import frozen_bottom
from xlamaml.trainables.stages import advance_meta, read_features, run, score_test, setup_torch, start_meta
from xlamaml.trainables.tasks.registry import get_task

pytestmark = pytest.mark.usefixtures("one_thread")
CPU = torch.device("cpu")
# Two layers of four frozen; dropout on, so the frozen bottom's eval mode is what makes both paths equal.
FROZEN = ["model.tiny.num_layers=4", "meta.freeze_embeddings=true", "meta.freeze_layers=2",
          "meta.feature_dtype=float32"]


def smoke(preset: str = "smoke", *overrides: str):
    """Return a smoke preset's run config with `key=value` overrides."""
    return load_config(PRESETS / f"{preset}.yaml", list(overrides))


@pytest.fixture
def base(cache):
    """The smoke English stage of the 4-layer tiny model."""
    cfg = smoke("smoke", *FROZEN)
    setup_torch(cfg)
    return english_stage(cfg, get_task(cfg.task))


def load(cfg, base, cached: bool):
    """Return (task, model, source) of `cfg` from `base`, reading the feature cache when `cached`."""
    setup_torch(cfg)
    task = get_task(cfg.task)
    model, tok = task.load_model(cfg.model, str(base), cfg.seed)
    source = TokenizingSource(cfg, task, tok)
    if cached:
        folder = local_features(cfg, task, model, source)
        source = read_features(cfg, model, source, folder)
    return task, model, source


def local_features(cfg, task, model, source):
    """Return the node-cache folder holding the features of every set `cfg` needs."""
    return ensure_local_features(model, source_sets(source, needed_sets(cfg, task)), layers=cfg.meta.freeze_layers,
                                 dtype=cfg.meta.feature_dtype, batch_size=cfg.eval.batch_size, device=CPU)


def logits_of(model, task, source, key):
    """Return the logits of the whole set `key` (eval mode)."""
    enc = source.get(key)
    model.eval()
    with torch.no_grad():
        batch = task.collate(enc, range(len(enc)), CPU)
        batch.pop("labels")
        return model(**batch).logits


def test_the_cache_is_used_only_where_every_training_stage_freezes_its_layers():
    assert cached_layers(smoke("smoke", *FROZEN)) == 2
    assert cached_layers(smoke("smoke")) is None  # nothing frozen
    assert cached_layers(smoke("smoke", *FROZEN, "meta.feature_cache=false")) is None
    assert cached_layers(smoke("smoke", *FROZEN, "meta.freeze_embeddings=false")) is None
    assert cached_layers(smoke("smoke", *FROZEN, "few_shot.enabled=true")) is None  # few-shot would train layer 0
    assert cached_layers(smoke("smoke", *FROZEN, "few_shot.enabled=true", "few_shot.freeze_embeddings=true",
                               "few_shot.freeze_layers=2")) == 2


def test_cached_evaluation_equals_the_full_model(base):
    cfg = smoke("smoke", *FROZEN)
    task, full, plain = load(cfg, base, cached=False)
    _, top, cached = load(cfg, base, cached=True)
    key = SetKey("test", "hi", cfg.eval.max_examples)
    a, b = logits_of(full, task, plain, key), logits_of(top, task, cached, key)
    assert a.shape == b.shape and torch.allclose(a, b, atol=1e-4)
    assert torch.equal(a.argmax(-1), b.argmax(-1))
    # The model reading the cache has no embeddings or bottom layers left.
    assert sum(p.numel() for p in top.parameters()) < sum(p.numel() for p in full.parameters())


@pytest.mark.parametrize("first_order", [True, False])
def test_cached_meta_steps_equal_uncached_ones(base, first_order):
    cfg = smoke("smoke", *FROZEN, f"meta.first_order={str(first_order).lower()}")
    task = get_task(cfg.task)
    weights, test = [], []
    for cached in (False, True):
        _, model, source = load(cfg, base, cached)
        state = start_meta(cfg, task, model, source)
        advance_meta(cfg, task, state, count=cfg.meta.total_steps, device=CPU)
        weights.append({n: p.detach().clone() for n, p in state.learner.params.items()})
        test.append(score_test(cfg, task, model, source=source, device=CPU, pred_dir=None))
    assert weights[0].keys() == weights[1].keys()
    for name in weights[0]:
        assert torch.allclose(weights[0][name], weights[1][name], atol=1e-5), name
    assert test[0] == test[1]  # identical predictions, so identical accuracies


def test_frozen_bottom_runs_without_dropout(base):
    cfg = smoke("smoke", *FROZEN)
    task, model, source = load(cfg, base, cached=False)
    start_meta(cfg, task, model, source)
    assert frozen_bottom(model) == 2
    from xlamaml.trainables.models import train_mode
    train_mode(model)
    assert not model.base_model.embeddings.training and not model.base_model.encoder.layer[1].training
    assert model.base_model.encoder.layer[2].training and model.training


def test_float16_cache_is_half_the_size_and_close(base):
    cfg32 = smoke("smoke", *FROZEN)
    cfg16 = smoke("smoke", *FROZEN[:-1])
    assert cfg16.meta.feature_dtype == "float16"
    task, model, source = load(cfg32, base, cached=False)
    enc = source.get(SetKey("test", "en", cfg32.eval.max_examples))
    f32 = extract_features(model, enc, 2, dtype="float32")
    f16 = extract_features(model, enc, 2, dtype="float16")
    assert f16.nbytes * 2 == f32.nbytes and f32.shape[0] == sum(len(r) for r in enc.input_ids)
    assert np.abs(f16.astype(np.float32) - f32).max() < 1e-2
    _, full, plain = load(cfg32, base, cached=False)
    _, top, cached = load(cfg16, base, cached=True)
    key = SetKey("test", "en", cfg32.eval.max_examples)
    a, b = logits_of(full, task, plain, key), logits_of(top, task, cached, key)
    assert (a - b).abs().max() < 1e-2


def test_a_feature_file_of_another_set_is_refused(base):
    cfg = smoke("smoke", *FROZEN)
    task, model, source = load(cfg, base, cached=False)
    folder = local_features(cfg, task, model, source)
    assert folder.name == bottom_key(model, 2, "float32")
    key = SetKey("test", "hi", cfg.eval.max_examples)
    np.save(feature_file(folder, source.get(key)), np.zeros((3, model.config.hidden_size), dtype=np.float16))
    _, model, source = load(cfg, base, cached=False)
    cached = read_features(cfg, model, source, folder)
    with pytest.raises(FeatureCacheError, match=r"features.npy: holds 3 token rows; expected \d+ for set test-hi-"):
        cached.get(key)


def test_run_builds_the_cache_once_and_gives_the_uncached_numbers(base, tmp_path):
    cfg = smoke("smoke", *FROZEN, f"base_checkpoint={base}")
    cached = run(cfg, tmp_path / "cached")
    (folder,) = list((base.parent.parent / "features").iterdir())
    files = sorted(p.name for p in folder.iterdir())
    assert files and all(name.endswith(".features.npy") for name in files)
    again = run(cfg, tmp_path / "again")  # reads the cache built above
    uncached = run(smoke("smoke", *FROZEN, f"base_checkpoint={base}", "meta.feature_cache=false"), tmp_path / "plain")
    for key in uncached:
        if key.startswith("test/"):
            assert cached[key] == again[key] == uncached[key], key
    assert sorted(p.name for p in folder.iterdir()) == files
    assert json.loads((tmp_path / "cached" / "metrics.json").read_text())["test/avg/acc"] == cached["test/avg/acc"]


def test_qa_runs_from_the_cache(cache, tmp_path):
    frozen = ["model.tiny.num_layers=4", "meta.freeze_embeddings=true", "meta.freeze_layers=2",
              "meta.feature_dtype=float32"]
    cfg = smoke("smoke-qa", *frozen)
    setup_torch(cfg)
    base = english_stage(cfg, get_task(cfg.task))
    out = {}
    for cache_on in ("true", "false"):
        c = smoke("smoke-qa", *frozen, f"base_checkpoint={base}", f"meta.feature_cache={cache_on}")
        out[cache_on] = run(c, tmp_path / cache_on)
    for key in out["false"]:
        if key.startswith("test/"):
            assert out["true"][key] == pytest.approx(out["false"][key], abs=1e-9), key


def test_english_stage_on_the_cache_equals_the_uncached_stage_and_saves_the_whole_model(cache):
    frozen = [*FROZEN, "english.freeze_embeddings=true", "english.freeze_layers=2"]
    stages = {}
    for on in ("true", "false"):
        cfg = smoke("smoke", *frozen, f"meta.feature_cache={on}")
        setup_torch(cfg)
        stages[on] = english_stage(cfg, get_task(cfg.task))
    assert stages["true"] != stages["false"]  # the cached stage has its own key
    metrics = {on: json.loads((path / "metrics.json").read_text()) for on, path in stages.items()}
    for key in ("dev/en/acc", "test/en/acc"):
        assert metrics["true"][key] == metrics["false"][key]
    cfg = smoke("smoke", *frozen)
    task = get_task(cfg.task)
    cached, _ = task.load_model(cfg.model, str(stages["true"]), cfg.seed)
    plain, _ = task.load_model(cfg.model, str(stages["false"]), cfg.seed)
    pretrained, _ = task.load_model(cfg.model, None, cfg.seed)
    for (name, a), (_, b), (_, c) in zip(cached.state_dict().items(), plain.state_dict().items(),
                                         pretrained.state_dict().items()):
        assert torch.allclose(a, b, atol=1e-5), name
        if ".embeddings." in name or ".layer.0." in name or ".layer.1." in name:
            assert torch.equal(a, c), name  # the frozen bottom is the pretrained one


def test_a_run_gives_the_same_numbers_whether_it_trained_the_english_stage_or_found_it(cache, tmp_path):
    cfg = smoke("smoke", *FROZEN)
    trained = run(cfg, tmp_path / "first")  # trains the English stage, then meta-trains
    found = run(cfg, tmp_path / "second")  # finds it cached
    same = [k for k in trained if not k.endswith("seconds")]
    assert "meta/query_loss" in same  # the meta stage's losses see every random number its dropout draws
    assert {k: trained[k] for k in same} == {k: found[k] for k in same}
