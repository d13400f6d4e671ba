"""Every notebook in demos/ executes top to bottom without an error."""
import pathlib

import nbformat
import pytest
from nbclient import NotebookClient

DEMOS = sorted((pathlib.Path(__file__).parent.parent / "demos").glob("*.ipynb"))


def test_the_tour_exists_and_lists_every_lab():
    names = [p.name for p in DEMOS]
    assert "00_tour.ipynb" in names
    tour = (DEMOS[0].parent / "00_tour.ipynb").read_text()
    for name in names[1:]:
        assert name in tour, f"the tour does not mention {name}"
    assert "sidebar" in tour and "left sidebar" in tour, "the tour must say how to open the sidebar"


def test_the_tour_leaves_its_cluster_panel_live():
    book = nbformat.read(DEMOS[0].parent / "00_tour.ipynb", as_version=4)
    code = [cell.source.strip() for cell in book.cells if cell.cell_type == "code"]
    panel = code.index("%cluster")
    assert not any(source.startswith("%cluster stop") for source in code[panel:]), \
        "Run All would leave the panel saying the cluster is stopped"


def test_the_readme_binds_the_cluster_it_starts():
    readme = (DEMOS[0].parent.parent / "README.md").read_text()
    assert "| `cluster = %cluster start [N]" in readme, "the table's start line must leave a `cluster` to use"


@pytest.mark.timeout(600)
@pytest.mark.parametrize("path", DEMOS, ids=[p.stem for p in DEMOS])
def test_demo_executes(path, tmp_path):
    book = nbformat.read(path, as_version=4)
    NotebookClient(book, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for cell in book.cells if cell.cell_type == "code" for o in cell.outputs if o.output_type == "error"]
    assert not errors
