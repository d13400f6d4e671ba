import pytest


@pytest.fixture
def ip(ipython):
    """The test shell with mlsys_ext loaded; the cluster a test left current is stopped."""
    ipython.run_line_magic("load_ext", "mlsys_ext")
    yield ipython
    magics = ipython.magics_manager.registry["MlsysMagics"]
    if magics.current is not None:
        magics.current.stop()
        magics.current = None


def magic(ip, line, cell=None):
    """Run ``line`` ('cluster start 2') as a line magic, or as a cell magic over ``cell``."""
    name, _, rest = line.partition(" ")
    if cell is None:
        return ip.run_line_magic(name, rest)
    return ip.run_cell_magic(name, rest, cell)
