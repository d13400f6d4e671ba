"""Classes and functions defined in a notebook cell run in workers (cloudpickle carries them)."""
import pytest


@pytest.fixture
def shell(ipython):
    yield ipython
    ipython.run_cell("cl.stop()")


def run(ip, source):
    result = ip.run_cell(source)
    result.raise_error()
    return result.result


def test_class_defined_in_a_cell_runs_as_an_actor(shell):
    run(shell, """
from mlsys_ext.cluster import Cluster, context
cl = Cluster(2)
SCALE = 3
def helper(x):
    return x * SCALE
class Accumulator:
    def __init__(self, start):
        self.total = start
    def add(self, x):
        self.total += helper(x)
        return self.total
    def peer_total(self, name):
        return context().handle(name).add.remote(0).result()
a = cl.spawn(Accumulator, 1, name="a")
b = cl.spawn(Accumulator, 100, name="b")
""")
    assert run(shell, "a.add.remote(2).result()") == 7
    assert run(shell, "a.peer_total.remote('b').result()") == 100
    assert run(shell, "cl.run(lambda: helper(5))['w1'].get()") == 15


def test_notebook_objects_travel_as_arguments_and_results(shell):
    run(shell, """
from dataclasses import dataclass
from mlsys_ext.cluster import Cluster
cl = Cluster(1)
@dataclass
class Point:
    x: int
    y: int
class Mirror:
    def flip(self, p):
        return Point(p.y, p.x)
m = cl.spawn(Mirror)
""")
    assert run(shell, "m.flip.remote(Point(1, 2)).result() == Point(2, 1)") is True
