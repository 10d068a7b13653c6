"""Every tutorial notebook runs top to bottom without an error.

Each notebook is executed in a fresh kernel with nbclient; a cell that raises
fails the test and the message shows the cell's source and the error.
"""
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT = 300  # seconds for any single cell


def test_there_are_notebooks():
    assert NOTEBOOKS, "notebooks/ holds no .ipynb files"


@pytest.fixture(scope="module")
def fresh_cache(tmp_path_factory):
    """One empty tutorial cache for all notebooks.

    The first notebook that needs the trained toy model trains it (as on a new
    machine), the others reuse it.
    """
    return tmp_path_factory.mktemp("npformer-cache")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path, fresh_cache, monkeypatch):
    monkeypatch.setenv("NPFORMER_CACHE", str(fresh_cache))  # inherited by the kernel
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as err:
        pytest.fail(f"{path.name}: a cell failed\n{str(err)[:3000]}")
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors, f"{path.name}: {errors[0].get('ename')}: {errors[0].get('evalue')}"
