"""The one installed name: every package folder of the repository is installed under `xlamaml`."""

import fnmatch
import tomllib
from pathlib import Path

import yaml

from xlamaml.trainables.paths import REPO_ROOT


def test_every_package_folder_is_installed_under_xlamaml():
    tool = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    folders = {dotted: REPO_ROOT / folder for dotted, folder in tool["package-dir"].items()}
    found = set()
    for dotted, root in folders.items():
        for init in root.rglob("__init__.py"):
            parts = init.parent.relative_to(root).parts
            found.add(".".join((dotted, *parts)))
    assert found == set(tool["packages"]), "pyproject's packages must list every package folder, and only those"
    assert all(name == "xlamaml" or name.startswith("xlamaml.") for name in found)



def test_every_data_file_inside_a_package_is_declared_as_package_data():
    # An editable install reads data files from the tree; a wheel carries only the package-data patterns.
    tool = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    roots = tool["package-dir"]
    missing = []
    for dotted in tool["packages"]:
        key = max((d for d in roots if dotted == d or dotted.startswith(d + ".")), key=len)
        folder = REPO_ROOT / roots[key] / Path(*dotted[len(key):].strip(".").split(".") if dotted != key else ())
        patterns = tool["package-data"].get(dotted, [])
        for path in folder.iterdir():  # a subfolder with files is a package of its own or matched by a pattern
            for f in ([path] if path.is_file() else [] if (path / "__init__.py").exists() else path.rglob("*")):
                rel = f.relative_to(folder).as_posix()
                if f.is_file() and f.suffix != ".py" and "__pycache__" not in rel and not any(
                        fnmatch.fnmatch(rel, p) for p in patterns):
                    missing.append(f"{dotted}: {rel}")
    assert missing == [], "data files a wheel would leave out (add them to [tool.setuptools.package-data])"


def test_the_license_and_citation_are_there_and_agree_with_the_package():
    root = REPO_ROOT
    assert "MIT License" in (root / "LICENSE").read_text(encoding="utf-8")
    cff = yaml.safe_load((root / "CITATION.cff").read_text(encoding="utf-8"))
    assert cff["cff-version"] == "1.2.0" and cff["license"] == "MIT"
    assert "arXiv:2111.05805" in str(cff["preferred-citation"]["identifiers"])
