"""The Jupyter wing: magics and panels over the pure cores. Only this package imports IPython."""
from .attention_panel import AttentionPanel
from .batching_panel import BatchingPanel
from .bloom_panel import BloomPanel
from .cluster_panel import ClusterPanel
from .cms_panel import CountMinPanel
from .hogwild_panel import HogwildPanel
from .kmeans_panel import KMeansPanel
from .lsh_panel import LSHPanel, SimHashPanel
from .magics import MlsysMagics
from .raft_panel import RaftPanel

__all__ = ["AttentionPanel", "BatchingPanel", "BloomPanel", "ClusterPanel", "CountMinPanel", "HogwildPanel", "KMeansPanel", "LSHPanel", "MlsysMagics", "RaftPanel", "SimHashPanel", "load_ipython_extension", "unload_ipython_extension"]


def load_ipython_extension(ipython) -> None:
    ipython.register_magics(MlsysMagics)


def unload_ipython_extension(ipython) -> None:
    magics = ipython.magics_manager.registry.get("MlsysMagics")
    if magics is not None and magics.raft_cluster is not None:
        magics.raft_cluster.stop()
        magics.raft_cluster = None
    if magics is not None and magics.current is not None:
        magics.current.stop()
        magics.current = None
