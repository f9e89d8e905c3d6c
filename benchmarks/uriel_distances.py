"""Regenerate search/predictive/uriel_xnli.csv: offline URIEL+ distances (``urielplus`` 1.3.2) between the 15 XNLI
languages, the side information the predictive search's prior and map model read (search/predictive/side_info.py).

    pip install urielplus==1.3.2 && python benchmarks/uriel_distances.py      # about 2.5 minutes on 2 CPU cores

Pipeline (documented URIEL+ API, no optional dependencies, no network, nothing written to disk):

    u = URIELPlus()                                   # released URIEL matrices (ISO 639-3 codes)
    u.integrate_custom_databases("UPDATED_SAPHON", "BDPROTO", "GRAMBANK", "GLOTTOLOG")
                                                      # switches language ids to Glottocodes
    u.aggregate()                                     # union over sources + lineage (parent-language) fill
    u.new_distance(kind, [code_a, code_b])            # angular distance over features both languages have

Imputation (``softimpute_imputation`` / ``knn_imputation`` / ...) needs the ``urielplus[imputation]``
extra (scikit-learn, fancyimpute) and is deliberately skipped. eWAVE and APiCS are skipped as the
URIEL+ README recommends (English-dialect / creole-only data).

``URIELPlus()`` copies the released ``.npz`` files into the installed package's ``database/`` folder
the first time it runs; ``_ReadOnlyURIELPlus`` loads them from ``database/original_uriel`` instead, so
the installed package is never modified (caching stays off, so nothing else is written either).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from urielplus import urielplus as _urielplus_module
from urielplus.urielplus import URIELPlus

XNLI_LANGS: tuple[str, ...] = (
    "ar", "bg", "de", "el", "en", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur", "vi", "zh",
)

# ISO 639-1 -> candidate ISO 639-3 codes, in order of preference. The candidate that the loaded URIEL+
# knows and has the most known typological + script values wins (ties keep this order). After database
# integration URIEL+ uses Glottocodes and drops macrolanguage codes (ara, swa, zho), so arb/swh/cmn win.
ISO3_CANDIDATES: dict[str, tuple[str, ...]] = {
    "ar": ("arb", "ara"), "bg": ("bul",), "de": ("deu",), "el": ("ell",), "en": ("eng",),
    "es": ("spa",), "fr": ("fra",), "hi": ("hin",), "ru": ("rus",), "sw": ("swh", "swa"),
    "th": ("tha",), "tr": ("tur",), "ur": ("urd",), "vi": ("vie",), "zh": ("cmn", "zho"),
}

DISTANCE_KINDS: tuple[str, ...] = (
    "genetic", "geographic", "syntactic", "phonological", "inventory", "featural", "morphological",
    "script",
)

# Every bundled database except eWAVE and APiCS (see module docstring).
DEFAULT_DATABASES: tuple[str, ...] = ("UPDATED_SAPHON", "BDPROTO", "GRAMBANK", "GLOTTOLOG")

OUTPUT_CSV = Path(__file__).resolve().parents[1] / "search" / "predictive" / "uriel_xnli.csv"

_TYPOLOGICAL, _SCRIPT = 1, 3  # indexes of URIEL+'s four matrices: phylogeny, typological, geography, script

log = logging.getLogger(__name__)


class _ReadOnlyURIELPlus(URIELPlus):
    """``URIELPlus`` that reads the released matrices without copying them into site-packages."""

    def __init__(self) -> None:  # mirrors URIELPlus.__init__ minus the copy step
        self.files = ["family_features.npz", "features.npz", "geocoord_features.npz", "script_features.npz"]
        self.cur_dir = os.path.dirname(os.path.abspath(_urielplus_module.__file__))
        self.loaded_features = []
        for file in self.files:
            path = os.path.join(self.cur_dir, "database", "original_uriel", file)
            with np.load(path, allow_pickle=True) as npz:
                self.loaded_features.append(dict(npz))
        self.feats = [m["feats"] for m in self.loaded_features]
        self.langs = [m["langs"] for m in self.loaded_features]
        self.data = [m["data"] for m in self.loaded_features]
        self.sources = [m["sources"] for m in self.loaded_features]
        super(URIELPlus, self).__init__(self.feats, self.langs, self.data, self.sources)
        self.databases = self.imputation = self.querying = self
        self._refresh_indexes()

    def reset(self) -> None:
        """Reload the released matrices (URIELPlus.reset, without the copy)."""
        self.__init__()


@contextlib.contextmanager
def _quiet_urielplus() -> Iterator[None]:
    """Yield with the root logger at WARNING at least: urielplus logs every call at INFO."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        root.setLevel(level)


def load_urielplus(
    databases: Sequence[str] | None = DEFAULT_DATABASES, aggregate: bool = True
) -> URIELPlus:
    """Return URIEL+ loaded in memory; ``databases=None`` keeps the released URIEL data (ISO 639-3 ids)."""
    with _quiet_urielplus():
        u = _ReadOnlyURIELPlus()
        u.set_cache(False)
        if databases:
            u.integrate_custom_databases(*databases)
        if aggregate:
            u.aggregate()
    return u


def _iso3_to_uriel_id(u: URIELPlus) -> dict[str, str]:
    """Return a map from ISO 639-3 codes to the language ids ``u`` currently uses (identity, or Glottocodes)."""
    if u.get_codes() == "Iso":
        return {str(lang): str(lang) for lang in u.langs[0]}
    path = os.path.join(u.cur_dir, "database", "urielplus_csvs", "uriel_glottocode_map.csv")
    table = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
    return dict(zip(table["iso_code"].str.strip(), table["glottocode"].str.strip()))


def _known_values(u: URIELPlus, matrix: int, lang_id: str) -> int:
    """Return how many features of one URIEL+ matrix a language has a value for."""
    rows = np.flatnonzero(u.langs[matrix] == lang_id)
    return 0 if rows.size == 0 else int((u.data[matrix][rows[0]].max(axis=-1) > -1).sum())


def resolve_codes(u: URIELPlus, langs: Sequence[str]) -> dict[str, tuple[str, str]]:
    """Return {iso639_1: (chosen ISO 639-3, URIEL+ id)} for each language."""
    to_id = _iso3_to_uriel_id(u)
    known = set(map(str, u.langs[0]))
    resolved: dict[str, tuple[str, str]] = {}
    for lang in langs:
        options = [(iso3, to_id[iso3]) for iso3 in ISO3_CANDIDATES.get(lang, ()) if to_id.get(iso3) in known]
        if not options:
            raise KeyError(f"no URIEL+ language for {lang!r} (candidates {ISO3_CANDIDATES.get(lang)})")
        resolved[lang] = max(
            options, key=lambda o: _known_values(u, _TYPOLOGICAL, o[1]) + _known_values(u, _SCRIPT, o[1])
        )  # max() keeps the first of equal candidates
    return resolved


def uriel_distances(
    langs: list[str],
    kinds: Sequence[str] = DISTANCE_KINDS,
    u: URIELPlus | None = None,
) -> pd.DataFrame:
    """Return the long table (lang_a, lang_b, kind, distance) over unordered pairs of distinct ISO 639-1 codes.

    A pair whose two languages share no known feature of that kind gets distance NaN; a kind that
    fails for every pair is dropped. Details of both go to the log at WARNING level.
    """
    u = u if u is not None else load_urielplus()
    codes = resolve_codes(u, langs)
    pairs = list(itertools.combinations(sorted(set(langs)), 2))
    rows: list[tuple[str, str, str, float]] = []
    with _quiet_urielplus():
        for kind in kinds:
            kind_rows: list[tuple[str, str, str, float]] = []
            failed: list[str] = []
            first_error = ""
            for a, b in pairs:
                try:
                    value = float(u.new_distance(kind, [codes[a][1], codes[b][1]]))
                except Exception as error:  # ValueError: the pair shares no known feature of this kind
                    failed.append(f"{a}-{b}")
                    first_error = first_error or f"{type(error).__name__}: {str(error).splitlines()[0]}"
                    value = math.nan
                kind_rows.append((a, b, kind, value))
            if failed:
                log.warning("%s: %d/%d pairs failed (%s); first error: %s",
                            kind, len(failed), len(pairs), " ".join(failed), first_error)
            if len(failed) == len(pairs):
                log.warning("%s: dropped, no pair could be computed", kind)
                continue
            rows.extend(kind_rows)
    frame = pd.DataFrame(rows, columns=["lang_a", "lang_b", "kind", "distance"])
    return frame.sort_values(["lang_a", "lang_b", "kind"], ignore_index=True)


def main() -> None:
    """Write OUTPUT_CSV for the XNLI languages and print what it took; return None."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    started = time.perf_counter()
    u = load_urielplus()
    loaded = time.perf_counter()
    print(f"URIEL+ loaded (+{', '.join(DEFAULT_DATABASES)}, aggregate) in {loaded - started:.1f}s; "
          f"ids: {u.get_codes()}")
    for lang, (iso3, lang_id) in resolve_codes(u, XNLI_LANGS).items():
        print(f"  {lang} -> {iso3} ({lang_id})")
    frame = uriel_distances(list(XNLI_LANGS), u=u)
    done = time.perf_counter()
    frame.to_csv(OUTPUT_CSV, index=False, float_format="%.6f")
    counts = frame.groupby("kind")["distance"].agg(["count", "size"])
    print(f"distances in {done - loaded:.1f}s (total {done - started:.1f}s); computed/rows per kind:")
    print(counts.to_string())
    print(f"wrote {len(frame)} rows to {OUTPUT_CSV}")


if __name__ == "__main__":
    main()
