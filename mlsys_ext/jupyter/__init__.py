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
from .mapreduce_panel import MapReducePanel
from .raft_panel import RaftPanel
from .sharding_panel import ShardingPanel

__all__ = ["AttentionPanel", "BatchingPanel", "BloomPanel", "ClusterPanel", "CountMinPanel", "HogwildPanel", "KMeansPanel", "LSHPanel", "MapReducePanel", "MlsysMagics", "RaftPanel", "ShardingPanel", "SimHashPanel", "load_ipython_extension", "unload_ipython_extension"]


def load_ipython_extension(ipython) -> None:
    ipython.register_magics(MlsysMagics)
    magics = ipython.magics_manager.registry["MlsysMagics"]
    if getattr(ipython, "kernel", None) is not None and magics.sidebar is None:
        _serve_sidebar(magics)


def _serve_sidebar(magics) -> None:
    """Register the sidebar's comm target, and open a comm to a sidebar already watching this kernel."""
    import comm

    from .magics import PANELS
    from .sidebar import TARGET, Sidebar

    magics.sidebar = Sidebar(magics, list(PANELS))
    comm.get_comm_manager().register_target(TARGET, magics.sidebar.attach)
    magics.sidebar.attach(comm.create_comm(target_name=TARGET, data={"protocol": 1}))


def unload_ipython_extension(ipython) -> None:
    magics = ipython.magics_manager.registry.get("MlsysMagics")
    if magics is not None and magics.sidebar is not None:
        import comm

        from .sidebar import TARGET

        comm.get_comm_manager().unregister_target(TARGET, magics.sidebar.attach)
        magics.sidebar.close()
        magics.sidebar = None
    if magics is not None and magics.raft_cluster is not None:
        magics.raft_cluster.stop()
        magics.raft_cluster = None
    if magics is not None and magics.current is not None:
        magics.current.stop()
        magics.current = None
