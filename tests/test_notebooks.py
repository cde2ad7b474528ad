"""Every notebook runs top to bottom in small-parameter mode and writes its figures as PNG and PDF."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_notebooks_exist():
    assert len(NOTEBOOKS) >= 1


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_in_small_mode(path, tmp_path, monkeypatch):
    monkeypatch.setenv("BOUNDLAB_SMALL", "1")
    monkeypatch.setenv("BOUNDLAB_FIGURES", str(tmp_path))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    # The kernel imports boundlab from this checkout even where another copy is installed.
    repository = str(path.parent.parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [repository, os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    errors = [output for cell in notebook.cells if cell.cell_type == "code"
              for output in cell.get("outputs", []) if output.get("output_type") == "error"]
    assert not errors, json.dumps(errors, indent=1)[:2000]
    pngs = sorted(p.stem for p in tmp_path.glob("*.png"))
    pdfs = sorted(p.stem for p in tmp_path.glob("*.pdf"))
    assert pngs, f"{path.name} wrote no figure to BOUNDLAB_FIGURES"
    assert pngs == pdfs, f"{path.name}: PNG {pngs} and PDF {pdfs} differ"
    for png in tmp_path.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
