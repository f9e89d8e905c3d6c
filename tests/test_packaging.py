"""The one installed name: every package folder of the repository is installed under `xlamaml`."""

import tomllib

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
