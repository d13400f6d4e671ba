"""The layering rule: cores never import the Jupyter wing, IPython, ipywidgets or matplotlib."""
import ast
import pathlib
import subprocess
import sys

import pytest

PACKAGE = pathlib.Path(__file__).parent.parent / "mlsys_ext"
FORBIDDEN = ("IPython", "ipywidgets", "ipykernel", "matplotlib", "mlsys_ext.jupyter")
# mlsys_ext/__init__.py is the extension's entry point: it imports the wing inside
# load_ipython_extension, which only IPython calls.
CORE_FILES = [p for p in PACKAGE.rglob("*.py")
              if "jupyter" not in p.relative_to(PACKAGE).parts and p != PACKAGE / "__init__.py"]


def imported_modules(path: pathlib.Path):
    """Absolute names of every module ``path`` imports, relative imports resolved."""
    package = ["mlsys_ext", *path.relative_to(PACKAGE).parent.parts]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            yield module
            yield from (f"{module}.{alias.name}" for alias in node.names)


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_core_does_not_import_the_jupyter_wing(path):
    bad = [m for m in imported_modules(path) if m.startswith(FORBIDDEN)]
    assert not bad, f"{path.name} imports {bad}"


def test_the_check_sees_a_relative_import_of_the_wing(tmp_path):
    probe = PACKAGE / "cluster" / "_probe_for_test.py"
    try:
        probe.write_text("from ..jupyter import magics\n")
        assert "mlsys_ext.jupyter" in set(imported_modules(probe))
    finally:
        probe.unlink()


def test_cluster_core_imports_without_pandas_or_jupyter():
    """Workers import the core at start-up: it must stay light."""
    code = ("import sys, mlsys_ext.cluster; "
            "print(sorted(m for m in ('pandas', 'IPython', 'ipywidgets', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
