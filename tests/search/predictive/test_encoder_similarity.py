"""The encoder's cross-lingual similarity (search/predictive/encoder_similarity.py): tiny model, no network."""

import itertools
import os

import pytest
import torch

from xlamaml.search.predictive.encoder_similarity import (encoder_similarity, read_parallel, read_similarity,
                                                          sentence_embeddings, write_similarity)
from xlamaml.trainables.config import ModelConfig
from xlamaml.trainables.models import build_tiny_model
from xlamaml.trainables.paths import default_data_dir

pytestmark = pytest.mark.usefixtures("one_thread")

TEXTS = ["The cat sat on the mat.", "It rained all day long in the city.", "She reads a book.",
         "We went home early because we were tired.", "Numbers: 1, 2, 3.", "Quiet."]


@pytest.fixture(scope="module")
def tiny():
    """A tiny fixed-init BERT classifier and its byte tokenizer."""
    return build_tiny_model(ModelConfig(name="tiny"), num_labels=3, seed=0)


def test_symmetric_and_in_range(tiny):
    model, tok = tiny
    texts = {"en": TEXTS, "de": [t.upper() for t in TEXTS], "fr": [t[::-1] for t in TEXTS]}
    sims = encoder_similarity(model, tok, texts, batch_size=4)
    assert set(sims) == set(itertools.permutations(texts, 2))  # every ordered pair of distinct languages, no self
    for (a, b), v in sims.items():
        assert v == sims[b, a]
        assert -1.0 <= v <= 1.0
    assert model.training  # the caller's mode is given back


def test_identical_texts_give_one_and_shuffled_do_not(tiny):
    model, tok = tiny
    shifted = TEXTS[1:] + TEXTS[:1]  # the same sentences, none beside its own "translation"
    sims = encoder_similarity(model, tok, {"a": TEXTS, "b": list(TEXTS), "c": shifted})
    assert sims["a", "b"] == pytest.approx(1.0, abs=1e-6)
    # Uncentred, a random encoder puts every sentence in one narrow cone, so even mismatched pairs score high;
    # centring must remove that, or this pair would pass as close.
    raw = torch.nn.functional.cosine_similarity(sentence_embeddings(model, tok, TEXTS),
                                                sentence_embeddings(model, tok, shifted)).mean()
    assert raw > 0.8
    assert sims["a", "c"] < 0.3


def test_centring_is_per_language(tiny):
    model, tok = tiny
    texts = {"a": TEXTS, "b": [t + " Indeed, it is so." for t in TEXTS]}
    e = {k: sentence_embeddings(model, tok, v) for k, v in texts.items()}
    c = {k: v - v.mean(dim=0) for k, v in e.items()}
    expect = torch.nn.functional.cosine_similarity(c["a"], c["b"]).mean().item()
    assert encoder_similarity(model, tok, texts)["a", "b"] == pytest.approx(expect, abs=1e-5)


def test_padding_does_not_change_an_embedding(tiny):
    model, tok = tiny
    alone = sentence_embeddings(model, tok, ["Quiet."])
    batched = sentence_embeddings(model, tok, ["Quiet.", "A much longer sentence that needs a lot of padding."])
    assert batched.shape == (2, model.config.hidden_size)
    assert torch.allclose(alone[0], batched[0], atol=1e-5)


def test_needs_parallel_texts(tiny):
    model, tok = tiny
    with pytest.raises(ValueError, match="parallel"):
        encoder_similarity(model, tok, {"a": TEXTS, "b": TEXTS[:3]})


def test_csv_round_trip(tmp_path):
    sims = {("en", "de"): 0.5123456789, ("de", "en"): 0.5123456789, ("en", "zh"): -0.25, ("de", "zh"): 1.0}
    path = write_similarity(tmp_path / "sim.csv", sims)
    lines = path.read_text().splitlines()
    assert lines == ["lang_a,lang_b,similarity", "de,en,0.512346", "de,zh,1.000000", "en,zh,-0.250000"]
    back = read_similarity(path)
    assert back == {("de", "en"): 0.512346, ("en", "de"): 0.512346, ("de", "zh"): 1.0, ("zh", "de"): 1.0,
                    ("en", "zh"): -0.25, ("zh", "en"): -0.25}


@pytest.mark.parametrize("bad", ["de,zh,abc", "de,zh", "de,de,0.5", "de,zh,1.5", "de,en,0.1"])
def test_bad_csv_line_is_named(tmp_path, bad):
    path = tmp_path / "sim.csv"
    path.write_text(f"lang_a,lang_b,similarity\nde,en,0.5\n{bad}\n")
    with pytest.raises(ValueError, match=r"sim\.csv: line 3"):
        read_similarity(path)


def test_read_parallel_on_shared_data():
    data_dir = default_data_dir()
    if not os.path.isdir(os.path.join(data_dir, "xnli", "dev")):
        pytest.skip(f"no XNLI data at {data_dir}")
    texts = read_parallel(data_dir, ["en", "de", "zh"], 30)
    assert list(texts) == ["en", "de", "zh"]
    assert [len(v) for v in texts.values()] == [30, 30, 30]
    assert texts["en"][0] == "And he said, Mama, I'm home."
    # XNLI repeats each premise for its 3 hypotheses: the default keeps each once, parallel in every language.
    assert len(set(texts["en"])) == len(set(texts["de"])) == 30
    assert read_parallel(data_dir, ["en"], 3, distinct=False)["en"] == [texts["en"][0]] * 3


def test_read_parallel_missing_file_names_the_path(tmp_path):
    folder = tmp_path / "xnli" / "dev"
    folder.mkdir(parents=True)
    (folder / "en.tsv").write_text("id\tpremise\thypothesis\tlabel\n0\tA premise.\tA hypothesis.\t0\n")
    with pytest.raises(ValueError, match=r"xnli/dev/de\.tsv"):
        read_parallel(tmp_path, ["en", "de"], 1)
