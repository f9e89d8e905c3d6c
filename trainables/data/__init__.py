"""Data readers: XNLI and MLQA per language with a parallel key, and the English-stage data."""

from xlamaml.trainables.data.english import load_english_nli
from xlamaml.trainables.data.errors import DataError
from xlamaml.trainables.data.mlqa import heldout_split, load_mlqa, load_mlqa_pair, load_squad
from xlamaml.trainables.data.xnli import LABELS, load_xnli, xnli_langs_available

__all__ = ["DataError", "LABELS", "heldout_split", "load_english_nli", "load_mlqa", "load_mlqa_pair",
           "load_squad", "load_xnli", "xnli_langs_available"]
