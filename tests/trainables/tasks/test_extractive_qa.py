"""Extractive QA: windows and their labels (byte tokenizer and the embedded model's tokenizer), span
post-processing on hand-made logits, loss, a few training steps, predictions."""

from __future__ import annotations

import datasets
import numpy as np
import pytest
import torch

from xlamaml.trainables.config import ModelConfig
from xlamaml.trainables.data.mlqa import load_mlqa
from xlamaml.trainables.models import build_byte_tokenizer
from xlamaml.trainables.tasks.extractive_qa import (
    OUTSIDE,
    QAEncoded,
    build_tiny_qa_model,
    collate_qa,
    encode_qa,
    postprocess,
    predict_qa,
    qa_loss_fn,
)

LANGS = ["en", "zh", "hi", "ar"]
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def mlqa_dev(data_dir) -> dict[str, datasets.Dataset]:
    return load_mlqa("auto", "dev", LANGS, data_dir)


@pytest.fixture(scope="session")
def e5_tokenizer():
    """The embedded model's XLM-R tokenizer (fast, with offsets); converted once and cached (~10 s the first time)."""
    from transformers import AutoTokenizer

    from xlamaml.trainables.embedded import prepare_embedded_model

    return AutoTokenizer.from_pretrained(str(prepare_embedded_model()))


def qa_rows(uid: str, context: str, question: str, answer: str, lang: str = "en") -> dict:
    start = context.index(answer)
    return {"uid": uid, "lang": lang, "article": uid, "title": "", "context": context, "question": question,
            "answers": {"text": [answer], "answer_start": [start]}}


def small_dataset(*rows: dict) -> datasets.Dataset:
    return datasets.Dataset.from_list(list(rows))


def labelled_span(enc: QAEncoded, w: int) -> tuple[int, int]:
    """Return the context characters [a, b) that window w's start/end labels cover."""
    return enc.span(w, enc.start_positions[w])[0], enc.span(w, enc.end_positions[w])[1]


def context_tokens(enc: QAEncoded, w: int) -> list[int]:
    return [i for i in range(len(enc.offsets[w])) if enc.span(w, i) is not None]


# --- windows and labels -------------------------------------------------------------------------------------


def test_byte_tokenizer_windows_recover_answers_exactly(mlqa_dev) -> None:
    # The byte tokenizer's offsets are character offsets (every byte of a multi-byte character carries that
    # character's span), so every character boundary is a token boundary and answers come back exactly.
    tok = build_byte_tokenizer()
    for lang in LANGS:
        ds = mlqa_dev[lang].select(range(150))
        enc = encode_qa(ds, tok, max_length=384, doc_stride=128, max_query_length=64)
        assert enc.num_examples == 150 and len(enc) > 150  # long contexts give several windows
        assert enc.token_type_ids is not None
        for ex, windows in enumerate(enc.example_windows):
            assert all(enc.example_index[w] == ex for w in windows)
            gold = enc.answers[ex][0]
            labelled = [w for w in windows if enc.start_positions[w] > 0]
            if not labelled:
                # Only an answer longer than the overlap can miss every window (any span of at most
                # doc_stride + 1 tokens lies inside one).
                assert len(gold.encode("utf-8")) > 128, (lang, gold)
                continue
            for w in labelled:
                a, b = labelled_span(enc, w)
                assert enc.contexts[ex][a:b] == gold
                assert enc.end_positions[w] >= enc.start_positions[w]


def test_real_tokenizer_windows_recover_answers(mlqa_dev, e5_tokenizer) -> None:
    for lang in LANGS:
        ds = mlqa_dev[lang].select(range(250))
        enc = encode_qa(ds, e5_tokenizer, max_length=384, doc_stride=128, max_query_length=64)
        assert enc.token_type_ids is None  # XLM-R style: no token types
        exact = 0
        for ex, windows in enumerate(enc.example_windows):
            gold = enc.answers[ex][0]
            s = ds[ex]["answers"]["answer_start"][0]
            e = s + len(gold)
            labelled = [w for w in windows if enc.start_positions[w] > 0]
            assert labelled, (lang, gold)
            a, b = labelled_span(enc, labelled[0])
            # Offsets are trimmed of the "▁" space, so the span is exact whenever the answer's edges are token
            # edges; a subword that crosses an edge (Arabic clitics, "2008," , Chinese words) gives a superset.
            assert a <= s and b >= e
            spans = [enc.span(labelled[0], i) for i in context_tokens(enc, labelled[0])]
            if any(o[0] == s for o in spans) and any(o[1] == e for o in spans):
                assert enc.contexts[ex][a:b] == gold
            exact += enc.contexts[ex][a:b] == gold
            for prev, nxt in zip(windows, windows[1:]):  # consecutive windows overlap by doc_stride tokens
                assert enc.input_ids[prev][context_tokens(enc, prev)[-128]:-1] == \
                    enc.input_ids[nxt][context_tokens(enc, nxt)[0]:context_tokens(enc, nxt)[0] + 128]
        assert exact >= 0.9 * len(ds), (lang, exact)  # measured: en 95%, zh 95%, hi 99.8%, ar 94%


def test_long_context_windows_stride_and_labels() -> None:
    tok = build_byte_tokenizer()
    words = [f"w{i:02d}" for i in range(60)]
    context = " ".join(words) + " the answer is Ada Lovelace."
    ds = small_dataset(qa_rows("x", context, "Who?", "Ada Lovelace"))
    enc = encode_qa(ds, tok, max_length=64, doc_stride=16, max_query_length=64)
    windows = enc.example_windows[0]
    budget = 64 - 3 - len("Who?")  # [CLS] q [SEP] context [SEP]
    assert len(windows) == len(enc) >= 5
    pieces = []
    for k, w in enumerate(windows):
        ctx = context_tokens(enc, w)
        assert enc.input_ids[w][: ctx[0]] == tok("Who?")["input_ids"]  # [CLS] question [SEP] first
        if k < len(windows) - 1:
            assert len(ctx) == budget
            nxt = windows[k + 1]
            # exactly doc_stride context tokens are shared with the next window
            assert [enc.span(w, i) for i in ctx[-16:]] == [enc.span(nxt, i) for i in context_tokens(enc, nxt)[:16]]
        pieces.append([enc.input_ids[w][i] for i in (ctx if k == 0 else ctx[16:])])
    assert sum(pieces, []) == tok(context, add_special_tokens=False)["input_ids"]  # the windows cover it all
    assert enc.span(windows[0], context_tokens(enc, windows[0])[0])[0] == 0
    assert enc.span(windows[-1], context_tokens(enc, windows[-1])[-1])[1] == len(context)
    # The answer sits at the end: only windows that hold all of it are labelled, the others point at CLS.
    s = context.index("Ada")
    for w in windows:
        ctx = context_tokens(enc, w)
        inside = enc.offsets[w][ctx[0]][0] <= s and enc.offsets[w][ctx[-1]][1] >= s + len("Ada Lovelace")
        if inside:
            assert context[slice(*labelled_span(enc, w))] == "Ada Lovelace"
        else:
            assert enc.start_positions[w] == enc.end_positions[w] == 0
    assert enc.start_positions[windows[0]] == 0 and enc.start_positions[windows[-1]] > 0


def test_question_is_cut_and_impossible_settings_fail() -> None:
    tok = build_byte_tokenizer()
    question = "Why " * 50
    ds = small_dataset(qa_rows("q", "Because of the rain, the game was cancelled.", question, "the rain"))
    enc = encode_qa(ds, tok, max_length=64, doc_stride=8, max_query_length=10)
    for w in range(len(enc)):
        assert context_tokens(enc, w)[0] == 1 + 10 + 1  # [CLS], ten question tokens, [SEP]
    assert any(enc.contexts[0][slice(*labelled_span(enc, w))] == "the rain" for w in range(len(enc))
               if enc.start_positions[w] > 0)
    with pytest.raises(ValueError, match="doc_stride 50"):
        encode_qa(ds, tok, max_length=64, doc_stride=50, max_query_length=20)


def test_select_examples_keeps_all_windows() -> None:
    tok = build_byte_tokenizer()
    ds = small_dataset(qa_rows("a", "one two three four five six seven eight nine ten", "n?", "nine"),
                       qa_rows("b", "short context here", "s?", "here"))
    enc = encode_qa(ds, tok, max_length=24, doc_stride=4, max_query_length=8)
    sub = enc.select_examples([1, 0])
    assert sub.uids == ["b", "a"] and len(sub) == len(enc)
    assert sub.example_windows[0] == list(range(len(enc.example_windows[1])))
    assert [sub.input_ids[w] for w in sub.example_windows[1]] == [enc.input_ids[w] for w in enc.example_windows[0]]
    assert sub.example_index.tolist() == [0] * len(enc.example_windows[1]) + [1] * len(enc.example_windows[0])


# --- post-processing on hand-made logits --------------------------------------------------------------------

Q = None  # a question or special token: no context span


def hand_made() -> QAEncoded:
    """Two examples: 'Ada Lovelace wrote the first program' in two windows, and 'Not here' in one."""
    c0 = "Ada Lovelace wrote the first program"
    w0 = [Q, Q, Q, Q, (0, 3), (4, 12), (13, 18), Q]  # [CLS] q q [SEP] Ada Lovelace wrote [SEP]
    w1 = [Q, Q, Q, Q, (13, 18), (19, 22), (23, 28), (29, 36), Q]  # ... wrote the first program [SEP]
    w2 = [Q, Q, Q, Q, (0, 3), (4, 8), Q]
    offsets = [np.array([(OUTSIDE, OUTSIDE) if o is None else o for o in w], dtype=np.int32) for w in (w0, w1, w2)]
    n = [len(o) for o in offsets]
    return QAEncoded(
        lang="en", uids=["e0", "e1"], contexts=[c0, "Not here"], answers=[["Ada Lovelace"], ["?"]],
        input_ids=[[1] * k for k in n], token_type_ids=None, offsets=offsets,
        example_index=np.array([0, 0, 1]), start_positions=np.zeros(3, dtype=np.int64),
        end_positions=np.zeros(3, dtype=np.int64), example_windows=[[0, 1], [2]], pad_id=0)


def logits(n: int, **high: float) -> np.ndarray:
    """Return n small logits with the given positions (p<index>=value) raised."""
    out = np.zeros(n)
    for key, value in high.items():
        out[int(key[1:])] = value
    return out


def test_postprocess_best_valid_span_and_skips_invalid() -> None:
    enc = hand_made()
    low = [np.zeros(8), np.full(9, -5.0), np.zeros(7)]
    # The best start and end are in the question (1, 2): skipped; then end before start (start 6, end 5 or 4):
    # skipped; the best valid pair is Ada..Lovelace (4, 5), before Ada..Ada (4, 4).
    start = [logits(8, p1=9, p6=8, p4=7), low[1], low[2]]
    end = [logits(8, p2=9, p5=8, p4=6), low[1], low[2]]
    assert postprocess(enc, start, end)["e0"] == "Ada Lovelace"
    # Too long: Ada..wrote (4, 6) scores best but is 3 tokens; with max_answer_length 2 Lovelace..wrote wins.
    start = [logits(8, p4=9, p5=8), low[1], low[2]]
    end = [logits(8, p6=9, p5=1), low[1], low[2]]
    assert postprocess(enc, start, end)["e0"] == "Ada Lovelace wrote"
    assert postprocess(enc, start, end, max_answer_length=2)["e0"] == "Lovelace wrote"


def test_postprocess_best_across_windows_and_empty_answers() -> None:
    enc = hand_made()
    start = [logits(8, p4=3), logits(9, p6=5), logits(7, p1=9)]
    end = [logits(8, p5=3), logits(9, p7=5), logits(7, p2=9)]
    out = postprocess(enc, start, end, n_best=1)
    assert out["e0"] == "first program"  # window 1's span beats window 0's
    assert out["e1"] == ""  # its only candidates (n_best=1) are in the question: no valid span
    assert postprocess(enc, start, end, n_best=20)["e1"] in ("Not", "here", "Not here")
    # A padded (windows, T) array works too: positions past a window's end are ignored, however high.
    padded_s = np.full((3, 12), 50.0)
    padded_e = np.full((3, 12), 50.0)
    for w in range(3):
        padded_s[w, : len(start[w])] = start[w]
        padded_e[w, : len(end[w])] = end[w]
    assert postprocess(enc, padded_s, padded_e, n_best=1) == out


# --- model, loss, training, predictions ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(mlqa_dev):
    cfg = ModelConfig(name="tiny", max_length=96)
    model, tok = build_tiny_qa_model(cfg, seed=0)
    enc = encode_qa(mlqa_dev["en"].select(range(12)), tok, max_length=96, doc_stride=24, max_query_length=24)
    return model, tok, enc


def test_tiny_model_and_functional_loss_equals_forward(tiny) -> None:
    model, tok, enc = tiny
    assert type(model).__name__ == "BertForQuestionAnswering" and len(tok) == 261
    model.eval()  # no dropout: the three losses see the same network
    rows = [0, 3, 5, 8]
    batch = collate_qa(enc, rows)
    longest = max(len(enc.input_ids[r]) for r in rows)
    assert batch["input_ids"].shape == batch["token_type_ids"].shape == (4, longest)
    assert batch["start_positions"].tolist() == enc.start_positions[rows].tolist()
    plain = qa_loss_fn(model, None, batch)
    params = dict(model.named_parameters())
    functional = qa_loss_fn(model, params, batch)
    assert torch.allclose(plain, functional, atol=1e-6, rtol=0)
    assert torch.allclose(plain, model(**batch).loss, atol=1e-6, rtol=0)  # HF's own (start + end) / 2
    grads = torch.autograd.grad(functional, list(params.values()), allow_unused=True)
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


def test_a_few_steps_lower_the_loss(mlqa_dev) -> None:
    cfg = ModelConfig(name="tiny", max_length=96)
    model, tok = build_tiny_qa_model(cfg, seed=1)
    enc = encode_qa(mlqa_dev["en"].select(range(12)), tok, max_length=96, doc_stride=24, max_query_length=24)
    labelled = [w for w in range(len(enc)) if enc.start_positions[w] > 0][:6]
    batch = collate_qa(enc, labelled + [0, 1])
    model.eval()
    with torch.no_grad():
        before = qa_loss_fn(model, None, batch).item()
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(12):
        opt.zero_grad()
        qa_loss_fn(model, None, batch).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        after = qa_loss_fn(model, None, batch).item()
    assert after < 0.8 * before, (before, after)


def test_predict_qa_keeps_examples_whatever_the_batching(tiny) -> None:
    model, _, enc = tiny
    model.train()
    a = predict_qa(model, enc, batch_size=5, device="cpu")
    assert model.training  # the mode is restored
    assert list(a) == enc.uids
    for ex, uid in enumerate(enc.uids):
        assert a[uid] in enc.contexts[ex]
    b = {}
    for ex in range(enc.num_examples):
        b.update(predict_qa(model, enc.select_examples([ex]), batch_size=1, device="cpu"))
    assert a == b


def test_real_tokenizer_offsets_are_trimmed_of_spaces(e5_tokenizer) -> None:
    context = "  Hello   world,  中文 in 2008, x.\n"
    rows = [qa_rows(str(i), context, "Which?", answer) for i, answer in enumerate(["world", "中文", "in", "Hello"])]
    enc = encode_qa(small_dataset(*rows), e5_tokenizer, max_length=64, doc_stride=8, max_query_length=16)
    assert len(enc) == 4  # one window each
    for w, row in enumerate(rows):
        assert context[slice(*labelled_span(enc, w))] == row["answers"]["text"][0]
        for i in context_tokens(enc, w):  # no span starts or ends with whitespace
            a, b = enc.span(w, i)
            assert a == b or not (context[a].isspace() or context[b - 1].isspace())
