"""The schedulers' state machine in numba: ``plan`` picks what the next iteration runs,
the caller runs it (the cost model in ``run``, the real model in ``serve``), and
``advance`` acknowledges it at the time it ended. Nothing here checks its input.

State is kept in arrays (requests in arrival order): ``req`` int64 (n, R_FIELDS),
``times`` float64 (n, 3), a ring-buffer ``queue`` of request indices (n,), the
``running`` requests in admission order (max_seqs,) and scalars ``scal`` (S_FIELDS,).
A plan is written into ``entries`` (max_seqs, 2): request index and tokens prefilled
(0: decodes one token; -1: a finished member of a static batch computed as padding),
and the requests preempted or swapped in while planning into ``events`` (n, 2).
"""
from __future__ import annotations

import numpy as np
from numba import njit

# req columns
PROMPT, OUTPUT, TO_PREFILL, PREFILLED, GENERATED, IN_KV, KV, PREEMPTIONS, SWAPPED = range(9)
R_FIELDS = 9
# times columns
ARRIVAL, FIRST_TOKEN, FINISH = range(3)
# scal entries
Q_HEAD, Q_LEN, N_RUN, NEXT_ARRIVAL, USED, DONE = range(6)
S_FIELDS = 6
# params: int64 array
STATIC, MAX_SEQS, MAX_TOKENS, CHUNK, KV_BUDGET, BLOCK, MAX_OUTPUT, SWAP = range(8)
P_FIELDS = 8
# plan results: int64 array
P_ENTRIES, P_DECODE_SEQS, P_PREFILL_TOKENS, P_KV_READ, P_SWAP_TOKENS, P_EVENTS, P_PAIRS = range(7)
P_SIZE = 7
# events: (request, kind)
PREEMPTED, SWAPPED_IN = 0, 1
# cost: float64 array
C_OVERHEAD, C_PER_TOKEN, C_PER_PAIR, C_WEIGHTS, C_PER_KV_TOKEN, C_PER_SWAP_TOKEN = range(6)
# timeline columns (float64)
TIMELINE_COLUMNS = ("start", "end", "prefill_tokens", "decode_seqs", "attention_pairs", "kv_read", "kv_tokens",
                    "preempted", "swap_tokens")


@njit(cache=True)
def new_state(arrival, prompt, output, max_seqs):
    n = arrival.size
    req = np.zeros((n, R_FIELDS), np.int64)
    req[:, PROMPT] = prompt
    req[:, OUTPUT] = output
    req[:, TO_PREFILL] = prompt
    times = np.full((n, 3), np.nan)
    times[:, ARRIVAL] = arrival
    return req, times, np.zeros(max(n, 1), np.int64), np.zeros(max_seqs, np.int64), np.zeros(S_FIELDS, np.int64)


@njit(cache=True)
def _kv_need(req, r, tokens, params):
    """KV tokens request r must hold for ``tokens`` of context: whole blocks (paged), or its
    prompt plus max_output, reserved up front: the scheduler cannot know its output length."""
    block = params[BLOCK]
    if block == 0:
        return req[r, PROMPT] + params[MAX_OUTPUT]
    return -(-tokens // block) * block


@njit(cache=True)
def _hold(req, r, tokens, params, scal):
    need = _kv_need(req, r, tokens, params)
    if need > req[r, KV]:
        scal[USED] += need - req[r, KV]
        req[r, KV] = need


@njit(cache=True)
def _fits(req, r, tokens, params, scal):
    return _kv_need(req, r, tokens, params) - req[r, KV] <= params[KV_BUDGET] - scal[USED]


@njit(cache=True)
def _push_front(queue, scal, r):
    scal[Q_HEAD] = (scal[Q_HEAD] - 1) % queue.size
    queue[scal[Q_HEAD]] = r
    scal[Q_LEN] += 1


@njit(cache=True)
def _pop_front(queue, scal):
    r = queue[scal[Q_HEAD]]
    scal[Q_HEAD] = (scal[Q_HEAD] + 1) % queue.size
    scal[Q_LEN] -= 1
    return r


@njit(cache=True)
def _preempt_newest(req, running, queue, scal, params, events, result):
    """Recompute drops the newest running request's KV (it prefills its prompt and output so
    far again); swap moves its KV out (it is moved back in when readmitted)."""
    scal[N_RUN] -= 1
    victim = running[scal[N_RUN]]
    scal[USED] -= req[victim, KV]
    req[victim, KV] = 0
    req[victim, PREEMPTIONS] += 1
    if params[SWAP]:
        req[victim, SWAPPED] = 1
        result[P_SWAP_TOKENS] += req[victim, IN_KV]
    else:
        req[victim, IN_KV] = 0
        req[victim, PREFILLED] = 0
        req[victim, TO_PREFILL] = req[victim, PROMPT] + req[victim, GENERATED]
    _push_front(queue, scal, victim)
    events[result[P_EVENTS], 0] = victim
    events[result[P_EVENTS], 1] = PREEMPTED
    result[P_EVENTS] += 1


@njit(cache=True)
def _decoding(req, r):
    return req[r, PREFILLED] == req[r, TO_PREFILL] and 0 < req[r, GENERATED] < req[r, OUTPUT]


@njit(cache=True)
def _add(entries, result, r, take, stored):
    """Request r runs ``take`` tokens (0 or -1: one decode) after ``stored`` tokens of KV:
    it reads them all, and each new token attends to every earlier one and itself."""
    entries[result[P_ENTRIES], 0] = r
    entries[result[P_ENTRIES], 1] = take
    result[P_ENTRIES] += 1
    new = max(take, 1)
    result[P_KV_READ] += stored + new
    result[P_PAIRS] += new * stored + new * (new + 1) // 2
    if take > 0:
        result[P_PREFILL_TOKENS] += take
    else:
        result[P_DECODE_SEQS] += 1


@njit(cache=True)
def plan(req, times, queue, running, scal, params, wait, now, entries, events, result):
    """Fill ``entries`` with the next iteration and ``result`` with its totals. Returns the
    time to call again when nothing can run now (an arrival or a batching deadline), else now."""
    result[:] = 0
    n = req.shape[0]
    while scal[NEXT_ARRIVAL] < n and times[scal[NEXT_ARRIVAL], ARRIVAL] <= now:
        queue[(scal[Q_HEAD] + scal[Q_LEN]) % queue.size] = scal[NEXT_ARRIVAL]
        scal[Q_LEN] += 1
        scal[NEXT_ARRIVAL] += 1
    next_arrival = times[scal[NEXT_ARRIVAL], ARRIVAL] if scal[NEXT_ARRIVAL] < n else np.inf
    if params[STATIC]:
        return _plan_static(req, times, queue, running, scal, params, wait, now, entries, result, next_arrival)
    return _plan_continuous(req, queue, running, scal, params, now, entries, events, result, next_arrival)


@njit(cache=True)
def _plan_static(req, times, queue, running, scal, params, wait, now, entries, result, next_arrival):
    if scal[N_RUN] > 0:  # the batch decodes in lockstep; finished members are computed as padding
        for i in range(scal[N_RUN]):
            r = running[i]
            _add(entries, result, r, 0 if req[r, GENERATED] < req[r, OUTPUT] else -1, req[r, IN_KV])
        return now
    ready = scal[Q_LEN] >= params[MAX_SEQS] or (
        scal[Q_LEN] > 0 and now >= times[queue[scal[Q_HEAD]], ARRIVAL] + wait)
    if not ready:
        deadline = times[queue[scal[Q_HEAD]], ARRIVAL] + wait if scal[Q_LEN] > 0 else np.inf
        return min(next_arrival, deadline)
    while scal[Q_LEN] > 0 and scal[N_RUN] < params[MAX_SEQS]:
        r = queue[scal[Q_HEAD]]
        if not _fits(req, r, 0, params, scal):
            break
        _pop_front(queue, scal)
        _hold(req, r, 0, params, scal)
        running[scal[N_RUN]] = r
        scal[N_RUN] += 1
        _add(entries, result, r, req[r, PROMPT], 0)  # one iteration prefills every prompt
    return now


@njit(cache=True)
def _prefill_take(req, r, tokens_left, params):
    left = req[r, TO_PREFILL] - req[r, PREFILLED]
    take = min(left, tokens_left)
    if params[CHUNK] > 0:
        take = min(take, params[CHUNK])
    return take


@njit(cache=True)
def _plan_continuous(req, queue, running, scal, params, now, entries, events, result, next_arrival):
    while True:
        # decodes first: each stores one more token of KV; when no block is left, the newest
        # running request is preempted (possibly the one asking)
        i = 0
        while i < scal[N_RUN]:
            r = running[i]
            if _decoding(req, r):
                while scal[N_RUN] > i and not _fits(req, r, req[r, IN_KV] + 1, params, scal):
                    _preempt_newest(req, running, queue, scal, params, events, result)
                if scal[N_RUN] > i:
                    _hold(req, r, req[r, IN_KV] + 1, params, scal)
                    _add(entries, result, r, 0, req[r, IN_KV])
            i += 1
        tokens_left = params[MAX_TOKENS] - result[P_DECODE_SEQS]
        for i in range(scal[N_RUN]):  # admitted earlier, still prefilling in chunks
            r = running[i]
            if req[r, PREFILLED] < req[r, TO_PREFILL] and tokens_left > 0:
                take = _prefill_take(req, r, tokens_left, params)
                if _fits(req, r, req[r, IN_KV] + take, params, scal):
                    _hold(req, r, req[r, IN_KV] + take, params, scal)
                    _add(entries, result, r, take, req[r, IN_KV])
                    tokens_left -= take
        while scal[Q_LEN] > 0 and scal[N_RUN] < params[MAX_SEQS] and tokens_left > 0:
            r = queue[scal[Q_HEAD]]
            if req[r, SWAPPED]:
                # swapped out: its KV comes back whole, with room for its next step, then it
                # continues where it stopped
                decoding = _decoding(req, r)
                need = req[r, IN_KV] + 1 if decoding else req[r, TO_PREFILL]
                if not _fits(req, r, need, params, scal):
                    break
                _pop_front(queue, scal)
                _hold(req, r, need, params, scal)
                req[r, SWAPPED] = 0
                result[P_SWAP_TOKENS] += req[r, IN_KV]
                events[result[P_EVENTS], 0] = r
                events[result[P_EVENTS], 1] = SWAPPED_IN
                result[P_EVENTS] += 1
                running[scal[N_RUN]] = r
                scal[N_RUN] += 1
                take = 0 if decoding else _prefill_take(req, r, tokens_left, params)
                _add(entries, result, r, take, req[r, IN_KV])
                tokens_left -= max(take, 1)
                continue
            take = _prefill_take(req, r, tokens_left, params)
            if params[CHUNK] == 0 and take < req[r, TO_PREFILL]:
                # unchunked prompts go whole or wait; a recomputed prompt longer than the
                # budget goes alone, the only way it can make progress
                if result[P_ENTRIES] > 0:
                    break
                take = req[r, TO_PREFILL]
            # admitted with blocks for its whole prompt (as vLLM allocates): half-prefilled
            # requests never wait for memory, so chunks cannot deadlock each other
            if not _fits(req, r, req[r, TO_PREFILL], params, scal):
                break
            _pop_front(queue, scal)
            running[scal[N_RUN]] = r
            scal[N_RUN] += 1
            _hold(req, r, req[r, TO_PREFILL], params, scal)
            _add(entries, result, r, take, 0)
            tokens_left -= take
        if result[P_ENTRIES] > 0 or result[P_SWAP_TOKENS] > 0:
            return now
        if scal[N_RUN] > 0:  # not expected (prompts are admitted whole), but never wait forever: free the newest
            _preempt_newest(req, running, queue, scal, params, events, result)
            continue
        return next_arrival


@njit(cache=True)
def advance(req, times, running, scal, params, end, entries, result):
    """The planned iteration ended at ``end``: tokens are stored and emitted, and finished
    requests leave (a static batch leaves when its last member is done)."""
    for e in range(result[P_ENTRIES]):
        r, take = entries[e, 0], entries[e, 1]
        if take < 0:
            continue
        if take == 0:
            req[r, IN_KV] += 1
            req[r, GENERATED] += 1
        else:
            req[r, PREFILLED] += take
            req[r, IN_KV] += take
            if req[r, PREFILLED] == req[r, TO_PREFILL]:
                req[r, GENERATED] += 1  # the pass over the last prompt token yields the next token
                if req[r, GENERATED] == 1:
                    times[r, FIRST_TOKEN] = end
        if req[r, GENERATED] == req[r, OUTPUT] and np.isnan(times[r, FINISH]):
            times[r, FINISH] = end
            scal[DONE] += 1
    if params[STATIC]:
        for i in range(scal[N_RUN]):
            if np.isnan(times[running[i], FINISH]):
                return
        for i in range(scal[N_RUN]):
            req[running[i], KV] = 0
        scal[N_RUN] = 0
        scal[USED] = 0
        return
    kept = 0
    for i in range(scal[N_RUN]):
        r = running[i]
        if np.isnan(times[r, FINISH]):
            running[kept] = r
            kept += 1
        else:
            scal[USED] -= req[r, KV]
            req[r, KV] = 0
    scal[N_RUN] = kept


@njit(cache=True)
def iteration_seconds(cost, prefill_tokens, decode_seqs, attention_pairs, kv_read, swap_tokens):
    compute = cost[C_PER_TOKEN] * (prefill_tokens + decode_seqs) + cost[C_PER_PAIR] * attention_pairs
    memory = cost[C_WEIGHTS] + cost[C_PER_KV_TOKEN] * kv_read
    return cost[C_OVERHEAD] + max(compute, memory) + cost[C_PER_SWAP_TOKEN] * swap_tokens


@njit(cache=True)
def run(arrival, prompt, output, params, wait, cost):
    """Every request served under the cost model: (req, times, timeline rows)."""
    req, times, queue, running, scal = new_state(arrival, prompt, output, params[MAX_SEQS])
    n = arrival.size
    entries = np.zeros((params[MAX_SEQS], 2), np.int64)
    events = np.zeros((max(n, 1), 2), np.int64)
    result = np.zeros(P_SIZE, np.int64)
    timeline = np.empty((max(1024, 4 * n), len(TIMELINE_COLUMNS)))
    rows = 0
    now = 0.0
    while scal[DONE] < n:
        wake = plan(req, times, queue, running, scal, params, wait, now, entries, events, result)
        if result[P_ENTRIES] == 0 and result[P_SWAP_TOKENS] == 0:
            now = max(now, wake)
            continue
        step = iteration_seconds(cost, result[P_PREFILL_TOKENS], result[P_DECODE_SEQS], result[P_PAIRS],
                                 result[P_KV_READ], result[P_SWAP_TOKENS])
        if rows == timeline.shape[0]:
            grown = np.empty((2 * rows, timeline.shape[1]))
            grown[:rows] = timeline
            timeline = grown
        preempted = 0
        for e in range(result[P_EVENTS]):
            if events[e, 1] == PREEMPTED:
                preempted += 1
        row = timeline[rows]
        row[0], row[1], row[2], row[3] = now, now + step, result[P_PREFILL_TOKENS], result[P_DECODE_SEQS]
        row[4], row[5], row[6] = result[P_PAIRS], result[P_KV_READ], scal[USED]
        row[7], row[8] = preempted, result[P_SWAP_TOKENS]
        rows += 1
        now += step
        advance(req, times, running, scal, params, now, entries, result)
    return req, times, timeline[:rows]
