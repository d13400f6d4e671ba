"""Waiting on what Linux shows of a process in /proc (signals take effect asynchronously)."""
from __future__ import annotations

import time


def process_state(pid: int) -> str | None:
    """The one-letter state of ``pid`` (R, S, T, Z ...), or None if gone or there is no /proc."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return None


def wait_for_stop_state(pid: int, stopped: bool, timeout: float = 1.0) -> None:
    """Return once ``pid`` shows as stopped by a signal (or as running again), or after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = process_state(pid)
        if state is None or (state in ("T", "t")) == stopped:
            return
        time.sleep(0.001)


def wait_for_exit(pids, timeout: float = 10.0) -> None:
    """Return once none of ``pids`` runs any more (a zombie does not run), or after ``timeout``."""
    deadline = time.monotonic() + timeout
    for pid in pids:
        while time.monotonic() < deadline and process_state(pid) not in (None, "Z"):
            time.sleep(0.01)
