"""The committed executed notebooks and their HTML pages show every figure they draw, inline."""

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXECUTED = sorted(p for p in (ROOT / "results").glob("*/**/*.ipynb") if p.with_suffix(".html").exists())


def figure_cells(nb: dict) -> list[dict]:
    return [c for c in nb["cells"] if c["cell_type"] == "code" and "figures.show(" in "".join(c["source"])]


def test_there_are_executed_notebooks_to_check():
    assert len(EXECUTED) >= 10


@pytest.mark.parametrize("path", EXECUTED, ids=lambda p: str(p.relative_to(ROOT / "results")))
def test_every_figure_is_inline_in_the_notebook_and_its_html(path):
    nb = json.loads(path.read_text())
    cells = figure_cells(nb)
    absent = 0  # a figure cell shows its figure, or says why there is none here (figures.absent)
    for c in cells:
        datas = [o.get("data", {}) for o in c.get("outputs", [])]
        drawn = any("image/png" in d for d in datas)
        said = any("".join(d.get("text/markdown", "")).startswith("*No figure here:") for d in datas)
        assert drawn or (said and "figures.absent(" in "".join(c["source"])), "".join(c["source"])
        absent += not drawn
    html = path.with_suffix(".html").read_text()
    assert html.count("<img") >= len(cells) - absent
    assert "TqdmWarning" not in html and "/root/" not in html and "/work/" not in html  # no path of the rendering machine


def test_stage_notebooks_draw_figures():
    drawn = {p.stem for p in EXECUTED if figure_cells(json.loads(p.read_text()))}
    assert {"calibration", "area_sweep", "preset_sweep", "depth", "width", "moe", "protocol_study"} <= drawn
