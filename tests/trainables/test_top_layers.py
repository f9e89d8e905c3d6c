"""Loading only the layers above the feature cache: the checkpoint's own weights, the same outputs, else no shortcut."""

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification, BertModel

from xlamaml.trainables.config import ModelConfig, TinyModelConfig
from xlamaml.trainables.feature_cache import FeatureTable, extract_features, run_from_features, with_feature_ids
from xlamaml.trainables.models import build_tiny_model, load_classifier
from xlamaml.trainables.tasks.nli import collate
from xlamaml.trainables.top_layers import NotLoaded, load_top

CFG = ModelConfig(name="tiny", max_length=64, tiny=TinyModelConfig(hidden_size=32, num_layers=3, num_heads=2,
                                                                   intermediate_size=48))


@pytest.fixture
def saved(tmp_path):
    model, tok = build_tiny_model(CFG, num_labels=3, seed=3)
    model.save_pretrained(tmp_path / "base")
    return tmp_path / "base", tok


def logits_from_features(model, layers, full, tok):
    """Return the logits of `model` run from the features `full`'s bottom computes (model changed in place)."""
    from datasets import Dataset
    from xlamaml.trainables.tasks.nli import encode_nli
    from tests.trainables.test_maml import PAIRS

    ds = Dataset.from_dict({"uid": [str(i) for i in range(8)], "lang": ["xx"] * 8, "premise": [p for p, _, _ in PAIRS],
                            "hypothesis": [h for _, h, _ in PAIRS], "label": [y for _, _, y in PAIRS]})
    enc = encode_nli(ds, tok, 64)
    table = FeatureTable(full.config.hidden_size)
    feats = extract_features(full, enc, layers, dtype="float32")
    run_from_features(model, table, layers)
    batch = collate(with_feature_ids(enc, table.add(feats)), list(range(8)))
    batch.pop("labels")
    with torch.no_grad():
        return model(**batch).logits


def test_the_top_holds_the_checkpoints_weights_and_gives_the_same_logits(saved):
    folder, tok = saved
    full, _ = load_classifier(CFG, 3, source=str(folder), tokenizer=False)
    top = load_top(AutoModelForSequenceClassification, folder, 2, num_labels=3)
    assert top is not None and not top.training  # eval mode, as from_pretrained returns it
    assert isinstance(top.base_model.embeddings, NotLoaded)
    assert all(isinstance(top.base_model.encoder.layer[i], NotLoaded) for i in range(2))
    full_state = full.state_dict()
    top_state = top.state_dict()
    assert set(top_state) == {k for k in full_state if ".embeddings." not in k and ".layer.0." not in k
                              and ".layer.1." not in k}
    for name, value in top_state.items():
        assert torch.equal(value, full_state[name]), name
    reference = logits_from_features(load_classifier(CFG, 3, source=str(folder), tokenizer=False)[0], 2, full, tok)
    assert torch.equal(logits_from_features(top, 2, full, tok), reference)


def test_a_placeholder_fails_loudly_when_run(saved):
    top = load_top(AutoModelForSequenceClassification, saved[0], 1, num_labels=3)
    with pytest.raises(RuntimeError, match="the embeddings was not loaded"):
        top(input_ids=torch.ones(1, 4, dtype=torch.long))


def test_a_checkpoint_without_the_head_is_loaded_whole(tmp_path):
    # A bare encoder: from_pretrained initialises the head, which the shortcut must not pretend to have read.
    model, _ = build_tiny_model(CFG, num_labels=3, seed=3)
    BertModel(model.config).save_pretrained(tmp_path / "encoder")
    assert load_top(AutoModelForSequenceClassification, tmp_path / "encoder", 1, num_labels=3) is None
    whole, _ = load_classifier(CFG, 3, source=str(tmp_path / "encoder"), tokenizer=False, skip_bottom=1)
    assert not isinstance(whole.base_model.embeddings, NotLoaded)
    assert not any(np.isnan(p.detach().numpy()).any() for p in whole.parameters())


def test_load_classifier_skips_the_bottom_only_when_asked_and_without_a_tokenizer(saved):
    folder, _ = saved
    skipped, tok = load_classifier(CFG, 3, source=str(folder), tokenizer=False, skip_bottom=2)
    assert tok is None and isinstance(skipped.base_model.embeddings, NotLoaded)
    whole, tok = load_classifier(CFG, 3, source=str(folder), tokenizer=True, skip_bottom=2)
    assert tok is not None and not isinstance(whole.base_model.embeddings, NotLoaded)
