"""Re-execute the golden notebooks of the nbval tests at the test profile.

    python tests/notebooks/regenerate.py

The report notebook reads `results/` here: a committed copy of the summaries
and runs tables the stage notebooks wrote, so that its test does not depend on the order in
which pytest runs the notebooks.

Run it after changing a notebook in notebooks/ or a number its checked cells
print (cells tagged `nbval-check-output`), review the diff of the printed
numbers, and commit the result. Every notebook runs with this folder as its
working directory, as nbval runs it.
"""

import json
import shutil
import sys
from pathlib import Path

import papermill

from salrepro.pipeline import registry

HERE = Path(__file__).resolve().parent
NOTEBOOKS = HERE.parent.parent / "notebooks"
ORDER = list(registry.pipeline_order())  # a stage after those whose runs it reads (pipeline/registry.py)
SOURCE = {s.name: s.notebook for s in registry.STAGES if s.notebook}  # golden name -> notebook it executes


def parameters(name: str) -> dict:
    st = registry.STAGE[name]
    common = {"params_file": "params-test.yaml"}
    if st.notebook:  # a notebook of several stages: which one
        common["stage"] = name
    if name == "report":  # reads the committed copy of the stages' summaries: independent of test order
        return {**common, "results_dir": "results", "out_dir": "_out/report", "readme": None}
    if st.per_dataset:
        common.update(dataset="digits", out_dir=f"_out/{name}/digits")
    else:
        common["out_dir"] = f"_out/{name}"
    return {**common, **({"figures_dir": "_out/figures"} if st.figures else {})}


def main(names) -> None:
    shutil.rmtree(HERE / "_out", ignore_errors=True)
    for name in names or ORDER:
        if name == "report":  # freeze the stages' summaries the report test reads
            shutil.rmtree(HERE / "results", ignore_errors=True)
            for summary in [*(HERE / "_out").glob("*/*/summary.csv"), *(HERE / "_out").glob("*/*/runs.csv"),
                            *(HERE / "_out").glob("tuned/*/choice.csv"),
                            HERE / "_out/protocol_study/readings.csv",
                            HERE / "_out/calibration/comparison.csv"]:
                target = HERE / "results" / summary.relative_to(HERE / "_out")
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(summary, target)
        papermill.execute_notebook(NOTEBOOKS / f"{SOURCE.get(name, name)}.ipynb", HERE / f"{name}.ipynb", parameters=parameters(name),
                                   kernel_name="python3", cwd=str(HERE), progress_bar=False)
        relative_paths(HERE / f"{name}.ipynb")
        print("executed", name)


def relative_paths(path: Path) -> None:
    """papermill records the notebooks' absolute paths: keep them relative to the repository, so that no
    path of the machine that made the goldens is committed."""
    nb = json.loads(path.read_text())
    meta = nb["metadata"].get("papermill", {})
    root = HERE.parent.parent
    for key in ("input_path", "output_path"):
        if meta.get(key):
            meta[key] = Path(meta[key]).resolve().relative_to(root).as_posix()
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
