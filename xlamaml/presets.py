"""The presets (`search/presets/*.yaml`): a name or a path resolved to its file, each one's summary for `xlamaml
presets`, and the installed version. No Ray or torch: `xlamaml --help` and a bad preset name answer at once."""

from __future__ import annotations

import difflib
from pathlib import Path

import xlamaml.search
from xlamaml.trainables.errors import MissingFileError

PRESETS = Path(xlamaml.search.__file__).resolve().parent / "presets"  # the package alone: no Ray imported


def preset_path(name_or_path: str) -> Path:
    """Return the YAML file for a preset name or a path; raise MissingFileError naming both tried."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    preset = PRESETS / f"{name_or_path}.yaml"
    if preset.is_file():
        return preset
    names = sorted(p.stem for p in PRESETS.glob("*.yaml"))
    close = difflib.get_close_matches(name_or_path, names, n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    raise MissingFileError(f"{name_or_path}: no such config file, nor a preset ({hint}presets: {', '.join(names)}; "
                           f"`xlamaml presets` describes them)")


def package_version() -> str:
    """Return the installed xlamaml's version ('unknown' when it runs from a tree that was never installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("xlamaml")
    except PackageNotFoundError:
        return "unknown"


def preset_summaries() -> list[tuple[str, str]]:
    """Return (name, the start of its header comment, at most 100 characters) of every preset."""
    out = []
    for path in sorted(PRESETS.glob("*.yaml")):
        header = []
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.startswith("#") or not line.lstrip("# ").strip():
                break  # the header's first paragraph only
            header.append(line.lstrip("# ").strip())
        text = " ".join(header).removeprefix(f"{path.stem}:").strip()
        out.append((path.stem, text if len(text) <= 100 else text[:97].rsplit(" ", 1)[0] + " ..."))
    return out
