"""check_linearizable: classic histories, pending operations, violation reports, per-key
partitioning, the time budget, malformed histories, other models, and property tests on
histories recorded from real sequential executions."""
import math
import random

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsys_ext.raft._linearizability import FIELDS, KVModel, Operation, check_linearizable


def op(kind, key, input, output, call, ret, client=0):
    return dict(client=client, kind=kind, key=key, input=input, output=output, call=call, ret=ret)


def put(key, value, call, ret, client=0):
    return op("put", key, value, None, call, ret, client)


def append(key, value, call, ret, client=0):
    return op("append", key, value, None, call, ret, client)


def get(key, value, call, ret, client=0):
    return op("get", key, None, value, call, ret, client)


def cas(key, expected, new, succeeded, call, ret, client=0):
    return op("cas", key, (expected, new), succeeded, call, ret, client)


def verdict(history, **kwargs):
    return check_linearizable(history, **kwargs).result


# -- classic histories -------------------------------------------------------------


@pytest.mark.parametrize("seen", ["", "1"])
def test_a_get_concurrent_with_a_put_may_see_the_old_or_the_new_value(seen):
    assert verdict([put("x", "1", 0, 10), get("x", seen, 2, 3)]) == "ok"


def test_a_get_of_a_value_never_written_is_a_violation():
    result = check_linearizable([put("x", "1", 0, 10), get("x", "2", 2, 3, client=1)])
    assert result.result == "violation"
    assert result.key == "x"
    assert result.blocked_op.row == 1


def test_a_missing_key_reads_as_empty():
    assert verdict([get("x", "", 0, 1)]) == "ok"
    assert verdict([get("x", "1", 0, 1)]) == "violation"


@pytest.mark.parametrize("history", [
    [put("x", "1", 0, 1), get("x", "", 2, 3)],
    [put("x", "1", 0, 1), put("x", "2", 2, 3), get("x", "1", 4, 5)],
    # the second get starts after the first returned, so it cannot see an older value
    [put("x", "1", 0, 10), get("x", "1", 1, 2), get("x", "", 3, 4)],
], ids=["empty after put", "old after overwrite", "new then old"])
def test_a_stale_read_after_a_completed_write_is_a_violation(history):
    result = check_linearizable(history)
    assert result.result == "violation"
    assert result.blocked_op.row == len(history) - 1


@pytest.mark.parametrize("read, expected", [("ab", "ok"), ("ba", "ok"), ("a", "violation"), ("abb", "violation")])
def test_overlapping_appends_take_effect_in_either_order(read, expected):
    history = [append("x", "a", 0, 5), append("x", "b", 1, 6, client=1), get("x", read, 7, 8)]
    assert verdict(history) == expected


def test_sequential_appends_take_effect_in_order():
    history = [append("x", "a", 0, 1), append("x", "b", 2, 3), get("x", "ba", 4, 5)]
    assert verdict(history) == "violation"


@pytest.mark.parametrize("history, expected", [
    ([put("x", "1", 0, 1), cas("x", "1", "2", True, 2, 3), get("x", "2", 4, 5)], "ok"),
    ([put("x", "1", 0, 1), cas("x", "0", "2", False, 2, 3), get("x", "1", 4, 5)], "ok"),
    ([cas("x", "", "1", True, 0, 1), get("x", "1", 2, 3)], "ok"),
    ([put("x", "1", 0, 1), cas("x", "1", "2", False, 2, 3)], "violation"),
    ([put("x", "1", 0, 1), cas("x", "0", "2", True, 2, 3)], "violation"),
    ([put("x", "1", 0, 1), cas("x", "0", "2", False, 2, 3), get("x", "2", 4, 5)], "violation"),
    # two concurrent cas from the same value: only one can win
    ([cas("x", "", "a", True, 0, 5), cas("x", "", "b", True, 1, 6, client=1)], "violation"),
    ([cas("x", "", "a", True, 0, 5), cas("x", "", "b", False, 1, 6, client=1), get("x", "a", 7, 8)], "ok"),
], ids=["success", "failure", "on a missing key", "false failure", "false success", "failure with effect",
        "two winners", "one winner"])
def test_cas(history, expected):
    assert verdict(history) == expected


# -- operations that never returned -------------------------------------------------


@pytest.mark.parametrize("seen", ["", "1"])
def test_a_pending_put_may_or_may_not_take_effect(seen):
    assert verdict([put("x", "1", 0, None), get("x", seen, 5, 6)]) == "ok"


def test_a_pending_put_cannot_take_effect_twice_or_be_undone():
    history = [put("x", "1", 0, None), get("x", "1", 5, 6), get("x", "", 7, 8)]
    assert verdict(history) == "violation"


def test_a_pending_operation_cannot_take_effect_before_its_call():
    assert verdict([get("x", "1", 0, 1), put("x", "1", 2, None)]) == "violation"


@pytest.mark.parametrize("seen, expected", [("", "ok"), ("1", "ok"), ("2", "violation")])
def test_a_pending_cas_does_whatever_the_value_dictates(seen, expected):
    assert verdict([cas("x", "", "1", None, 0, None), get("x", seen, 5, 6)]) == expected


def test_a_pending_cas_cannot_succeed_on_a_value_it_did_not_expect():
    history = [put("x", "0", 0, 1), cas("x", "", "1", None, 2, None), get("x", "1", 5, 6)]
    assert verdict(history) == "violation"


def test_pending_gets_and_nan_returns_from_a_dataframe():
    frame = pd.DataFrame([put("x", "1", 0, None), get("x", None, 1, None), get("x", "1", 5, 6)])
    assert math.isnan(frame["ret"][0])
    assert verdict(frame) == "ok"


def test_many_pending_operations_that_change_nothing_stay_cheap():
    history = [put("x", "0", 0, 1)]
    history += [cas("x", "never", str(i), None, 2 + i, None, client=i) for i in range(60)]
    history += [get("x", "0", 100, 101), get("x", "1", 102, 103)]
    result = check_linearizable(history, time_budget=5.0)
    assert result.result == "violation" and result.elapsed < 1.0


# -- the violation report -----------------------------------------------------------


def replays(prefix, model=KVModel()):
    """The state after running ``prefix`` in order, or None if some step fails."""
    state = model.init()
    for operation in prefix:
        ok, state = model.step(state, operation)
        if not ok:
            return None
    return state


def record(operation):
    """``operation`` as a history row."""
    return {name: getattr(operation, name) for name in FIELDS}


def test_the_report_names_the_key_the_blocked_op_and_a_linearizable_prefix():
    history = [put("x", "1", 0, 1), put("y", "1", 0, 1),
               append("x", "2", 2, 4, client=1), get("x", "12", 3, 5, client=2),
               put("x", "3", 6, 7), get("x", "12", 8, 9, client=1)]
    result = check_linearizable(history)
    assert (result.result, result.key, result.blocked_op.row) == ("violation", "x", 5)
    assert [o.row for o in result.prefix] == [0, 2, 3, 4]
    assert replays(result.prefix) == "3"
    assert not KVModel().step(replays(result.prefix), result.blocked_op)[0]
    assert verdict([record(o) for o in result.prefix]) == "ok"


def test_ok_reports_nothing():
    result = check_linearizable([put("x", "1", 0, 1)])
    assert (result.result, result.key, result.prefix, result.blocked_op) == ("ok", None, (), None)
    assert result.elapsed >= 0


# -- per-key partitioning ----------------------------------------------------------


class SingleRegister(KVModel):
    """Every operation acts on one register, whatever its key."""

    def partition(self, ops):
        return {None: ops}


def test_keys_are_checked_independently():
    history = [put("x", "1", 0, 1), get("y", "", 2, 3)]
    assert verdict(history) == "ok"
    assert verdict(history, model=SingleRegister()) == "violation"


def test_a_violation_on_one_key_among_many_names_that_key():
    history = [put(f"k{i}", str(i), i, i + 1) for i in range(10)]
    history += [get(f"k{i}", str(i), 20 + i, 21 + i) for i in range(10)]
    history[-4]["output"] = "0"
    result = check_linearizable(history)
    assert (result.result, result.key, result.blocked_op.row) == ("violation", "k6", 16)
    assert [o.key for o in result.prefix] == ["k6"]


def test_a_pathological_key_does_not_hide_a_violation_on_a_small_one():
    history = impossible_appends(14, key="slow") + [put("x", "1", 0, 1), get("x", "", 2, 3)]
    assert check_linearizable(history, time_budget=0.05).key == "x"


# -- the time budget ----------------------------------------------------------------


def impossible_appends(n, key="x"):
    """n concurrent appends, then a read no order can produce: every order must be tried."""
    letters = "abcdefghijklmnopqrstuvwxyz"[:n]
    return [append(key, c, 0, 100, client=i) for i, c in enumerate(letters)] + [get(key, "#", 101, 102)]


def test_the_budget_gives_unknown_on_a_pathological_history():
    result = check_linearizable(impossible_appends(14), time_budget=0.05)
    assert (result.result, result.key) == ("unknown", "x")
    assert result.elapsed < 1.0


def test_the_same_search_finishes_when_small_enough():
    assert verdict(impossible_appends(6), time_budget=None) == "violation"


# -- malformed histories --------------------------------------------------------------


@pytest.mark.parametrize("bad, message", [
    (dict(kind="delete"), "kind must be one of 'get', 'put', 'append', 'cas', got 'delete'"),
    (dict(call=5, ret=4), r"ret \(4\) is before call \(5\)"),
    (dict(call=None), "call must be a finite number"),
    (dict(ret="later"), "ret must be a finite number"),
    (dict(input=1), "input of a put must be a string"),
    (dict(kind="cas", input="1", output=True), r"input of a cas must be \(expected, new\) strings"),
    (dict(kind="cas", input=("", "1"), output="yes"), "output of a completed cas must be True or False"),
    (dict(kind="get", output=None), "output of a completed get must be the string read"),
    (dict(key=["x"]), "key must be hashable"),
])
def test_malformed_rows_raise_value_errors_naming_the_row_and_field(bad, message):
    history = [put("x", "1", 0, 1), {**put("x", "2", 2, 3), **bad}]
    with pytest.raises(ValueError, match=f"history row 1: {message}"):
        check_linearizable(history)


def test_a_missing_field_or_column_is_named():
    row = put("x", "1", 0, 1)
    del row["ret"]
    with pytest.raises(ValueError, match="history row 0 has no 'ret' field"):
        check_linearizable([row])
    with pytest.raises(ValueError, match="history is missing column 'ret'"):
        check_linearizable(pd.DataFrame([row]))


@pytest.mark.parametrize("kwargs, message", [
    (dict(model="queue"), "model must be one of 'kv' or a model object, got 'queue'"),
    (dict(model=object()), "model must have check_op, partition, init and step methods"),
    (dict(time_budget=0), "time_budget must be a positive number of seconds or None, got 0"),
    (dict(time_budget="1s"), "time_budget must be a positive number"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        check_linearizable([put("x", "1", 0, 1)], **kwargs)


def test_records_other_than_dicts_and_an_empty_history():
    class Row:
        def __init__(self, **fields):
            self.__dict__.update(fields)

    assert verdict([Row(**put("x", "1", 0, 1)), Row(**get("x", "1", 2, 3))]) == "ok"
    assert verdict([]) == "ok"


# -- another model --------------------------------------------------------------------


class FifoQueue:
    """A FIFO queue: enqueue(value); dequeue outputs the head, or None when empty."""

    def check_op(self, operation):
        if operation.kind not in ("enqueue", "dequeue"):
            raise ValueError(f"history row {operation.row}: kind must be 'enqueue' or 'dequeue'")

    def partition(self, ops):
        return {None: ops}

    def init(self):
        return ()

    def step(self, queue, operation):
        if operation.kind == "enqueue":
            return True, queue + (operation.input,)
        if operation.pending:
            return True, queue[1:]
        return operation.output == (queue[0] if queue else None), queue[1:]


@pytest.mark.parametrize("first, second, expected", [
    ("a", "b", "ok"), ("b", "a", "ok"), ("a", "a", "violation"), ("a", None, "violation")])
def test_a_model_object_plugs_in(first, second, expected):
    history = [op("enqueue", "q", "a", None, 0, 5), op("enqueue", "q", "b", None, 1, 6, client=1),
               op("dequeue", "q", None, first, 7, 8), op("dequeue", "q", None, second, 9, 10)]
    assert verdict(history, model=FifoQueue()) == expected


# -- histories recorded from real sequential executions -----------------------------


def recorded_history(seed, n_ops, n_keys, width, pending_rate, lost_rate=0.0, time_step=1.0):
    """Run ``n_ops`` random operations on a dict one at a time, the k-th at time k * time_step;
    record each with a call and a return stretched randomly up to ``width`` either side of
    that instant. Some replies are lost (ret None, though the operation took effect), and
    some lost operations never took effect at all."""
    rng = random.Random(seed)
    store, history = {}, []
    for k in range(n_ops):
        key, kind = f"k{rng.randrange(n_keys)}", rng.choice(["get", "get", "put", "append", "cas"])
        value, token = store.get(key, ""), rng.choice("abc")
        if kind == "get":
            output = value
        elif kind == "put":
            store[key], output = token, None
        elif kind == "append":
            store[key], output = value + token, None
        else:
            expected = value if rng.random() < 0.5 else rng.choice(["", "a", "b", "c"])
            token, output = (expected, token), value == expected
            if output:
                store[key] = token[1]
        now = k * time_step
        call, ret = now - rng.uniform(0, width), now + rng.uniform(0, width)
        if kind != "get" and rng.random() < pending_rate:
            output = ret = None
        history.append(op(kind, key, None if kind == "get" else token, output, call, ret, client=k % 5))
    for _ in range(int(lost_rate * n_ops)):
        kind = rng.choice(["put", "append", "cas"])
        token = ("", "a") if kind == "cas" else rng.choice("abc")
        history.append(op(kind, f"k{rng.randrange(n_keys)}", token, None, rng.uniform(0, n_ops * time_step), None))
    return history


def histories(pending_rates):
    return st.builds(recorded_history, seed=st.integers(0, 2**32 - 1), n_ops=st.integers(1, 80),
                     n_keys=st.integers(1, 3), width=st.floats(0, 4), pending_rate=st.sampled_from(pending_rates),
                     lost_rate=st.sampled_from([0, 0.05]))


@settings(deadline=None, max_examples=500)
@given(history=histories([0, 0.1, 0.3]))
def test_a_recorded_history_is_linearizable(history):
    assert check_linearizable(history, time_budget=20.0).result == "ok"


@settings(deadline=None, max_examples=500)
# proving a violation tries every placement of the pending operations: keep them few
@given(history=histories([0, 0.05, 0.1]), data=st.data())
def test_a_get_of_a_value_never_written_makes_it_a_violation(history, data):
    gets = [row for row in history if row["kind"] == "get"]
    if not gets:
        gets = [get("k0", "", -10, -9)]
        history = gets + history
    corrupted = data.draw(st.sampled_from(gets))
    corrupted["output"] = "#"  # no operation ever writes '#'
    result = check_linearizable(history, time_budget=20.0)
    assert (result.result, result.key) == ("violation", corrupted["key"])
    assert verdict([record(o) for o in result.prefix]) == "ok"
    assert replays(result.prefix) is not None


def test_integer_times_with_ties_are_linearizable():
    for seed in range(50):
        history = recorded_history(seed, 100, 2, 3, 0.1, lost_rate=0.05, time_step=2.0)
        for row in history:
            row["call"] = round(row["call"])
            row["ret"] = None if row["ret"] is None else round(row["ret"])
        assert verdict(history) == "ok", seed


def test_thousands_of_operations_over_ten_keys_check_fast():
    history = recorded_history(0, 3000, 10, 2.5, 0.01, lost_rate=0.01)
    result = check_linearizable(history)
    assert result.result == "ok"
    assert result.elapsed < 2.0  # about 0.1 s alone; slack for a shared machine


# -- against brute force on small random histories -----------------------------------


def brute_force_linearizable(history):
    """Tries every order of the operations on the whole store (no partitioning by key), and
    every choice of pending operations to leave out."""
    ops = [Operation(row, *(r[name] for name in FIELDS)) for row, r in enumerate(history)]

    def extends(store, remaining):
        if all(o.pending for o in remaining):
            return True
        for o in remaining:
            if any(not p.pending and p.ret < o.call for p in remaining):
                continue  # something that returned before o was called must come first
            ok, value = KVModel().step(store.get(o.key, ""), o)
            if ok and extends({**store, o.key: value}, [p for p in remaining if p is not o]):
                return True
        return False

    return extends({}, ops)


def random_history(rng, n_ops):
    history = []
    for _ in range(n_ops):
        kind, call = rng.choice(["get", "put", "append", "cas"]), rng.randrange(10)
        ret = None if rng.random() < 0.2 else call + rng.randrange(5)
        value = rng.choice(["", "a", "b", "ab"])
        input = {"get": None, "cas": (value, rng.choice(["a", "b"]))}.get(kind, rng.choice("ab"))
        output = {"get": value, "cas": rng.random() < 0.5}.get(kind)
        history.append(op(kind, rng.choice(["x", "x", "y"]), input, None if ret is None else output, call, ret))
    return history


@settings(deadline=None, max_examples=600)
@given(seed=st.integers(0, 2**32 - 1), n_ops=st.integers(1, 6))
def test_agrees_with_brute_force_on_small_histories(seed, n_ops):
    history = random_history(random.Random(seed), n_ops)
    result = check_linearizable(history)
    assert (result.result == "ok") == brute_force_linearizable(history)
    if result.result == "violation":
        state = replays(result.prefix)
        assert state is not None and not KVModel().step(state, result.blocked_op)[0]
        assert {o.key for o in (*result.prefix, result.blocked_op)} == {result.key}
