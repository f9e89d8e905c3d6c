"""The example notebook runs, offline, top to bottom (about a minute): the Python API a researcher starts from."""

import nbformat
from nbclient import NotebookClient

from xlamaml.trainables.paths import REPO_ROOT


def test_the_quickstart_notebook_runs_and_shows_the_table(tmp_path, cache):
    nb = nbformat.read(REPO_ROOT / "examples" / "quickstart.ipynb", as_version=4)
    # The kernel inherits this process's environment: the fixture's fresh cache, the data folder.
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    text = "".join(out.get("text", "") + str(out.get("data", {}).get("text/plain", ""))
                   for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", []))
    assert "plan: smoke" in text and "| baseline |" in text and "table.md" in text
    assert not [out for cell in nb.cells for out in cell.get("outputs", []) if out.get("output_type") == "error"]


def test_the_cluster_example_is_a_valid_ray_cluster_config():
    import yaml
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((REPO_ROOT / "examples" / "cluster-aws.yaml").read_text(encoding="utf-8"))
    validate_config(prepare_config(config))  # Ray's own schema, defaults filled as `ray up` does: raises on a typo
    setup = " ".join(config["setup_commands"])
    assert "torch==2.13.0" in setup and "xlamaml" in setup
    assert "s3://" in (REPO_ROOT / "examples" / "cluster-aws.yaml").read_text(encoding="utf-8")
