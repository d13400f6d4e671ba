"""Choices a kernel measures on first use on this machine, remembered on disk beside numba's
cache, as FFTW's wisdom is: which form of a batch kernel (``_threads``), which attention tiles.

One JSON file per kind of choice, read at most once per entry and process (the entries
are kept in memory after). An entry is a dict, named by the machine (``machine_key``)
and whatever else the choice depends on; its kind's ``valid`` check reads it back, so a
missing, foreign or damaged file, or entry, only means measuring again. A measurement made
while the machine is busy is used but not written down: other work skews it."""
from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

FORMAT_VERSION = 1
BUSY = 0.5  # load average per CPU above which a measurement is used but not remembered

_lock = threading.Lock()
_memory: dict[tuple[str, str], dict] = {}  # (kind, name) -> its entry, once known in this process


def wisdom_path(kind: str) -> Path:
    """Where ``kind``'s choices are kept: beside numba's cache (NUMBA_CACHE_DIR, or the
    package's __pycache__, where numba puts its own)."""
    return Path(os.environ.get("NUMBA_CACHE_DIR") or Path(__file__).parent / "__pycache__") / f"{kind}-wisdom.json"


def remembered(kind: str, name: str, measure: Callable[[], dict], valid: Callable[[dict], bool]) -> dict:
    """The entry ``name`` of ``kind``'s file when ``valid`` accepts it; else ``measure()``'s,
    written there unless the machine is busy. Batch kernels ask at every call: after the
    first, an answer is one dictionary lookup."""
    entry = _memory.get((kind, name))
    if entry is not None:
        return entry
    with _lock:
        if (kind, name) not in _memory:
            path = wisdom_path(kind)
            entries = _read(path)
            entry = entries.get(name)
            if not (isinstance(entry, dict) and valid(entry)):
                entry = measure()
                if os.getloadavg()[0] <= BUSY * (os.cpu_count() or 1):
                    entries[name] = entry
                    _write(path, entries)
            _memory[kind, name] = entry
        return _memory[kind, name]


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION or not isinstance(data.get("entries"), dict):
        return {}
    return data["entries"]


def _write(path: Path, entries: dict) -> None:
    """Replace the file at once (a reader never sees half of it); an unwritable place
    leaves the choices in memory only."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.stem}-", delete=False) as out:
            json.dump({"version": FORMAT_VERSION, "entries": entries}, out, indent=1)
        os.replace(out.name, path)
    except OSError:
        pass
