"""One shape for the backends: the contract (_cluster.py) imports no backend, and
``Cluster(n, backend=...)`` builds the class registered under that name."""
import ast
from pathlib import Path

import pytest

import mlsys_ext.cluster as cluster_package
from mlsys_ext.cluster import BACKENDS, Cluster, register_backend
from mlsys_ext.cluster._cluster import _BACKENDS

PACKAGE = Path(cluster_package.__file__).parent


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)} | {
        alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}


def test_the_contract_imports_no_backend_and_both_backends_subclass_it():
    assert not {"_local", "_ray"} & imported_modules(PACKAGE / "_cluster.py")
    for backend in ("_local.py", "_ray.py"):
        assert "_cluster" in imported_modules(PACKAGE / backend)
    assert tuple(_BACKENDS) == BACKENDS == ("local", "ray")


def test_a_registered_backend_is_what_cluster_builds():
    class Recorder(Cluster):
        def __init__(self, n=None, backend="recorder", **options):
            self.made = (n, backend, options)

    register_backend("recorder", lambda: Recorder)
    try:
        made = Cluster(3, backend="recorder", seed=1)
        assert isinstance(made, Recorder) and made.made == (3, "recorder", {"seed": 1})
    finally:
        del _BACKENDS["recorder"]
    with pytest.raises(ValueError, match=r"backend must be one of \('local', 'ray'\), got 'recorder'"):
        Cluster(1, backend="recorder")
