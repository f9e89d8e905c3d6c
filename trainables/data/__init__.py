"""Data readers: XNLI dev/test per language and the English-stage NLI training data."""

from trainables.data.english import load_english_nli
from trainables.data.errors import DataError
from trainables.data.xnli import LABELS, load_xnli, xnli_langs_available

__all__ = ["DataError", "LABELS", "load_english_nli", "load_xnli", "xnli_langs_available"]
