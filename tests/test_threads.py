"""The serial-or-split choice of batch kernels: measured once per machine and thread count,
remembered on disk, forced by an environment variable."""
import json
import math

import numba
import pytest

from mlsys_ext import _threads, _wisdom


@pytest.fixture
def wisdom(tmp_path, monkeypatch):
    """A fresh wisdom file in tmp_path, nothing remembered in memory, nothing forced, a quiet machine."""
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv(_threads.ENVIRONMENT, raising=False)
    monkeypatch.setattr(_wisdom, "_memory", {})
    monkeypatch.setattr(_threads.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    return tmp_path / "threads-wisdom.json"


def recorded(kernels_called):
    serial = lambda *args: kernels_called.append(("serial", args))  # noqa: E731
    parallel = lambda *args: kernels_called.append(("parallel", args))  # noqa: E731
    return serial, parallel


@pytest.mark.parametrize("forced, n_keys, expected", [("0", 1, "parallel"), ("4096", 4095, "serial"),
                                                       ("4096", 4096, "parallel"), ("99999999999", 10**9, "serial")])
def test_the_environment_forces_the_threshold(monkeypatch, forced, n_keys, expected):
    monkeypatch.setenv(_threads.ENVIRONMENT, forced)
    monkeypatch.setattr(_threads, "measure_threshold", lambda n_threads: pytest.fail("measured despite the override"))
    called = []
    _threads.run(recorded(called), n_keys, "a")
    threads = numba.get_num_threads()
    if threads == 1:
        expected = "serial"  # one thread: nothing to split over
    assert called == [(expected, ("a", threads) if expected == "parallel" else ("a",))]


@pytest.mark.parametrize("forced", ["-1", "4k", "", "1e6"])
def test_a_malformed_override_is_refused_in_one_line(monkeypatch, forced):
    monkeypatch.setenv(_threads.ENVIRONMENT, forced)
    with pytest.raises(ValueError, match=r"MLSYS_PARALLEL_MIN_KEYS must be a whole number of keys"):
        _threads.parallel_min_keys(2)


def test_the_threshold_is_measured_once_written_down_and_read_back(wisdom, monkeypatch):
    measured = []
    monkeypatch.setattr(_threads, "measure_threshold", lambda n_threads: measured.append(n_threads) or 8192)
    assert _threads.parallel_min_keys(2) == 8192 and _threads.parallel_min_keys(2) == 8192
    assert measured == [2]
    data = json.loads(wisdom.read_text())
    assert data["version"] == _wisdom.FORMAT_VERSION
    assert list(data["entries"].values()) == [{"parallel_min_keys": 8192}]
    monkeypatch.setattr(_wisdom, "_memory", {})  # a new process on the same machine
    assert _threads.parallel_min_keys(2) == 8192 and measured == [2]
    monkeypatch.setattr(_threads, "measure_threshold", lambda n_threads: math.inf)
    assert _threads.parallel_min_keys(3) == math.inf  # another thread count is another entry
    assert sorted(v["parallel_min_keys"] or 0 for v in json.loads(wisdom.read_text())["entries"].values()) == [0, 8192]


@pytest.mark.parametrize("content", ["not json", json.dumps({"version": 99, "entries": {}}), json.dumps([1, 2]),
                                     "{KEY: {\"parallel_min_keys\": -5}}", "{KEY: {\"parallel_min_keys\": true}}",
                                     "{KEY: {\"parallel_min_keys\": \"4096\"}}", "{KEY: 7}"])
def test_a_damaged_or_foreign_file_is_measured_again_and_rewritten(wisdom, monkeypatch, content):
    key = json.dumps(f"{_threads.machine_key()} / 2 threads")
    if content.startswith("{KEY"):
        content = json.dumps({"version": _wisdom.FORMAT_VERSION, "entries": json.loads(content.replace("KEY", key))})
    wisdom.write_text(content)
    monkeypatch.setattr(_threads, "measure_threshold", lambda n_threads: 2048)
    assert _threads.parallel_min_keys(2) == 2048
    assert json.loads(wisdom.read_text())["entries"] == {json.loads(key): {"parallel_min_keys": 2048}}


def test_a_measurement_on_a_busy_machine_is_used_but_not_written_down(wisdom, monkeypatch):
    monkeypatch.setattr(_threads.os, "getloadavg", lambda: (4.0, 4.0, 4.0))
    monkeypatch.setattr(_threads.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(_threads, "measure_threshold", lambda n_threads: math.inf)
    assert _threads.parallel_min_keys(2) == math.inf
    assert not wisdom.exists()


def test_an_unwritable_place_keeps_the_threshold_in_memory(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(blocker / "below-a-file"))
    monkeypatch.delenv(_threads.ENVIRONMENT, raising=False)
    monkeypatch.setattr(_wisdom, "_memory", {})
    monkeypatch.setattr(_threads, "measure_threshold", lambda n_threads: 4096)
    assert _threads.parallel_min_keys(2) == 4096


def test_the_measurement_names_one_of_its_sizes_or_never():
    threshold = _threads.measure_threshold(2, repeats=1)
    assert threshold in _threads.SIZES or threshold == math.inf
