"""mlsys_ext: a Jupyter-native lab for machine-learning systems.

``%load_ext mlsys_ext`` registers the magics; the topic packages
(``mlsys_ext.cluster`` ...) are plain Python and work from any script.
"""
from ._environment import describe_machine, environment
from ._version import __version__

__all__ = ["__version__", "describe_machine", "environment", "load_ipython_extension", "unload_ipython_extension"]


def load_ipython_extension(ipython) -> None:
    from .jupyter import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython) -> None:
    from .jupyter import unload_ipython_extension as unload

    unload(ipython)
