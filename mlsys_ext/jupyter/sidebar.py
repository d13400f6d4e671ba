"""The kernel side of the JupyterLab sidebar: a comm that pushes what this kernel runs.

Protocol (version 1), JSON over a comm with target ``mlsys_ext.sidebar``:

- The sidebar opens the comm (or the kernel opens it when ``%load_ext mlsys_ext`` runs,
  so an open sidebar fills at once). The kernel answers every new comm with
  ``{"type": "state", "protocol": 1, "state": ...}`` and sends it again whenever it
  changes: a cluster's ``on_change`` wakes the publisher at once, and a publisher
  thread checks every ``interval`` seconds for what has no event (queue depths,
  message rates; Raft states are asked on a thread of their own, as a dead server takes a
  second to time out). The sidebar never polls.
- ``state``: ``environment`` (the ``%mlsys`` facts), ``clusters`` (id, backend,
  workers, current, actors: name, class, worker, pid, state, restarts, queue,
  msgs_in, msgs_per_s; links: the busiest, src, dst, msgs_per_s, bytes_per_s;
  shared_memory: a line saying what the cluster holds), ``raft`` (live Raft servers: id, role, term, commit), and
  ``panels`` (label and magic of every lab panel, for the sidebar's buttons).
- The sidebar sends ``{"type": "action", "request": n, "action": A, ...}`` with A one
  of kill, restart, pause, resume (``cluster``, ``name``), partition (``cluster``,
  ``groups``: lists of names), heal, stop (``cluster``), refresh. The kernel replies
  ``{"type": "reply", "request": n, "ok": true}`` or ``{"type": "error", "request": n,
  "message": ...}``; a bad or unknown action is answered, never raised.
"""
from __future__ import annotations

import json
import threading
import time

import pandas as pd

from ..cluster import ClusterError, live_clusters
from .._environment import environment
from .cluster_panel import LinkMeter, shared_memory_text

TARGET = "mlsys_ext.sidebar"
PROTOCOL = 1
ACTOR_ACTIONS = ("kill", "restart", "pause", "resume")
CLUSTER_ACTIONS = ("partition", "heal", "stop")
ACTIONS = (*ACTOR_ACTIONS, *CLUSTER_ACTIONS, "refresh")
LINKS_SHOWN = 5  # the busiest links of a cluster, by bytes per second


class Sidebar:
    """Serves every sidebar comm of one kernel: state pushed on change, actions answered."""

    def __init__(self, magics, panels: list[dict], interval: float = 0.25):
        self.magics = magics  # its ``current`` cluster and ``raft_cluster``
        self.panels = panels
        self.interval = interval
        self.comms: list = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._environment = None
        self._last_sent = None
        self._counts: dict = {}  # (cluster id, actor) -> (msgs_in, monotonic time), for rates
        self._watched: dict = {}  # cluster id -> unsubscribe
        self._meters: dict = {}  # cluster id -> LinkMeter, for rates per link
        self._raft_rows: list[dict] = []
        self._publisher = threading.Thread(target=self._publish_loop, name="mlsys-sidebar", daemon=True)
        self._publisher.start()
        # Raft states are remote calls that wait up to a second on a dead server: asked on a
        # thread of their own, so cluster changes still reach the sidebar at once
        threading.Thread(target=self._raft_loop, name="mlsys-sidebar-raft", daemon=True).start()

    # ---- comms ---------------------------------------------------------------------------------

    def attach(self, comm, _open_msg=None) -> None:
        """Serve ``comm`` (anything with send, on_msg and on_close): the state at once (from the
        publisher thread: gathering it calls the workers), then on every change."""
        comm.on_msg(lambda msg: self.handle(comm, msg["content"]["data"]))
        comm.on_close(lambda _msg: self._detach(comm))
        with self._lock:
            self.comms.append(comm)
        self._resend()

    def _resend(self) -> None:
        self._last_sent = None
        self._wake.set()

    def _detach(self, comm) -> None:
        with self._lock:
            if comm in self.comms:
                self.comms.remove(comm)

    def close(self) -> None:
        """Stop the publisher and close every comm (the extension is unloaded)."""
        self._closed.set()
        self._wake.set()
        for unsubscribe in self._watched.values():
            unsubscribe()
        with self._lock:
            comms, self.comms = self.comms, []
        for comm in comms:
            comm.close()

    @staticmethod
    def _send(comm, message: dict) -> None:
        try:
            comm.send(message)
        except Exception:  # a comm whose frontend went away; its close will detach it
            pass

    # ---- state ---------------------------------------------------------------------------------

    def state(self) -> dict:
        if self._environment is None:
            self._environment = _jsonable(environment())  # ~2 s the first time: probes CUDA and Ray
        now = time.monotonic()
        clusters = []
        for cluster in live_clusters():
            key = str(id(cluster))
            if key not in self._watched:
                self._watched[key] = cluster.on_change(lambda _c, _e: self._wake.set())
            actors = []
            for row in cluster.status().to_dict("records"):
                before = self._counts.get((key, row["name"]))
                rate = 0.0
                if before is not None and now > before[1]:
                    rate = max(row["msgs_in"] - before[0], 0) / (now - before[1])
                self._counts[(key, row["name"])] = (row["msgs_in"], now)
                actors.append({**{k: _plain(v) for k, v in row.items()}, "msgs_per_s": round(rate, 1)})
            meter = self._meters.setdefault(key, LinkMeter(cluster))
            links = [{"src": r.src, "dst": r.dst, "msgs_per_s": round(r.msgs_per_s, 1),
                      "bytes_per_s": round(r.bytes_per_s)} for r in meter.read(top=LINKS_SHOWN).itertuples()]
            clusters.append({"id": key, "backend": cluster.backend, "workers": list(cluster.workers),
                             "current": cluster is self.magics.current, "actors": actors, "links": links,
                             "shared_memory": shared_memory_text(cluster)})
        # forget stopped clusters: a new cluster can get a stopped one's id, and must be watched
        live = {c["id"] for c in clusters}
        for key in [key for key in self._watched if key not in live]:
            self._watched.pop(key)()
        self._counts = {key: count for key, count in self._counts.items() if key[0] in live}
        self._meters = {key: meter for key, meter in self._meters.items() if key in live}
        return {"environment": self._environment, "clusters": clusters, "raft": self._raft_rows,
                "panels": self.panels}

    def raft_rows(self) -> list[dict]:
        """The live Raft servers' roles, terms and commit indexes (none when no Raft runs)."""
        raft = self.magics.raft_cluster
        if raft is None or raft.cluster.stopped:
            return []
        rows = raft.states().to_dict("records")
        return [{"id": _plain(r["id"]), "role": r["role"], "term": _plain(r.get("term")),
                 "commit": _plain(r.get("commit"))} for r in rows]

    def _raft_loop(self) -> None:
        while not self._closed.wait(self.interval):
            if not self.comms:
                continue
            try:
                rows = self.raft_rows()
            except Exception:  # the Raft cluster stopping under us
                rows = []
            if rows != self._raft_rows:
                self._raft_rows = rows
                self._wake.set()

    @staticmethod
    def _state_message(state: dict) -> dict:
        return {"type": "state", "protocol": PROTOCOL, "state": state}

    def _publish_loop(self) -> None:
        while not self._closed.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._closed.is_set() or not self.comms:
                continue
            try:
                state = self.state()
            except Exception:  # a cluster stopping under us; the next round sees it gone
                continue
            encoded = json.dumps(state, sort_keys=True)
            if encoded == self._last_sent:
                continue
            self._last_sent = encoded
            message = self._state_message(state)
            with self._lock:
                comms = list(self.comms)
            for comm in comms:
                self._send(comm, message)

    # ---- actions -------------------------------------------------------------------------------

    def handle(self, comm, data) -> None:
        """Answer one message from the sidebar; actions that take time run on a thread of their own."""
        request = data.get("request") if isinstance(data, dict) else None
        try:
            action = self._parse(data)
        except ValueError as exc:
            self._send(comm, {"type": "error", "request": request, "message": str(exc)})
            return
        threading.Thread(target=self._run, args=(comm, request, action), name="mlsys-sidebar-action",
                         daemon=True).start()

    def _parse(self, data):
        if not isinstance(data, dict) or data.get("type") != "action":
            raise ValueError(f"expected an action message, got {data!r}")
        name = data.get("action")
        if name not in ACTIONS:
            raise ValueError(f"unknown action {name!r}; actions: {', '.join(ACTIONS)}")
        if name == "refresh":
            return name, None, ()
        cluster = self._cluster(data.get("cluster"))
        if name in ACTOR_ACTIONS:
            actor = data.get("name")
            if not isinstance(actor, str):
                raise ValueError(f"{name} needs the name of an actor or worker, got {actor!r}")
            return name, cluster, (actor,)
        if name == "partition":
            groups = data.get("groups")
            if not (isinstance(groups, list) and len(groups) >= 2
                    and all(isinstance(g, list) and g and all(isinstance(n, str) for n in g) for g in groups)):
                raise ValueError(f"partition needs two or more non-empty lists of names, got {groups!r}")
            return name, cluster, tuple(groups)
        return name, cluster, ()

    @staticmethod
    def _cluster(key):
        for cluster in live_clusters():
            if str(id(cluster)) == key:
                return cluster
        raise ValueError(f"no running cluster has id {key!r}")

    def _run(self, comm, request, action) -> None:
        name, cluster, args = action
        try:
            if name != "refresh":
                getattr(cluster, name)(*args)
                if name == "stop" and cluster is self.magics.current:
                    self.magics.current = None
        except (ClusterError, ValueError, OSError) as exc:
            self._send(comm, {"type": "error", "request": request, "message": str(exc)})
            return
        self._send(comm, {"type": "reply", "request": request, "ok": True})
        self._resend()  # whatever changed, the sidebar gets the state again


def _plain(value):
    """numpy and pandas scalars (and missing values) as JSON's."""
    if value is None or value is pd.NA:
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    return value


def _jsonable(info: dict) -> dict:
    """The environment report with (usable, why) pairs as objects."""
    return {key: {"usable": value[0], "why": value[1]} if isinstance(value, tuple) else value
            for key, value in info.items()}
