"""Loading only the layers a trial runs: those above the feature cache, and the head.

A trial on the frozen-layer feature cache reads the output of the embeddings and the bottom L layers from the cache,
so loading them (the word embeddings alone are 96M of the embedded model's 118M parameters) only costs memory and
time. Here the model is built on the meta device (no memory), its embeddings and bottom layers are replaced by
`NotLoaded` placeholders, and only the remaining weights are read from the checkpoint's safetensors files. The
weights are the checkpoint's own, so the trial computes exactly what it computed from the whole model (tested).

Anything this cannot do exactly as `from_pretrained` would (a weight missing from the files, which from_pretrained
would initialise; a weight stored in another dtype; a buffer that is not saved) makes it return None, and the caller
loads the whole model instead.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

SINGLE, INDEX = "model.safetensors", "model.safetensors.index.json"


class NotLoaded(torch.nn.Module):
    """Stands in for a module whose weights were not loaded (its output comes from the feature cache)."""

    def __init__(self, what: str):
        super().__init__()
        self.what = what

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        raise RuntimeError(f"{self.what} was not loaded: this model runs from the feature cache only")


def weight_files(folder: Path) -> dict[str, Path] | None:
    """Return {weight name: safetensors file} of a save_pretrained folder, or None when it has no safetensors."""
    if (folder / INDEX).is_file():
        weight_map = json.loads((folder / INDEX).read_text())["weight_map"]
        return {name: folder / file for name, file in weight_map.items()}
    if (folder / SINGLE).is_file():
        with safe_open(str(folder / SINGLE), framework="pt") as f:
            return dict.fromkeys(f.keys(), folder / SINGLE)
    return None


def drop_bottom(model: torch.nn.Module, layers: int) -> None:
    """Replace `model`'s embeddings and bottom `layers` encoder layers by NotLoaded placeholders; return None."""
    model.base_model.embeddings = NotLoaded("the embeddings")
    stack = model.base_model.encoder.layer  # models.encoder_layers (which imports this module: no cycle)
    for i in range(layers):
        stack[i] = NotLoaded(f"encoder layer {i}")


def load_top(auto_cls: Any, folder: str | Path, layers: int, **config_kwargs: Any) -> torch.nn.Module | None:
    """Return the model saved in `folder` with only the layers above `layers` and the head loaded (in eval mode, as
    from_pretrained returns it), or None when that cannot be done exactly (the caller then loads it whole)."""
    from transformers import AutoConfig

    folder = Path(folder)
    files = weight_files(folder)
    if files is None:
        return None
    config = AutoConfig.from_pretrained(folder, **config_kwargs)
    with torch.device("meta"):
        model = auto_cls.from_config(config)
    drop_bottom(model, layers)
    state = model.state_dict()
    buffers = dict(model.named_buffers())
    if any(name not in state for name in buffers) or any(name not in files for name in state):
        return None  # a buffer the files do not hold, or a weight from_pretrained would have initialised
    model.to_empty(device="cpu")
    by_file: dict[Path, list[str]] = {}
    for name in state:
        by_file.setdefault(files[name], []).append(name)
    targets = model.state_dict()  # the materialised tensors, in place
    with torch.no_grad():
        for path, names in by_file.items():
            with safe_open(str(path), framework="pt") as f:
                for name in names:
                    value = f.get_tensor(name)  # reads this tensor's bytes only
                    if value.dtype != targets[name].dtype or value.shape != targets[name].shape:
                        return None
                    targets[name].copy_(value)
    model.eval()
    return model
