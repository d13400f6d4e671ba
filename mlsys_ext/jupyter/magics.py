"""``%mlsys`` and ``%cluster``: thin wrappers over ``mlsys_ext.cluster``.

Every bad argument or refused action becomes a UsageError, which IPython
prints as one line (here: the problem, then the usage) without a traceback.
"""
from __future__ import annotations

import inspect
import re

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from IPython.display import display

from ..cluster import BACKENDS, ActorTimeoutError, Cluster, ClusterError, check_workers
from ..kernels import BackendUnavailable
from .._environment import environment, format_environment
from . import (allreduce_panel, attention_panel, batching_panel, bloom_panel, cluster_panel, cms_panel, hogwild_panel,
               kmeans_panel, lsh_panel, mapreduce_panel, raft_panel, sgd_panel, sharding_panel)
from ._lab_panel import span

WORKER_LIMIT = "1 to 4 per CPU, or $MLSYS_MAX_WORKERS"  # what check_workers allows
THREADS_HELP = "numba threads (1 to numba's pool; default: all)"


def run_mapreduce(cluster, inputs, map_fn, reduce_fn, combine_fn, n_reduce, backup_tasks, task_timeout):
    """A `%%mapreduce` cell's job, its Gantt chart shown below the cell; returns the result."""
    from ..distributed import mapreduce

    res = mapreduce(cluster, inputs, map_fn, reduce_fn, combine_fn, n_reduce=n_reduce, backup_tasks=backup_tasks,
                    task_timeout=task_timeout)
    png, summary, _ = mapreduce_panel.draw_gantt(res, list(cluster.workers))
    display(widgets_for_result(png, summary))
    return res


def widgets_for_result(png: bytes, summary: str):
    """A plot and its summary, shown as a panel shows them."""
    import ipywidgets as widgets

    from ._lab_panel import plot_image, show_png

    image = plot_image()
    show_png(image, png)
    return widgets.VBox([image, widgets.HTML(summary)])


def default_of(panel: type, name: str):
    """A panel's default for ``name``: a magic's flag defaults to it, so the two cannot differ."""
    return inspect.signature(panel).parameters[name].default
COMMANDS = ("start", "status", "stop", "kill", "restart", "pause", "resume",
            "partition", "heal", "net", "trace", "run")
CLUSTER_USAGE = (
    f"usage: %cluster [start [N] ({WORKER_LIMIT}) [--backend local|ray] [--address A] | "
    "status | stop | "
    "kill|restart|pause|resume NAME | partition a,b | c | heal | "
    f"net [--drop P] [--delay 0-27ms, up to {cluster_panel.MAX_DELAY_MS} ms] [--duplicate P] [--link a,b] | "
    "trace [-n 20]]; "
    "%%cluster run [--targets w0,w1]"
)
RAFT_COMMANDS = ("panel", "study", "start", "status", "kill", "restart", "partition", "heal", "put", "get", "stop")
RAFT_USAGE = (
    "usage: %raft [-n 5] [--seed 0] (the simulated panel) | %raft study [--trials 20] | "
    f"%raft start [N] ({WORKER_LIMIT}) | status | kill|restart ID|leader | partition 0 | 1,2 | "
    "heal | put KEY VALUE | get KEY | stop"
)
# every lab panel, for the sidebar's buttons: a new panel magic joins here
PANELS = (
    {"label": "Cluster", "magic": "%cluster"},
    {"label": "Bloom filter", "magic": "%bloom"},
    {"label": "Count-Min", "magic": "%cms"},
    {"label": "MinHash LSH", "magic": "%lsh"},
    {"label": "SimHash LSH", "magic": "%lsh --simhash"},
    {"label": "k-means", "magic": "%kmeans"},
    {"label": "Hogwild SGD", "magic": "%hogwild"},
    {"label": "Attention", "magic": "%attention"},
    {"label": "Raft", "magic": "%raft"},
    {"label": "Batching", "magic": "%batching"},
    {"label": "Sharding", "magic": "%sharding"},
    {"label": "MapReduce", "magic": "%mapreduce"},
    {"label": "All-reduce", "magic": "%allreduce"},
    {"label": "Data-parallel SGD", "magic": "%allreduce --sgd"},
)
_DELAY = re.compile(r"^\s*([0-9.]+)\s*(?:-\s*([0-9.]+))?\s*(ms|s)?\s*$")


def parse_delay(text: str) -> tuple[float, float]:
    """'0-27ms' -> (0.0, 0.027); '5ms' -> (0.005, 0.005); '0.1' -> seconds."""
    m = _DELAY.match(text)
    if not m:
        raise UsageError(f"--delay {text!r}: expected seconds or a range such as 0-27ms or 0.1-0.2s")
    lo = float(m.group(1))
    hi = float(m.group(2)) if m.group(2) else lo
    scale = 1e-3 if m.group(3) == "ms" else 1.0
    return lo * scale, hi * scale


def usage_line(magic) -> str:
    """One line of usage from a magic's argument parser."""
    return "usage: " + " ".join(magic.parser.format_usage().replace("::", "").split())


def parse_groups(words: list[str]) -> list[list[str]]:
    """'a,b | c' -> [['a', 'b'], ['c']]."""
    groups = [[n.strip() for n in part.split(",") if n.strip()] for part in " ".join(words).split("|")]
    if len(groups) < 2 or not all(groups):
        raise UsageError("partition needs groups separated by '|', e.g. %cluster partition a,b | c")
    return groups


@magics_class
class MlsysMagics(Magics):
    """Holds the notebook's current cluster; every action is one call on it."""

    def __init__(self, shell):
        super().__init__(shell)
        self.current: Cluster | None = None
        self.raft_cluster = None  # the live RaftCluster started by %raft start
        self.sidebar = None  # the kernel side of the JupyterLab sidebar, when in a kernel

    @line_magic
    def mlsys(self, line: str = ""):
        """Show the version, the magics, CPU and threading facts, and GPU/Ray availability."""
        if line.strip():
            raise UsageError(f"%mlsys takes no arguments, got {line.strip()!r}\nusage: %mlsys")
        print(format_environment(environment()))

    @staticmethod
    def _open_panel(magic, line: str, build) -> None:
        """Parse ``line`` for ``magic``, build its panel and show it; bad values give the usage."""
        try:
            panel = build(parse_argstring(magic, line))
        except (UsageError, ValueError, TypeError, BackendUnavailable) as exc:
            raise UsageError(f"{exc}\n{usage_line(magic)}") from None
        display(panel)

    @magic_arguments()
    @argument("-n", type=int, default=100_000,
              help=f"capacity: keys the filter is sized for ({span(*bloom_panel.RANGES['n'])})")
    @argument("-p", type=float, default=0.01,
              help=f"target false-positive rate at capacity ({span(*bloom_panel.RANGES['p'])})")
    @argument("--kind", default="classic", help="classic or blocked")
    @line_magic
    def bloom(self, line: str = ""):
        """Open the Bloom filter panel: measured false-positive rate against theory."""
        self._open_panel(MlsysMagics.bloom, line, lambda a: bloom_panel.BloomPanel(a.n, a.p, a.kind))

    @magic_arguments()
    @argument("--eps", type=float, default=0.001,
              help=f"relative error: estimates exceed by at most eps N ({span(*cms_panel.RANGES['eps'])})")
    @argument("--delta", type=float, default=0.01,
              help=f"probability per key of exceeding the bound ({span(*cms_panel.RANGES['delta'])})")
    @argument("-N", "--length", type=int, default=200_000,
              help=f"stream length ({span(*cms_panel.RANGES['length'])})")
    @argument("--skew", type=float, default=1.2,
              help=f"Zipf exponent of the stream ({span(*cms_panel.RANGES['skew'])})")
    @argument("--conservative", action="store_true", help="conservative update")
    @line_magic
    def cms(self, line: str = ""):
        """Open the Count-Min panel: overestimates against the eps N bound."""
        self._open_panel(MlsysMagics.cms, line,
                         lambda a: cms_panel.CountMinPanel(a.eps, a.delta, a.length, a.skew, a.conservative))

    @magic_arguments()
    @argument("--num-perm", type=int, default=128,
              help=f"MinHash permutations per signature ({span(*lsh_panel.RANGES['num_perm'])})")
    @argument("--threshold", type=float, default=0.8,
              help=f"Jaccard similarity the index targets ({span(*lsh_panel.RANGES['threshold'])})")
    @argument("--fp-weight", type=float, default=0.5,
              help=f"weight of false positives, false negatives: 1 - it ({span(*lsh_panel.RANGES['fp_weight'])})")
    @argument("--simhash", action="store_true", help="the SimHash panel (vectors) instead of MinHash (sets)")
    @argument("--bits", type=int, default=32,
              help=f"--simhash: hyperplanes ({span(*lsh_panel.SIMHASH_RANGES['bits'])})")
    @argument("--bands", type=int, default=4,
              help=f"--simhash: bands the bits are split into ({', '.join(map(str, lsh_panel.BANDS))})")
    @line_magic
    def lsh(self, line: str = ""):
        """Open the LSH panel: MinHash candidates against the S-curve, or (--simhash) recall@10 against probes."""
        self._open_panel(MlsysMagics.lsh, line, lambda a: lsh_panel.SimHashPanel(a.bits, a.bands) if a.simhash
                         else lsh_panel.LSHPanel(a.num_perm, a.threshold, a.fp_weight))

    @magic_arguments()
    @argument("-n", type=int, default=10_000, help=f"points ({span(*kmeans_panel.RANGES['n'])})")
    @argument("--dims", type=int, default=8, help=f"dimensions ({span(*kmeans_panel.RANGES['dims'])})")
    @argument("-k", type=int, default=8, help=f"clusters ({span(*kmeans_panel.RANGES['k'])})")
    @argument("--threads", type=int, default=None, help=THREADS_HELP)
    @argument("--backend", default="numba", help="numba, numpy, cupy or numba-cuda (where usable)")
    @argument("--init", default="k-means++", help="k-means++ or random")
    @line_magic
    def kmeans(self, line: str = ""):
        """Open the k-means panel: centroids moving, inertia, time per iteration against scikit-learn."""
        self._open_panel(MlsysMagics.kmeans, line,
                         lambda a: kmeans_panel.KMeansPanel(a.n, a.dims, a.k, a.threads, a.backend, a.init))

    @magic_arguments()
    @argument("--rows", type=int, default=default_of(hogwild_panel.HogwildPanel, "rows"),
              help=f"training rows ({span(*hogwild_panel.RANGES['rows'])})")
    @argument("--features-log2", type=int, default=default_of(hogwild_panel.HogwildPanel, "features_log2"),
              help=f"log2 of the feature count ({span(*hogwild_panel.RANGES['features_log2'])})")
    @argument("--nnz", type=int, default=default_of(hogwild_panel.HogwildPanel, "nnz_per_row"),
              help=f"nonzeros per row ({span(*hogwild_panel.RANGES['nnz_per_row'])})")
    @argument("--threads", type=int, default=None, help=THREADS_HELP)
    @argument("--epochs", type=int, default=default_of(hogwild_panel.HogwildPanel, "epochs"),
              help=f"passes over the data ({span(*hogwild_panel.RANGES['epochs'])})")
    @argument("--lr", type=float, default=default_of(hogwild_panel.HogwildPanel, "lr"),
              help=f"learning rate, constant ({span(*hogwild_panel.RANGES['lr'])})")
    @argument("--loss", default=default_of(hogwild_panel.HogwildPanel, "loss"), help="log or hinge")
    @line_magic
    def hogwild(self, line: str = ""):
        """Open the Hogwild panel: loss against time for lock-free, locked and serial SGD, and speedup."""
        self._open_panel(MlsysMagics.hogwild, line, lambda a: hogwild_panel.HogwildPanel(
            a.rows, a.features_log2, a.nnz, a.threads, a.epochs, a.lr, a.loss))

    @magic_arguments()
    @argument("-L", "--seq-len", type=int, default=512,
              help=f"sequence length ({span(*attention_panel.RANGES['seq_len'])})")
    @argument("--heads", type=int, default=4, help=f"query heads ({span(*attention_panel.RANGES['heads'])})")
    @argument("--head-dim", type=int, default=64,
              help=f"head dimension ({span(*attention_panel.RANGES['head_dim'])})")
    @argument("--backend", default="auto", help="numba, numpy, cupy, numba-cuda or auto (where usable)")
    @argument("--causal", action="store_true", help="mask keys after each query")
    @argument("--threads", type=int, default=None, help=THREADS_HELP)
    @line_magic
    def attention(self, line: str = ""):
        """Open the attention panel: the flash-style kernel against naive numpy and torch SDPA."""
        self._open_panel(MlsysMagics.attention, line, lambda a: attention_panel.AttentionPanel(
            a.seq_len, a.heads, a.head_dim, a.backend, a.causal, a.threads))

    @magic_arguments()
    @argument("--maps", type=int, default=default_of(mapreduce_panel.MapReducePanel, "maps"),
              help=f"line: map tasks of the word-count job ({span(*mapreduce_panel.RANGES['maps'])})")
    @argument("--n-reduce", type=int, default=default_of(mapreduce_panel.MapReducePanel, "n_reduce"),
              help=f"reduce tasks ({span(*mapreduce_panel.RANGES['n_reduce'])})")
    @argument("--task-ms", type=int, default=default_of(mapreduce_panel.MapReducePanel, "task_ms"),
              help=f"line: the least time a map task takes ({span(*mapreduce_panel.RANGES['task_ms'])} ms)")
    @argument("--task-timeout", type=float, default=default_of(mapreduce_panel.MapReducePanel, "task_timeout"),
              help=f"seconds before a task is also given to another worker "
                   f"({span(*mapreduce_panel.RANGES['task_timeout'])})")
    @argument("--no-backup", action="store_true", help="no backup copies of stragglers")
    @argument("--inputs", default=None,
              help="cell: the variable holding the inputs (a list of texts, arrays or pathlib.Path files)")
    @line_cell_magic
    def mapreduce(self, line: str = "", cell: str | None = None):
        """`%mapreduce` opens the MapReduce panel on the running cluster: a word-count job's
        task attempts per worker, with kill and pause buttons. `%%mapreduce --inputs docs`
        runs the cell, which defines map_fn(name, text) and reduce_fn(key, values) (and
        optionally combine_fn), as a job over `docs`, and returns its result."""
        cluster = self._current()
        if cell is None:
            self._open_panel(MlsysMagics.mapreduce, line, lambda a: mapreduce_panel.MapReducePanel(
                cluster, a.maps, a.n_reduce, a.task_ms, a.task_timeout, not a.no_backup))
            return None
        try:
            args = parse_argstring(MlsysMagics.mapreduce, line)
            if args.inputs is None:
                raise UsageError("give the inputs: %%mapreduce --inputs NAME (a list in your namespace)")
            if args.inputs not in self.shell.user_ns:
                raise UsageError(f"no variable named {args.inputs!r}")
            namespace = dict(self.shell.user_ns)
            exec(compile(cell, "<%%mapreduce>", "exec"), namespace)
            missing = [name for name in ("map_fn", "reduce_fn") if not callable(namespace.get(name))]
            if missing:
                raise UsageError(f"the cell must define {' and '.join(missing)}")
            return run_mapreduce(cluster, namespace[args.inputs], namespace["map_fn"], namespace["reduce_fn"],
                                 namespace.get("combine_fn"), args.n_reduce, not args.no_backup, args.task_timeout)
        except (UsageError, ValueError, TypeError, FileNotFoundError) as exc:
            raise UsageError(f"{exc}\n{usage_line(MlsysMagics.mapreduce)}") from None

    @magic_arguments()
    @argument("--ranks", type=int, default=None,
              help=f"rank actors, one per worker in turn ({span(*allreduce_panel.RANGES['ranks'])}; "
                   "default: the cluster's workers)")
    @argument("--size-log2", type=int, default=default_of(allreduce_panel.AllReducePanel, "size_log2"),
              help=f"log2 of the float32 vector's length ({span(*allreduce_panel.RANGES['size_log2'])})")
    @argument("--servers", type=int, default=default_of(allreduce_panel.AllReducePanel, "servers"),
              help=f"parameter-server shards ({span(*allreduce_panel.RANGES['servers'])})")
    @argument("--sgd", action="store_true",
              help="the data-parallel SGD panel instead: convergence by sync mode, staleness and compression")
    @argument("--workers", type=int, default=None,
              help=f"--sgd: workers ({span(*sgd_panel.RANGES['workers'])}; default: the cluster's workers)")
    @argument("--staleness", type=int, default=default_of(sgd_panel.SGDPanel, "staleness"),
              help=f"--sgd: the asynchronous server's bound, in rounds ({span(*sgd_panel.RANGES['staleness'])})")
    @argument("--compression", default=default_of(sgd_panel.SGDPanel, "compression"),
              help=f"--sgd: of the gradients pushed to the server: {', '.join(sgd_panel.COMPRESSIONS)}")
    @argument("--jitter-ms", type=float, default=default_of(sgd_panel.SGDPanel, "jitter_ms"),
              help=f"--sgd: each worker's mean wait before a round, in ms ({span(*sgd_panel.RANGES['jitter_ms'])})")
    @line_magic
    def allreduce(self, line: str = ""):
        """Open the all-reduce panel on the running cluster: ring, binomial tree and parameter
        server, time and busbw against size, payload bytes per rank beside the formulas.
        With --sgd, the data-parallel SGD panel: training loss by round and wall time for
        all-reduce, a synchronous and an asynchronous parameter server."""
        cluster = self._current()

        def build(a):
            if a.sgd:
                return sgd_panel.SGDPanel(cluster, a.workers, a.staleness, a.compression, a.jitter_ms)
            return allreduce_panel.AllReducePanel(cluster, a.ranks, a.size_log2, a.servers)

        self._open_panel(MlsysMagics.allreduce, line, build)

    @magic_arguments()
    @argument("--scheme", default=default_of(sharding_panel.ShardingPanel, "scheme"),
              help=f"placement: {', '.join(sharding_panel.SCHEMES)}")
    @argument("--shards", type=int, default=default_of(sharding_panel.ShardingPanel, "shards"),
              help=f"shards ({span(*sharding_panel.RANGES['shards'])})")
    @argument("--vnodes", type=int, default=default_of(sharding_panel.ShardingPanel, "vnodes"),
              help=f"virtual nodes per shard, ring and bounded loads ({span(*sharding_panel.RANGES['vnodes'])})")
    @argument("--skew", type=float, default=default_of(sharding_panel.ShardingPanel, "skew"),
              help=f"Zipf exponent of the keys, 0 uniform ({span(*sharding_panel.RANGES['skew'])})")
    @argument("--salts", type=int, default=default_of(sharding_panel.ShardingPanel, "salts"),
              help=f"sub-keys for each of the {sharding_panel.HOT_KEYS} hottest keys, 1 none "
                   f"({span(*sharding_panel.RANGES['salts'])})")
    @argument("--keys", type=int, default=default_of(sharding_panel.ShardingPanel, "keys"),
              help=f"keys placed ({span(*sharding_panel.RANGES['keys'])})")
    @line_magic
    def sharding(self, line: str = ""):
        """Open the sharding panel: load per shard and keys moved on a resize, beside the theory."""
        self._open_panel(MlsysMagics.sharding, line, lambda a: sharding_panel.ShardingPanel(
            a.scheme, a.shards, a.vnodes, a.skew, a.salts, a.keys))

    @magic_arguments()
    @argument("--policy", default="continuous", help="static, dynamic, continuous or chunked")
    @argument("--rate", type=float, default=8.0,
              help=f"arrival rate, requests per second ({span(*batching_panel.RANGES['rate'])})")
    @argument("--requests", type=int, default=1000,
              help=f"requests simulated per slider move ({span(*batching_panel.RANGES['requests'])})")
    @argument("--lengths", default=None, help="chat, long-prompt, zipf, or trace (with --trace)")
    @argument("--trace", default=None, help=batching_panel.TRACE_FORMAT)
    @line_magic
    def batching(self, line: str = ""):
        """Open the batching panel: serving schedulers simulated, the hockey stick beside the
        saturation rate, batches and KV memory per iteration, and a run on a real tiny model."""
        self._open_panel(MlsysMagics.batching, line, lambda a: batching_panel.BatchingPanel(
            a.policy, a.rate, a.requests, a.trace, a.lengths))

    @magic_arguments()
    @argument("command", nargs="?", default="panel", help=f"one of: {', '.join(RAFT_COMMANDS)}")
    @argument("words", nargs="*", help=f"start: servers ({WORKER_LIMIT}); kill/restart: id or leader; "
                                        "partition: 0 | 1,2; put: key value; get: key")
    @argument("-n", "--servers", type=int, default=5,
              help=f"panel: servers in the simulated cluster ({span(*raft_panel.RANGES['n'])})")
    @argument("--seed", type=int, default=0, help="panel: the simulation's seed: same seed, same run")
    @argument("--trials", type=int, default=20,
              help=f"study: trials per election-timeout range ({span(*raft_panel.RANGES['trials'])})")
    @line_magic
    def raft(self, line: str = ""):
        """The Raft panel on a simulated cluster (no command), the paper's Figure 16 (study),
        or Raft on live worker processes: start N, status, kill/restart ID|leader,
        partition 0 | 1,2, heal, put KEY VALUE, get KEY, stop."""
        try:
            args = parse_argstring(MlsysMagics.raft, line)
            if args.command not in RAFT_COMMANDS:
                raise UsageError(f"unknown command {args.command!r}")
            if args.command in ("panel", "study"):
                display(raft_panel.RaftStudy(args.trials) if args.command == "study"
                        else raft_panel.RaftPanel(args.servers, args.seed))
                return None
            return self._raft_live(args.command, args.words)
        except (UsageError, ValueError, TypeError, ClusterError, TimeoutError) as exc:
            raise UsageError(f"{exc}\n{RAFT_USAGE}") from None

    def _raft_live(self, command: str, words: list[str]):
        from ..raft import RaftCluster

        if command == "start":
            if len(words) > 1 or (words and not words[0].isdigit()):
                raise UsageError("start takes the number of servers, e.g. %raft start 3")
            servers = check_workers(int(words[0]) if words else 3)  # one worker each: refused before a stop
            if self.raft_cluster is not None:
                self.raft_cluster.stop()  # a new start replaces the old servers
            self.raft_cluster = None
            self.raft_cluster = RaftCluster(servers)
            self.raft_cluster.wait_for_leader()
            return self.raft_cluster.states()
        raft = self.raft_cluster
        if raft is None:
            raise UsageError("no Raft cluster is running: start one with %raft start 3")
        expected = {"status": 0, "heal": 0, "stop": 0, "kill": 1, "restart": 1, "get": 1, "put": 2}.get(command)
        if expected is not None and len(words) != expected:
            raise UsageError(f"%raft {command} takes {expected} argument(s), got {len(words)}")
        if command == "status":
            return raft.states()
        if command in ("kill", "restart"):
            target = words[0] if words[0] == "leader" else int(words[0])
            print(f"{command}ed server {getattr(raft, command)(target)}")
            return None
        if command == "partition":
            raft.partition(*[[int(i) for i in group] for group in parse_groups(words)])
            return None
        if command == "heal":
            raft.heal()
            return None
        if command == "get":
            return raft.get(words[0])
        if command == "put":
            raft.put(words[0], words[1])
            return None
        raft.stop()
        self.raft_cluster = None
        return None

    def _current(self) -> Cluster:
        if self.current is None or self.current.stopped:
            raise UsageError("no cluster is running: start one with %cluster start 4")
        return self.current

    @magic_arguments()
    @argument("command", nargs="?", help=f"one of: {', '.join(COMMANDS)}; none shows the panel")
    @argument("names", nargs="*", help=f"worker count (start: {WORKER_LIMIT}), actor or worker (kill ...), "
                                        "groups (partition)")
    @argument("-n", type=int, default=None, help="workers to start, or trace rows to show")
    @argument("--backend", default="local", help=f"start: one of {', '.join(BACKENDS)}")
    @argument("--address", default=None, help="start --backend ray: an existing Ray cluster")
    @argument("--drop", type=float, default=None, help="net: drop probability (net sets drop, delay and duplicate; those not given become 0)")
    @argument("--delay", default=None, help=f"net: delay, e.g. 0-27ms (up to {cluster_panel.MAX_DELAY_MS} ms)")
    @argument("--duplicate", type=float, default=None, help="net: duplicate probability")
    @argument("--link", default=None, help="net: only between two actor names, e.g. a,b (with a fault to set)")
    @argument("--targets", default=None, help="run: comma-separated workers (default: all)")
    @line_cell_magic
    def cluster(self, line: str = "", cell: str | None = None):
        """Start, inspect and break a cluster of actors. `%cluster` alone opens the panel.

        A `%%cluster run` cell that runs past the cluster's timeout keeps running on its
        worker (it cannot be interrupted there): `%cluster restart w0` (or `kill w0`) ends it."""
        try:
            args = parse_argstring(MlsysMagics.cluster, line)
            if args.command is not None and args.command not in COMMANDS:
                raise UsageError(f"unknown command {args.command!r}")
            if (cell is not None) != (args.command == "run"):
                raise UsageError("run is a cell magic (%%cluster run), and the cell magic only takes run")
            return self._dispatch(args.command, args, cell)
        except (UsageError, ClusterError, ValueError, TypeError) as exc:
            raise UsageError(f"{exc}\n{CLUSTER_USAGE}") from None

    def _dispatch(self, command, args, cell):
        if command is None:
            panel = cluster_panel.ClusterPanel(self._current())
            display(panel)
            return None
        if command == "start":
            return self._start(args)
        if command in ("kill", "restart", "pause", "resume"):
            if len(args.names) != 1:
                raise UsageError(f"%cluster {command} takes one actor or worker name")
            getattr(self._current(), command)(args.names[0])
            return None
        if command == "partition":
            self._current().partition(*parse_groups(args.names))
            return None
        if args.names:
            raise UsageError(f"%cluster {command} takes no names, got {' '.join(args.names)!r}")
        cluster = self._current()
        if command == "status":
            return cluster.status()
        if command == "stop":
            cluster.stop()
            self.current = None
            return None
        if command == "heal":
            cluster.heal()
            return None
        if command == "net":
            return self._net(cluster, args)
        if command == "trace":
            if args.n is not None and args.n < 1:
                raise UsageError(f"trace -n takes the number of rows to show (>= 1), got {args.n}")
            return cluster.trace(20 if args.n is None else args.n)
        return self._run(cluster, args, cell)

    def _start(self, args) -> Cluster:
        if len(args.names) > 1 or (args.names and args.n is not None):
            raise UsageError("give the worker count once: %cluster start 4 or %cluster start -n 4")
        n = args.n
        if args.names:
            if not args.names[0].isdigit():
                raise UsageError(f"worker count must be a whole number, got {args.names[0]!r}")
            n = int(args.names[0])
        if args.backend not in BACKENDS:
            raise UsageError(f"--backend must be one of {', '.join(BACKENDS)}, got {args.backend!r}")
        if args.address and args.backend != "ray":
            raise UsageError("--address names an existing Ray cluster: give it with --backend ray")
        n = check_workers(n)  # refused before the running cluster is stopped
        if self.current is not None:
            self.current.stop()  # re-running start replaces the old cluster cleanly
            self.current = None
        options = {"address": args.address} if args.address else {}
        self.current = Cluster(n, backend=args.backend, **options)
        return self.current

    def _net(self, cluster: Cluster, args):
        link = None
        if args.link is not None:
            link = [n.strip() for n in args.link.split(",")]
            if len(link) != 2 or not all(link):
                raise UsageError(f"--link takes two actor names a,b, e.g. --link driver,c0; got {args.link!r}")
        delay = parse_delay(args.delay) if args.delay else 0.0
        if args.delay and max(delay) > cluster_panel.MAX_DELAY_MS / 1000:
            raise UsageError(f"--delay {args.delay!r}: delays go up to {cluster_panel.MAX_DELAY_MS} ms "
                             "(the panel's slider)")
        if args.drop is None and args.delay is None and args.duplicate is None:
            if link is not None:
                raise UsageError("--link needs a fault to set on it: --drop, --delay or --duplicate")
            return cluster.network()
        cluster.set_network(drop=args.drop or 0.0, delay=delay, duplicate=args.duplicate or 0.0, link=link)
        return None

    def _run(self, cluster: Cluster, args, cell: str):
        targets = [t.strip() for t in args.targets.split(",")] if args.targets else None
        try:
            compile(cell, "<%%cluster run>", "exec")
        except SyntaxError as exc:
            raise UsageError(f"the cell does not parse: {exc}") from None
        for worker, result in cluster.execute(cell, targets).items():
            if result.stdout:
                print(f"[{worker}] " + result.stdout.rstrip("\n").replace("\n", f"\n[{worker}] "))
            if isinstance(result.error, ActorTimeoutError):  # a worker runs one cell at a time, uninterruptibly
                print(f"[{worker}] no answer after {cluster.timeout:g} s; the cell is still running there: "
                      f"%cluster restart {worker} ends it")
            elif result.error is not None:
                print(f"[{worker}] {type(result.error).__name__}: {result.error}")
            elif result.value is not None:
                print(f"[{worker}] Out: {result.value!r}")
        return None
