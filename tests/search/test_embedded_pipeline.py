"""The real pipeline on the embedded model (slow: minutes on a 2-core CPU; CI deselects it)."""

import json

import pytest

from xlamaml.cli import main

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("config,metric", [("demo", "acc"), ("demo-qa", "f1")])
def test_embedded_model_english_stage_meta_stage_and_evaluation(tmp_path, monkeypatch, config, metric):
    monkeypatch.setenv("XLAMAML_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    small = ["english.max_examples=64", "english.epochs=1", "english.dev_max_examples=16",
             "meta.steps_per_query_lang=2", "eval.max_examples=16", "eval.target_langs=[en,de,hi]"]
    args = [a for s in small for a in ("--set", s)]
    assert main(["-q", "run", "--config", config, *args, "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["meta/steps"] == 2
    for lang in ("en", "de", "hi"):
        assert f"test/{lang}/{metric}" in metrics
