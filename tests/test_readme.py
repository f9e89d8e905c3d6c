"""The Layout page (docs/layout.md, linked from the README) is drawn from the tree as it is: every module listed exists
and none is left out; every page the README links exists."""

import re

from xlamaml.trainables.paths import REPO_ROOT

PACKAGES = ("xlamaml", "trainables", "experiment", "search", "analysis", "benchmarks")


def layout_paths() -> set[str]:
    """Return the paths the Layout block names, rebuilt from its indentation (two spaces a level)."""
    text = (REPO_ROOT / "docs" / "layout.md").read_text(encoding="utf-8")
    block = text.split("# Layout", 1)[1].split("```", 2)[1]
    paths, stack = set(), []
    for line in block.splitlines():
        if not line.strip():
            continue
        depth = (len(line) - len(line.lstrip(" "))) // 2
        names = re.split(r"\s{2,}", line.strip(), maxsplit=1)[0]
        stack = stack[:depth]
        for name in (n.strip() for n in names.split(",")):
            if name.endswith("/"):
                paths.add("/".join(stack + [name.rstrip("/")]))
                last_dir = name.rstrip("/")
            else:
                paths.add("/".join(stack + [name]))
        if names.endswith("/"):
            stack.append(last_dir)
    return paths


def test_layout_lists_every_module_and_only_existing_ones():
    listed = layout_paths()
    modules = {str(p.relative_to(REPO_ROOT)) for pkg in PACKAGES for p in (REPO_ROOT / pkg).rglob("*.py")
               if p.name != "__init__.py"}
    assert modules - listed == set(), "modules missing from docs/layout.md"
    missing = {p for p in listed if not (REPO_ROOT / p).exists()}
    assert missing == set(), "docs/layout.md names paths that do not exist"


def test_every_page_the_readme_links_exists_and_the_readme_has_two_setup_commands():
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    linked = set(re.findall(r"\]\((docs/[^)#]+)\)", text))
    assert linked and all((REPO_ROOT / page).is_file() for page in linked), linked
    quick = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    setup = [line for line in quick.splitlines() if line.startswith("python3 -m venv")]
    assert len(setup) == 2 and setup[0].endswith("xlamaml demo") and "pytest" in setup[1]
