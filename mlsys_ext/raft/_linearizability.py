"""Linearizability checking of recorded client histories (a key-value store by default).

    from mlsys_ext.raft import check_linearizable
    result = check_linearizable(history)     # a DataFrame, or a list of dicts or records
    result.result                            # "ok", "violation" or "unknown" (out of time)
    result.key, result.prefix, result.blocked_op

The search is Wing and Gong's backtracking over the history's call and return events,
kept in a doubly linked list as in Porcupine, with Lowe's memoisation of
(linearized set, state) pairs. Each key is checked on its own: linearizability is local
(Herlihy and Wing), so a history is linearizable iff every key's sub-history is.
Operations that never returned would multiply the search, so it places them last, prunes a
configuration that only adds pending operations to one already seen, and places alike
pending operations in the order of their calls.
"""
from __future__ import annotations

import math
import numbers
import time
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

FIELDS = ("client", "kind", "key", "input", "output", "call", "ret")
_STEPS_PER_CLOCK_READ = 1024


@dataclass(frozen=True, slots=True)
class Operation:
    """One recorded client operation; ``row`` is its position in the history.

    ``ret`` is None when the call never returned; its ``output`` is then None (unknown).
    """

    row: int
    client: Any
    kind: str
    key: Any
    input: Any
    output: Any
    call: float
    ret: float | None

    @property
    def pending(self) -> bool:
        return self.ret is None


@dataclass(frozen=True)
class LinearizabilityResult:
    """What :func:`check_linearizable` found.

    ``result`` is "ok", "violation" or "unknown" (the time budget ran out). For a violation,
    ``key`` names the sub-history that failed, ``prefix`` is the longest linearizable prefix
    the search found (operations in a linearization order) and ``blocked_op`` the operation
    that cannot be placed after it. For "unknown", ``key`` is the sub-history being searched
    when time ran out.
    """

    result: str
    key: Any = None
    prefix: tuple[Operation, ...] = ()
    blocked_op: Operation | None = None
    elapsed: float = 0.0


class Model(Protocol):
    """A sequential specification: the object the recorded operations ran against.

    ``step`` must depend only on the operation's kind, key, input and output (and whether it
    is pending), and states must be hashable: the search caches them.
    """

    def check_op(self, op: Operation) -> None:
        """Raise ValueError, naming the field, if ``op`` is malformed for this model."""

    def partition(self, ops: list[Operation]) -> dict[Hashable, list[Operation]]:
        """Split ``ops`` into sub-histories that can be checked independently."""

    def init(self) -> Hashable:
        """The state before any operation."""

    def step(self, state: Hashable, op: Operation) -> tuple[bool, Hashable]:
        """Whether ``op``, with its recorded output, can run in ``state``; and the state after."""


class KVModel:
    """A key-value store of strings: a missing key reads as "", append concatenates, and
    cas (expected, new) succeeds iff the current value equals expected. Keys are independent."""

    kinds = ("get", "put", "append", "cas")

    def check_op(self, op: Operation) -> None:
        where = f"history row {op.row}"
        if op.kind not in self.kinds:
            raise ValueError(f"{where}: kind must be one of {', '.join(map(repr, self.kinds))}, got {op.kind!r}")
        try:
            hash(op.key)
        except TypeError:
            raise ValueError(f"{where}: key must be hashable, got {op.key!r}") from None
        if op.kind in ("put", "append") and not isinstance(op.input, str):
            raise ValueError(f"{where}: input of a {op.kind} must be a string, got {op.input!r}")
        if op.kind == "cas":
            if not (isinstance(op.input, (tuple, list)) and len(op.input) == 2
                    and all(isinstance(v, str) for v in op.input)):
                raise ValueError(f"{where}: input of a cas must be (expected, new) strings, got {op.input!r}")
            if not op.pending and not isinstance(op.output, (bool, np.bool_)):
                raise ValueError(f"{where}: output of a completed cas must be True or False, got {op.output!r}")
        if op.kind == "get" and not op.pending and not isinstance(op.output, str):
            raise ValueError(f"{where}: output of a completed get must be the string read, got {op.output!r}")

    def partition(self, ops: list[Operation]) -> dict[Hashable, list[Operation]]:
        by_key: dict[Hashable, list[Operation]] = {}
        for op in ops:
            # a get that never returned read nothing anyone saw and changed nothing
            if not (op.kind == "get" and op.pending):
                by_key.setdefault(op.key, []).append(op)
        return by_key

    def init(self) -> str:
        return ""

    def step(self, value: str, op: Operation) -> tuple[bool, str]:
        if op.kind == "get":
            return op.pending or op.output == value, value
        if op.kind == "put":
            return True, op.input
        if op.kind == "append":
            return True, value + op.input
        expected, new = op.input
        if op.pending:  # the reply was lost: it did whatever the current value dictated
            return True, new if value == expected else value
        if value == expected:
            return bool(op.output), new
        return not op.output, value


_MODELS = {"kv": KVModel}


def check_linearizable(history, model: str | Model = "kv", time_budget: float | None = 10.0) -> LinearizabilityResult:
    """Whether ``history`` is linearizable with respect to ``model``.

    ``history`` is a DataFrame or a sequence of dicts or records with the fields ``client``,
    ``kind``, ``key``, ``input``, ``output``, ``call`` and ``ret`` (None or NaN if the call never
    returned: the operation may then take effect anywhere after its call, or not at all).
    Calls and returns at the same instant count as concurrent. ``model`` is "kv" or an
    object following :class:`Model`; ``time_budget`` is in seconds (None: no limit).
    """
    start = time.monotonic()
    model = _resolve_model(model)
    if time_budget is not None and (isinstance(time_budget, bool) or not isinstance(time_budget, numbers.Real)
                                    or not time_budget > 0):
        raise ValueError(f"time_budget must be a positive number of seconds or None, got {time_budget!r}")
    deadline = None if time_budget is None else start + float(time_budget)
    partitions = model.partition(_operations(history, model))
    # smallest first, so that one pathological key spends what is left of the budget last
    for key, ops in sorted(partitions.items(), key=lambda item: len(item[1])):
        verdict, prefix, blocked_op = _search(ops, model, deadline)
        if verdict != "ok":
            return LinearizabilityResult(verdict, key, prefix, blocked_op, time.monotonic() - start)
    return LinearizabilityResult("ok", elapsed=time.monotonic() - start)


def _resolve_model(model) -> Model:
    if isinstance(model, str):
        if model not in _MODELS:
            raise ValueError(f"model must be one of {', '.join(map(repr, _MODELS))} or a model object, got {model!r}")
        return _MODELS[model]()
    if not all(callable(getattr(model, name, None)) for name in ("check_op", "partition", "init", "step")):
        raise ValueError(f"model must have check_op, partition, init and step methods, got {model!r}")
    return model


def _operations(history, model: Model) -> list[Operation]:
    """The history as checked Operations, in history order."""
    ops = []
    for row, record in enumerate(_records(history)):
        fields = {name: _field(record, name, row) for name in FIELDS}
        call = _time(fields["call"], "call", row)
        ret = None if _missing(fields["ret"]) else _time(fields["ret"], "ret", row)
        if ret is not None and ret < call:
            raise ValueError(f"history row {row}: ret ({ret:g}) is before call ({call:g})")
        op = Operation(row, fields["client"], fields["kind"], fields["key"], fields["input"],
                       None if ret is None else fields["output"], call, ret)
        model.check_op(op)
        ops.append(op)
    return ops


def _records(history):
    if hasattr(history, "columns") and hasattr(history, "to_dict"):  # a DataFrame, without importing pandas
        for name in FIELDS:
            if name not in history.columns:
                raise ValueError(f"history is missing column {name!r}")
        return history.to_dict("records")
    return history


def _field(record, name: str, row: int):
    if isinstance(record, Mapping):
        if name not in record:
            raise ValueError(f"history row {row} has no {name!r} field")
        return record[name]
    if not hasattr(record, name):
        raise ValueError(f"history row {row} has no {name!r} field")
    return getattr(record, name)


def _missing(value) -> bool:
    return value is None or (isinstance(value, numbers.Real) and math.isnan(value))


def _time(value, name: str, row: int) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"history row {row}: {name} must be a finite number, got {value!r}")
    return float(value)


def _search(ops: list[Operation], model: Model, deadline: float | None):
    """Wing and Gong's search over one sub-history: (verdict, prefix, blocked_op)."""
    following, preceding, head = _event_list(ops)

    def unlink(event):
        following[preceding[event]] = following[event]
        preceding[following[event]] = preceding[event]

    def relink(event):  # undoes unlink, if done in the reverse order (as in dancing links)
        following[preceding[event]] = event
        preceding[following[event]] = event

    returned = [not op.pending for op in ops]
    earlier_twin = _earlier_twins(ops)
    unplaced = sum(returned)  # done when every operation that returned is placed
    state, placed_returned, placed_pending = model.init(), 0, 0  # bitsets of placed operations
    # Lowe's cache, extended: a configuration is not worth exploring if one with the same
    # returned operations and state, but a subset of its pending ones, was seen, as pending
    # operations constrain nothing and can always be placed later or left out.
    seen = {(placed_returned, state): [placed_pending]}
    placed = []  # (call event, state and bitsets before it), in linearization order
    fewest_unplaced, best_prefix, blocked_op = None, (), None
    # Each configuration first tries the operations that returned, then the pending ones:
    # configurations with fewer pending operations placed, seen first, prune more.
    event, trying_pending, steps = following[head], False, 0
    # The walk never reaches the tail while an operation that returned is unplaced: its
    # return event is still in the list, and only call events are ever walked past.
    while unplaced:
        steps += 1
        if steps % _STEPS_PER_CLOCK_READ == 0 and deadline is not None and time.monotonic() > deadline:
            return "unknown", (), None
        if event % 2 == 0:  # a call: try placing its operation next
            i = event // 2
            twin = earlier_twin[i]
            if returned[i] == trying_pending or (twin is not None and not placed_pending >> twin & 1):
                event = following[event]
                continue
            ok, new_state = model.step(state, ops[i])
            new_returned = placed_returned | (1 << i) if returned[i] else placed_returned
            new_pending = placed_pending if returned[i] else placed_pending | (1 << i)
            pendings_seen = seen.setdefault((new_returned, new_state), []) if ok else ()
            if not ok or any(earlier & ~new_pending == 0 for earlier in pendings_seen):
                event = following[event]
                continue
            pendings_seen.append(new_pending)
            placed.append((event, state, placed_returned, placed_pending))
            state, placed_returned, placed_pending = new_state, new_returned, new_pending
            unlink(event)
            if returned[i]:
                unlink(event + 1)
                unplaced -= 1
            event, trying_pending = following[head], False
        elif not trying_pending:  # the first return ends the candidates: now the pending ones
            event, trying_pending = following[head], True
        else:  # nothing fits before this return, whose operation had to be placed: undo the last choice
            if fewest_unplaced is None or unplaced < fewest_unplaced:
                fewest_unplaced = unplaced
                best_prefix, blocked_op = tuple(ops[e // 2] for e, *_ in placed), ops[event // 2]
            if not placed:
                return "violation", best_prefix, blocked_op
            event, state, placed_returned, placed_pending = placed.pop()
            trying_pending = not returned[event // 2]
            if returned[event // 2]:
                relink(event + 1)
                unplaced += 1
            relink(event)
            event = following[event]
    return "ok", (), None


def _event_list(ops: list[Operation]):
    """The call and return events in time order, as a doubly linked list: (following, preceding, head).

    Operation i has call event 2i and, if it returned, return event 2i + 1; the head and tail
    sentinels are 2n and 2n + 1. At equal times calls come first, so such operations overlap.
    """
    n = len(ops)
    head, tail = 2 * n, 2 * n + 1
    events = [(op.call, 0, 2 * i) for i, op in enumerate(ops)]
    events += [(op.ret, 1, 2 * i + 1) for i, op in enumerate(ops) if not op.pending]
    order = [head, *(event for _, _, event in sorted(events)), tail]
    following, preceding = [0] * (2 * n + 2), [0] * (2 * n + 2)
    for a, b in zip(order, order[1:]):
        following[a], preceding[b] = b, a
    return following, preceding, head


def _earlier_twins(ops: list[Operation]) -> list[int | None]:
    """For each pending operation, the pending one alike in kind, key and input called just before it.

    Such operations are interchangeable, so the search places them only in the order of their
    calls instead of trying every choice among them.
    """
    earlier_twin, last_alike = [None] * len(ops), {}
    for i in sorted(range(len(ops)), key=lambda i: (ops[i].call, i)):  # the order of the event list
        if ops[i].pending:
            alike = (ops[i].kind, repr(ops[i].key), repr(ops[i].input))
            earlier_twin[i], last_alike[alike] = last_alike.get(alike), i
    return earlier_twin
