"""The MAML meta step on torch.func: a pure update function and a thin learner around it.

`meta_gradients` adapts the trainable parameters on the support batch with `inner_steps` steps of
SGD (the fast weights), scores the adapted model on the query batch, and differentiates that query
loss back to the initial parameters: through the inner updates for second order, or treating the
inner gradients as constants for first order (FOMAML). `MetaLearner` applies those gradients with
Adam(W) and a linear schedule (paper section 4.2).

Second order differentiates through a gradient, which PyTorch's fused attention kernels cannot do
("derivative for aten::_scaled_dot_product_flash_attention_for_cpu_backward is not implemented"),
so the second-order step runs its support passes under the math SDPA kernel; the query pass, differentiated once,
and first order keep the fused kernels.

When the word embeddings train, an episode's fast weight of them holds only the rows its batches use
(trainables/embedding_rows.py): the same gradients, without copying and differentiating the whole vocabulary.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from xlamaml.trainables.embedding_rows import find_embedding_rows, restrict
from xlamaml.trainables.models import train_mode

Params = dict[str, torch.Tensor]
FUSED_DEVICES = ("cpu", "cuda")  # where torch.optim's fused Adam(W) kernels run
Batch = dict[str, torch.Tensor]
# loss_fn(model, params, batch) -> scalar loss of `model` run with `params` swapped in.
LossFn = Callable[[torch.nn.Module, Mapping[str, torch.Tensor], Batch], torch.Tensor]


@dataclass
class MetaStepResult:
    grads: Params  # d query_loss / d params, one tensor per trainable parameter
    support_loss: float  # before adaptation
    query_loss: float  # after adaptation


def attention_context(second_order: bool) -> contextlib.AbstractContextManager:
    """Return the SDPA kernel context a step needs: the math kernel for second order, else a no-op."""
    return sdpa_kernel(SDPBackend.MATH) if second_order else contextlib.nullcontext()


def adapt(model: torch.nn.Module, params: Params, support: Batch, loss_fn: LossFn, inner_lr: float,
          inner_steps: int, first_order: bool) -> tuple[Params, float]:
    """Return the fast weights after `inner_steps` SGD steps on `support`, and the first support loss."""
    fast = dict(params)
    names = list(fast)
    first_loss = float("nan")
    for step in range(inner_steps):
        loss = loss_fn(model, fast, support)
        if step == 0:
            first_loss = loss.item()
        # create_graph keeps the inner gradient differentiable (second order); first order treats
        # it as a constant, so the query gradient reaches the initial weights through identity.
        grads = torch.autograd.grad(loss, [fast[n] for n in names], create_graph=not first_order)
        fast = {n: fast[n] - inner_lr * g for n, g in zip(names, grads)}
    return fast, first_loss


def meta_gradients(model: torch.nn.Module, params: Params, support: Batch, query: Batch, loss_fn: LossFn,
                   inner_lr: float, inner_steps: int = 1, first_order: bool = False,
                   sparse_embeddings: bool = True) -> MetaStepResult:
    """Return the meta-gradient of the query loss after inner adaptation on the support batch."""
    start = params
    spec = find_embedding_rows(model, params) if sparse_embeddings else None
    if spec is not None and "input_ids" in support and "input_ids" in query:
        # The word-embedding fast weight becomes the episode's rows, gathered from params (so differentiable).
        start, (support, query) = restrict(params, spec, [support, query])
    with attention_context(not first_order):
        fast, support_loss = adapt(model, start, support, loss_fn, inner_lr, inner_steps, first_order)
    # The query pass is differentiated once only (its backward reaches the support pass's graph, which was built
    # under the math kernel), so it keeps the fused kernels.
    query_loss = loss_fn(model, fast, query)
    names = list(params)
    grads = torch.autograd.grad(query_loss, [params[n] for n in names])
    return MetaStepResult(dict(zip(names, grads)), support_loss, query_loss.item())


def linear_schedule(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Return a schedule that warms up linearly for `warmup_steps`, then decays linearly to 0 at `total_steps`."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class MetaLearner:
    """Holds the model's trainable parameters, the outer optimizer and its schedule; one `step` per meta update."""

    def __init__(self, model: torch.nn.Module, loss_fn: LossFn, *, inner_lr: float, inner_steps: int,
                 first_order: bool, outer_lr: float, weight_decay: float, total_steps: int,
                 warmup_steps: int = 0, optimizer: str = "adamw", sparse_embeddings: bool = True,
                 fused: bool = True):
        self.model = model
        self.loss_fn = loss_fn
        self.inner_lr, self.inner_steps, self.first_order = inner_lr, inner_steps, first_order
        self.sparse_embeddings = sparse_embeddings
        # Only parameters that require grad become fast weights; frozen ones stay in the module.
        self.params: Params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        opt_cls = torch.optim.AdamW if optimizer == "adamw" else torch.optim.Adam
        # The fused kernel updates each tensor in one pass; the per-tensor loop allocates a temporary the size of
        # every parameter at each step (the word embeddings: 384 MB), and took a third of a second-order step
        # (benchmarks/meta_step.py --levers). Same update rule; its rounding differs in the last bit.
        fused = fused and all(p.device.type in FUSED_DEVICES for p in self.params.values())
        self.optimizer = opt_cls(self.params.values(), lr=outer_lr, weight_decay=weight_decay, fused=fused or None)
        self.scheduler = linear_schedule(self.optimizer, warmup_steps, total_steps)
        self.steps_done = 0

    def step(self, episodes: Sequence[tuple[Batch, Batch]]) -> dict[str, float]:
        """Run one outer update on the mean meta-gradient of `episodes` and return its losses."""
        train_mode(self.model)
        total: Params = {}
        support_loss = query_loss = 0.0
        for support, query in episodes:
            res = meta_gradients(self.model, self.params, support, query, self.loss_fn,
                                 self.inner_lr, self.inner_steps, self.first_order, self.sparse_embeddings)
            for n, g in res.grads.items():  # in place: autograd.grad returned fresh tensors; one fewer copy of each
                if n in total:
                    total[n].add_(g)
                else:
                    total[n] = g
            support_loss += res.support_loss
            query_loss += res.query_loss
        for n, p in self.params.items():
            p.grad = total[n].div_(len(episodes)) if len(episodes) > 1 else total[n]
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.steps_done += 1
        k = len(episodes)
        return {"support_loss": support_loss / k, "query_loss": query_loss / k,
                "lr": self.scheduler.get_last_lr()[0]}

    def state_dict(self) -> dict:
        """Return the optimizer and schedule state (the model's weights are saved by the caller)."""
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "steps_done": self.steps_done}

    def load_state_dict(self, state: dict) -> None:
        """Restore what `state_dict` returned."""
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.steps_done = state["steps_done"]
