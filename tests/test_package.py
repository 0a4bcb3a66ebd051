"""The package's structure: no import cycle between its modules, nothing imported from the package above."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "salrepro"


def name_of(path: Path) -> str:
    """A module's dotted name below salrepro: "sal" -> "method.sal", a package's __init__ -> "method"."""
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts) or "__init__"


MODULES = {name_of(p): p for p in SRC.rglob("*.py")}


def imports(path: Path) -> set[str]:
    """The salrepro modules a module imports (dotted below salrepro), at top level or inside functions;
    "__init__" for a name taken from the package's own __init__."""
    here = name_of(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
            target = base + (node.module.split(".") if node.module else [])
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("salrepro"):
            target = node.module.split(".")[1:]
        else:
            continue
        name = ".".join(target)
        for alias in node.names:  # `from . import sal` imports a module; `from . import __version__` a name
            sub = f"{name}.{alias.name}" if name else alias.name
            out.add(sub if sub in MODULES else (name or "__init__"))
    return {m for m in out if m in MODULES or m == "__init__"}


def graph() -> dict[str, set[str]]:
    return {name: imports(p) for name, p in MODULES.items()}


def test_no_module_imports_the_package_above_it():
    upward = {m for m, deps in graph().items() if m != "__init__" and "__init__" in deps}
    assert not upward, f"modules importing from salrepro/__init__: {sorted(upward)}"


# The layers, lowest first: a module imports only from its own layer or those below (data and the
# kernels stand alone at the bottom: neither knows the method).
LAYERS = {"kernels": 0, "data": 0, "method": 1, "engine": 2, "runs": 3, "pipeline": 4}


def test_each_layer_imports_only_the_layers_below_it():
    for name, deps in graph().items():
        if name == "__init__":
            continue
        rank = LAYERS[name.split(".")[0]]
        for d in deps - {"__init__"}:
            assert LAYERS[d.split(".")[0]] <= rank, f"{name} (layer {rank}) imports {d}"
    assert all(d.split(".")[0] not in ("method", "engine", "runs", "pipeline")
               for m, deps in graph().items() if m.split(".")[0] in ("kernels", "data") for d in deps)


def test_no_import_cycle():
    g = {m: deps - {"__init__"} for m, deps in graph().items() if m != "__init__"}
    g = {m: {d for d in deps if d != m and not m.startswith(d + ".")} for m, deps in g.items()}  # a package's own __init__
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
    calls = _calls(SRC / "method" / "sal.py")
    assert not calls & {"grouped_mm", "nonzero_static", "area_accumulate", "usable", "gemm", "bmm", "baddbmm",
                        "baddbmm_", "addmm_", "linear"}
    assert "kernels.blas" not in imports(SRC / "method" / "sal.py")


def test_the_batched_engine_writes_no_equation_of_its_own():
    """batched.py stacks tensors and calls the method's functions; it computes no product, softmax or update itself."""
    calls = _calls(SRC / "engine" / "batched.py")
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
