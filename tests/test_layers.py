"""The layering is a contract, not a hope: `lint-imports` (import-linter, contracts in pyproject.toml) passes on the
tree, and fails when a forbidden import is added."""

import shutil
import subprocess
import sys
from pathlib import Path

from xlamaml.trainables.paths import REPO_ROOT

PARTS = ("trainables", "experiment", "search", "analysis")


def lint(root: Path) -> subprocess.CompletedProcess:
    """Return `lint-imports` run on the package tree under `root` (the repository's own layout)."""
    script = Path(sys.executable).with_name("lint-imports")
    return subprocess.run([str(script), "--config", str(root / "pyproject.toml")], cwd=root, capture_output=True,
                          text=True, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root)}, timeout=300)


def copy_tree(tmp: Path) -> Path:
    """Return a copy of the package (xlamaml/ with its parts as real folders) and pyproject.toml under `tmp`."""
    root = tmp / "repo"
    shutil.copytree(REPO_ROOT / "xlamaml", root / "xlamaml", symlinks=True,
                    ignore=lambda d, names: [n for n in names if n in PARTS or n == "__pycache__"])
    for part in PARTS:
        shutil.copytree(REPO_ROOT / part, root / "xlamaml" / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO_ROOT / "pyproject.toml", root / "pyproject.toml")
    return root


def test_the_contracts_hold():
    out = lint(REPO_ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Contracts: 3 kept, 0 broken." in out.stdout


def test_the_contracts_fail_on_a_forbidden_import(tmp_path):
    root = copy_tree(tmp_path)
    assert lint(root).returncode == 0  # the copy is the tree as it is
    config = root / "xlamaml" / "trainables" / "config.py"
    config.write_text(config.read_text() + "\nimport ray  # noqa\n")
    picks = root / "xlamaml" / "analysis" / "picks.py"
    picks.write_text(picks.read_text() + "\nfrom xlamaml.search import spec  # noqa\n")
    out = lint(root)
    assert out.returncode != 0
    assert "trainables: one run, torch only, no Ray BROKEN" in out.stdout
    assert "xlamaml.analysis.picks -> xlamaml.search.spec" in out.stdout
