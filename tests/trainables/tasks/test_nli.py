"""NLI encoding (equal to transformers' own truncation), dynamic padding, predictions."""

import numpy as np
import pytest

from xlamaml.trainables.config import ModelConfig
from xlamaml.trainables.data.xnli import load_xnli
from xlamaml.trainables.models import build_byte_tokenizer, build_tiny_model
from xlamaml.trainables.tasks.nli import accuracy, collate, collate_mixed, encode_nli, pair_budget, predict


@pytest.fixture(scope="module")
def hi_dev(data_dir):
    return load_xnli("auto", "dev", ["hi", "en"], data_dir)


@pytest.mark.parametrize("max_length", [24, 64, 200])
def test_encoding_equals_transformers_truncation(hi_dev, max_length):
    tok = build_byte_tokenizer()
    for lang in ("hi", "en"):
        ds = hi_dev[lang].select(range(120))
        ours = encode_nli(ds, tok, max_length)
        ref = tok(list(ds["premise"]), list(ds["hypothesis"]), truncation=True, max_length=max_length)
        assert ours.input_ids == ref["input_ids"]
        assert ours.token_type_ids == ref["token_type_ids"]
        assert max(map(len, ours.input_ids)) <= max_length


@pytest.mark.parametrize("la,lb,budget", [(3, 4, 10), (100, 10, 61), (10, 100, 61), (100, 100, 61), (70, 80, 61)])
def test_pair_budget_fits_and_cuts_the_longer_side_first(la, lb, budget):
    ka, kb = pair_budget(la, lb, budget)
    assert ka + kb == min(la + lb, budget) and ka <= la and kb <= lb
    if la + lb > budget and min(la, lb) <= budget // 2:
        assert min(la, lb) in (ka, kb)  # the shorter side is kept whole


def test_batches_are_padded_to_the_longest_in_the_batch(hi_dev):
    enc = encode_nli(hi_dev["en"].select(range(40)), build_byte_tokenizer(), 1024)
    rows = [0, 5, 9]
    batch = collate(enc, rows)
    longest = max(len(enc.input_ids[r]) for r in rows)
    assert batch["input_ids"].shape == (3, longest) and longest < 1024
    assert batch["attention_mask"].sum(1).tolist() == [len(enc.input_ids[r]) for r in rows]
    assert batch["labels"].tolist() == enc.labels[rows].tolist()
    mixed = collate_mixed({"en": enc}, [("en", 9), ("en", 0)])
    assert mixed["labels"].tolist() == [enc.labels[9], enc.labels[0]]


def test_predict_keeps_row_order_whatever_the_batching(hi_dev):
    model, tok = build_tiny_model(ModelConfig(name="tiny", max_length=64), 3, seed=1)
    enc = encode_nli(hi_dev["hi"].select(range(50)), tok, 64)
    a = predict(model, enc, batch_size=7, device="cpu")
    b = np.array([predict(model, enc.subset([i]), 1, "cpu")[0] for i in range(50)])
    assert (a == b).all()
    assert accuracy(np.array([0, 1, 2]), np.array([0, 1, 1])) == pytest.approx(2 / 3)
