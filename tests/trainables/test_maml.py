"""Meta-gradients from torch.func against an independent reference (higher.innerloop_ctx)."""

import higher
import pytest
import torch
import torch.nn.functional as F

from xlamaml.trainables.config import ModelConfig, TinyModelConfig
from xlamaml.trainables.maml import MetaLearner, attention_context, meta_gradients
from xlamaml.trainables.models import build_tiny_model
from xlamaml.trainables.tasks.nli import collate, encode_nli, loss_fn

PAIRS = [
    ("A man is playing a guitar.", "Someone makes music.", 0),
    ("Der Hund schläft.", "Ein Tier ruht.", 0),
    ("Il pleut à Paris.", "Le soleil brille.", 2),
    ("यह एक किताब है।", "यह एक कलम है।", 2),
    ("Children are at school.", "It is a weekday.", 1),
    ("El tren llega tarde.", "El tren es nuevo.", 1),
    ("猫在桌子上。", "有一只动物。", 0),
    ("Она читает книгу.", "Она спит.", 2),
]


def tiny(seed=0, attn="sdpa"):
    cfg = ModelConfig(name="tiny", max_length=64, tiny=TinyModelConfig(hidden_size=32, num_layers=2, num_heads=2,
                                                                       intermediate_size=48))
    model, tok = build_tiny_model(cfg, num_labels=3, seed=seed)
    model.config.hidden_dropout_prob = model.config.attention_probs_dropout_prob = 0.0
    for m in model.modules():  # dropout off: both implementations must see the same function
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    model.set_attn_implementation(attn)
    return model, tok


def batches(tok):
    from datasets import Dataset

    ds = Dataset.from_dict({"uid": [str(i) for i in range(len(PAIRS))], "lang": ["xx"] * len(PAIRS),
                            "premise": [p for p, _, _ in PAIRS], "hypothesis": [h for _, h, _ in PAIRS],
                            "label": [y for _, _, y in PAIRS]})
    enc = encode_nli(ds, tok, 64)
    return collate(enc, [0, 1, 2, 3]), collate(enc, [4, 5, 6, 7])


def higher_reference(model, support, query, inner_lr, inner_steps, first_order):
    """Meta-gradients computed by higher (the reference the paper's code used)."""
    model.zero_grad(set_to_none=True)
    inner_opt = torch.optim.SGD(model.parameters(), lr=inner_lr)
    detach = (lambda gs: [None if g is None else g.detach() for g in gs]) if first_order else None
    inputs = lambda b: {k: v for k, v in b.items() if k != "labels"}
    with attention_context(not first_order):
        with higher.innerloop_ctx(model, inner_opt, copy_initial_weights=False) as (fmodel, diffopt):
            for _ in range(inner_steps):
                loss = F.cross_entropy(fmodel(**inputs(support)).logits, support["labels"])
                diffopt.step(loss, grad_callback=detach)
            F.cross_entropy(fmodel(**inputs(query)).logits, query["labels"]).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("first_order", [True, False])
@pytest.mark.parametrize("inner_steps", [1, 2])
def test_meta_gradients_match_higher(first_order, inner_steps):
    model, tok = tiny()
    support, query = batches(tok)
    params = {n: p for n, p in model.named_parameters()}
    ours = meta_gradients(model, params, support, query, loss_fn, inner_lr=0.5, inner_steps=inner_steps,
                          first_order=first_order).grads
    ref = higher_reference(model, support, query, 0.5, inner_steps, first_order)
    assert ours.keys() == ref.keys()
    for n in ours:
        torch.testing.assert_close(ours[n], ref[n], atol=1e-6, rtol=0, msg=n)


def test_first_and_second_order_differ():
    model, tok = tiny()
    support, query = batches(tok)
    params = {n: p for n, p in model.named_parameters()}
    fo = meta_gradients(model, params, support, query, loss_fn, 0.5, 1, first_order=True).grads
    so = meta_gradients(model, params, support, query, loss_fn, 0.5, 1, first_order=False).grads
    diff = max((fo[n] - so[n]).abs().max().item() for n in fo)
    assert diff > 1e-4


def test_eager_and_math_sdpa_give_the_same_second_order_gradients():
    grads = []
    for attn in ("sdpa", "eager"):
        model, tok = tiny(attn=attn)
        support, query = batches(tok)
        params = {n: p for n, p in model.named_parameters()}
        grads.append(meta_gradients(model, params, support, query, loss_fn, 0.5, 2, first_order=False).grads)
    for n in grads[0]:
        torch.testing.assert_close(grads[0][n], grads[1][n], atol=1e-6, rtol=0, msg=n)


def test_frozen_parameters_are_not_fast_weights_and_do_not_move():
    model, tok = tiny()
    support, query = batches(tok)
    model.bert.embeddings.word_embeddings.weight.requires_grad_(False)
    before = model.bert.embeddings.word_embeddings.weight.clone()
    learner = MetaLearner(model, loss_fn, inner_lr=0.1, inner_steps=1, first_order=True, outer_lr=1e-2,
                          weight_decay=0.01, total_steps=3)
    assert "bert.embeddings.word_embeddings.weight" not in learner.params
    w0 = model.classifier.weight.clone()
    out = learner.step([(support, query)])
    assert out["query_loss"] > 0 and learner.scheduler.get_last_lr()[0] < 1e-2
    assert torch.equal(model.bert.embeddings.word_embeddings.weight, before)
    assert not torch.equal(model.classifier.weight, w0)


def test_meta_training_lowers_the_query_loss():
    torch.manual_seed(0)
    model, tok = tiny()
    support, query = batches(tok)
    learner = MetaLearner(model, loss_fn, inner_lr=0.1, inner_steps=1, first_order=False, outer_lr=3e-3,
                          weight_decay=0.0, total_steps=30)
    losses = [learner.step([(support, query)])["query_loss"] for _ in range(30)]
    assert losses[-1] < 0.7 * losses[0]
