"""Multiple-comparison corrections of p-values across the cells of one figure or table: Holm, Benjamini-Hochberg."""

from __future__ import annotations

import numpy as np

from xlamaml.trainables.errors import InputError

CORRECTIONS: dict[str, str] = {
    "holm": "Holm (family-wise error)",
    "bh": "Benjamini-Hochberg (false discovery rate)",
}


def check_correction(name: str) -> str:
    """Return `name` when it is a known correction, else raise a one-line InputError listing them."""
    if name not in CORRECTIONS:
        raise InputError(f"correction {name!r}: expected one of {', '.join(CORRECTIONS)}")
    return name


def adjust(p_values: np.ndarray, method: str = "holm") -> np.ndarray:
    """Return the adjusted p-values (same shape; NaN stays NaN and is not counted in the family)."""
    check_correction(method)
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    m = int(ok.sum())
    if m == 0:
        return out
    order = np.argsort(p[ok], kind="stable")
    ranked = p[ok][order]
    if method == "holm":
        # Step-down: the i-th smallest (0-based) is multiplied by m - i, then made monotone from the left.
        adjusted = np.maximum.accumulate(ranked * (m - np.arange(m)))
    else:
        # Step-up: the i-th smallest times m / (i + 1), made monotone from the right.
        adjusted = np.minimum.accumulate((ranked * m / np.arange(1, m + 1))[::-1])[::-1]
    back = np.empty(m)
    back[order] = np.minimum(adjusted, 1.0)
    out[ok] = back
    return out
