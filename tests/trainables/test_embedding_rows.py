"""Row-sparse word-embedding fast weights: the dense path's gradients, the padding row kept fixed."""

import pytest
import torch

from xlamaml.trainables.embedding_rows import EmbeddingRows, episode_rows, find_embedding_rows, restrict
from xlamaml.trainables.maml import meta_gradients
from xlamaml.trainables.tasks.nli import loss_fn

from tests.trainables.test_maml import batches, tiny


@pytest.mark.parametrize("first_order", [True, False])
@pytest.mark.parametrize("inner_steps", [1, 2])
def test_sparse_rows_give_the_dense_paths_gradients(first_order, inner_steps):
    model, tok = tiny()
    support, query = batches(tok)
    params = {n: p for n, p in model.named_parameters()}
    args = (model, params, support, query, loss_fn, 0.5, inner_steps, first_order)
    sparse = meta_gradients(*args, sparse_embeddings=True)
    dense = meta_gradients(*args, sparse_embeddings=False)
    assert sparse.support_loss == dense.support_loss and sparse.query_loss == dense.query_loss
    for n in dense.grads:
        torch.testing.assert_close(sparse.grads[n], dense.grads[n], atol=1e-7, rtol=1e-6, msg=n)
    emb = "bert.embeddings.word_embeddings.weight"
    used = torch.unique(torch.cat([support["input_ids"].reshape(-1), query["input_ids"].reshape(-1)]))
    unused = torch.ones(params[emb].shape[0], dtype=torch.bool)
    unused[used] = False
    assert unused.any() and sparse.grads[emb][unused].abs().max() == 0  # rows no batch uses get no gradient
    assert sparse.grads[emb][used].abs().sum() > 0


def test_only_a_trainable_input_embedding_is_restricted():
    model, _ = tiny()
    params = {n: p for n, p in model.named_parameters()}
    spec = find_embedding_rows(model, params)
    assert spec == EmbeddingRows("bert.embeddings.word_embeddings.weight", model.config.pad_token_id)
    frozen = {n: p for n, p in params.items() if n != spec.name}
    assert find_embedding_rows(model, frozen) is None


@pytest.mark.parametrize("padding_idx", [None, 0, 1, 5])
def test_the_padding_row_keeps_its_index_and_no_token_takes_it(padding_idx):
    spec = EmbeddingRows("w", padding_idx)
    batch = {"input_ids": torch.tensor([[9, 3, 9], [7, 3, 1]])}
    rows = episode_rows(spec, [batch], vocab_size=12)
    assert len(set(rows.tolist())) == len(rows)
    assert {3, 7, 9} <= set(rows.tolist())
    if padding_idx is not None:
        assert rows[padding_idx] == padding_idx
    params = {"w": torch.arange(12.0).reshape(12, 1)}
    small, (renumbered,) = restrict(params, spec, [batch])
    # Looking the renumbered ids up in the small table reads the same rows as the ids in the full one.
    assert torch.equal(small["w"][renumbered["input_ids"]], params["w"][batch["input_ids"]])
    if padding_idx is not None:
        assert ((renumbered["input_ids"] == padding_idx) == (batch["input_ids"] == padding_idx)).all()


def test_embeddings_tied_to_an_output_layer_stay_dense():
    from transformers import BertConfig, BertForMaskedLM

    model = BertForMaskedLM(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                       intermediate_size=32, tie_word_embeddings=True))
    params = {n: p for n, p in model.named_parameters()}
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    assert find_embedding_rows(model, params) is None
