"""The package's structure: no import cycle between its modules, nothing imported from the package above."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "salrepro"


def imports(path: Path) -> set[str]:
    """The salrepro modules a module imports, at top level or inside functions."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                out.add(node.module.split(".")[0])
            else:  # `from . import sal` imports a module; `from . import __version__` takes a name from __init__
                modules = {q.stem for q in path.parent.glob("*.py")}
                out.update(a.name if a.name in modules else "__init__" for a in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("salrepro"):
            parts = node.module.split(".")
            out.add(parts[1] if len(parts) > 1 else "__init__")
    return out


def graph() -> dict[str, set[str]]:
    modules = {p.stem for p in SRC.glob("*.py")}
    return {p.stem: {m for m in imports(p) if m in modules or m == "__init__"} for p in SRC.glob("*.py")}


def test_no_module_imports_the_package_above_it():
    upward = {m for m, deps in graph().items() if m != "__init__" and "__init__" in deps}
    assert not upward, f"modules importing from salrepro/__init__: {sorted(upward)}"


def test_no_import_cycle():
    g = {m: deps - {"__init__"} for m, deps in graph().items() if m != "__init__"}
    state: dict[str, int] = {}

    def visit(m, path):
        state[m] = 1
        for d in sorted(g.get(m, ())):
            if state.get(d) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path + [m, d]))
            if d not in state:
                visit(d, path + [m])
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m, [])


def _calls(path: Path) -> set[str]:
    """Names of the functions and methods a module calls, and whether it uses `@`."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            f = node.func
            out.add(f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", ""))
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.MatMult):
            out.add("@")
    return out


def test_the_method_file_holds_no_dispatch():
    """sal.py states the equations; how the products run (MKL, grouped matmul, CUDA) is dispatch.py's."""
    calls = _calls(SRC / "sal.py")
    assert not calls & {"grouped_mm", "nonzero_static", "area_accumulate", "usable", "gemm", "bmm", "baddbmm",
                        "baddbmm_", "addmm_", "linear"}
    assert "blas" not in imports(SRC / "sal.py")


def test_the_batched_engine_writes_no_equation_of_its_own():
    """batched.py stacks tensors and calls the method's functions; it computes no product, softmax or update itself."""
    calls = _calls(SRC / "batched.py")
    assert not calls & {"@", "bmm", "baddbmm", "baddbmm_", "addmm_", "softmax", "masked_fill", "grouped_mm",
                        "global_error", "layer_error", "area_update", "selector_update", "area_forward", "sub_"}
    assert {"forward_trace", "learn", "bp_step", "moe_branch"} <= calls


def test_no_path_of_any_machine_is_committed():
    """A user's clone has other paths: no tracked text file names a folder of the machine that wrote it
    (a home, /root, /work: papermill's metadata, a skip message, a table of results)."""
    import re
    import shutil
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    if shutil.which("git") is None or not (root / ".git").exists():
        pytest.skip("needs a git checkout")
    files = subprocess.run(["git", "-C", str(root), "ls-files"], capture_output=True, text=True, check=True).stdout.split()
    pattern = re.compile(r"(?<![\w.~-])/(?:work|root|home|Users|tmp/pytest-of-\w+)/[\w.-]+")
    found = []
    for name in files:
        try:
            text = (root / name).read_text()
        except (UnicodeDecodeError, OSError):
            continue  # binary (figures, data caches) or gone
        found += [f"{name}: {m.group(0)}" for m in pattern.finditer(text)]
    assert not found, found[:10]
