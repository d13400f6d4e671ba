"""Sharding schemes, measured as the SUPSI consistent-hashing benchmark suite measures
them (lookup time, balance, keys moved on resize, monotonicity, memory), on this machine.

    .venv/bin/python benchmarks/bench_sharding.py            # 1,000,000 keys, about 20 s on 2 cores
    .venv/bin/python benchmarks/bench_sharding.py --quick    # 100,000 keys, about 10 s

Keys are uniform random 64-bit integers in one numpy array. Lookup is the whole
``place(keys)`` call (argument checks, hashing and the output array included), best
of 5 taken in rounds over every scheme (so a slow spell of a shared machine hits all
alike), with the garbage collector off; the first call, which compiles the numba
kernels or loads them from numba's cache, is reported apart. Balance is std/mean
(population std) and max/mean of the keys per shard, next to the theory line:
``ring_load_cv`` for the rings, the multinomial's ``uniform_load_cv`` for schemes that
give each key a uniform shard. "moved" is the share of keys that change shard when
shard N joins or the highest id leaves (the SUPSI suite removes from the top), over
the ideal 1/(N+1) or 1/N; "extra" is the share that moved without having to (0 for a
monotone scheme). Memory is the bytes of the scheme's arrays.

The peers answer one key a call, so they get a prepared list of Python ints, their
fastest form: uhashring (a ketama-style ring on md5, the same 100 vnodes) and
jump-consistent-hash (C; it takes the key as it is, where this hashes it first).
Then hot keys: a Zipf stream over 100 shards, plain, with its hottest keys salted,
with bounded loads, and with one or two hashed choices; and one or two choices on a
uniform stream over 1000 shards, where the excess over the mean is the whole story.
"""
from __future__ import annotations

import argparse
import gc
import time
from importlib.metadata import version

import numpy as np

from mlsys_ext import describe_machine
from mlsys_ext.distributed import (
    BoundedLoadConsistentHashing, ConsistentHashRing, JumpHash, MaglevHashing, ModuloSharding, RangeSharding,
    RendezvousHashing, hottest, keys_moved, load_balance, power_of_two_choices, ring_load_cv, salt_keys,
    uniform_load_cv, zipf_keys,
)

VNODES = 100
EPS = 0.1  # bounded loads: below the ring's own max/mean at v = 100 (about 1.2), so the bound binds
REPEATS = 5
PEER_KEYS = 100_000
SCHEMES = {
    "range": lambda n: RangeSharding(n),
    "modulo": lambda n: ModuloSharding(n),
    f"ring v={VNODES}": lambda n: ConsistentHashRing(n, vnodes=VNODES),
    "jump": lambda n: JumpHash(n),
    "rendezvous": lambda n: RendezvousHashing(n),
    "maglev M=65537": lambda n: MaglevHashing(n),
    f"bounded v={VNODES} eps={EPS}": lambda n: BoundedLoadConsistentHashing(n, vnodes=VNODES, eps=EPS),
}


def interleaved_best_seconds(actions: dict, repeats: int = REPEATS) -> dict:
    """Best of ``repeats`` timings of each action, taken in rounds over all of them, so a
    slow spell of a shared machine hits every action alike; the garbage collector off."""
    best = dict.fromkeys(actions, float("inf"))
    gc.collect()
    gc.disable()
    try:
        for _ in range(repeats):
            for name, action in actions.items():
                start = time.perf_counter()
                action()
                best[name] = min(best[name], time.perf_counter() - start)
    finally:
        gc.enable()
    return best


def theory(name: str, n: int, k: int) -> str:
    if name.startswith("ring"):
        return f"{ring_load_cv(n, VNODES, k):.4f}"
    if name.startswith("bounded"):
        return "capped"
    return f"{uniform_load_cv(n, k):.4f}"


def scheme_rows(keys: np.ndarray) -> list[str]:
    header = (f"{'scheme':<22}{'N':>4}{'M keys/s':>10}{'1st call':>10}{'std/mean':>10}{'theory':>8}"
              f"{'max/mean':>10}{'add moved':>11}{'extra':>8}{'rm moved':>10}{'extra':>8}{'memory':>10}")
    lines = [header, f"{'':<22}{'':>4}{'':>10}{'s':>10}{'':>10}{'':>8}{'':>10}{'/ideal':>11}{'%':>8}"
                     f"{'/ideal':>10}{'%':>8}{'KiB':>10}"]
    schemes, first_call = {}, {}
    for n in (10, 100):
        for name, make in SCHEMES.items():
            scheme = schemes[name, n] = make(n)
            start = time.perf_counter()
            scheme.place(keys[:1000])
            first_call[name, n] = time.perf_counter() - start
    seconds = interleaved_best_seconds({case: (lambda s=scheme: s.place(keys)) for case, scheme in schemes.items()})
    for (name, n), scheme in schemes.items():
        balance = load_balance(scheme, keys)
        add, remove = keys_moved(scheme, keys, "add"), keys_moved(scheme, keys, "remove")
        lines.append(f"{name:<22}{n:>4}{len(keys) / seconds[name, n] / 1e6:>10.1f}{first_call[name, n]:>10.3f}"
                     f"{balance.std_over_mean:>10.4f}{theory(name, n, len(keys)):>8}{balance.max_over_mean:>10.3f}"
                     f"{add.moved_over_ideal:>11.3f}{100 * add.not_monotone:>8.2f}"
                     f"{remove.moved_over_ideal:>10.3f}{100 * remove.not_monotone:>8.2f}"
                     f"{scheme.memory_bytes / 1024:>10.1f}")
    return lines


def peer_rows(keys: np.ndarray) -> list[str]:
    keys = keys[:PEER_KEYS]
    as_ints = keys.tolist()
    actions, labels = {}, []
    try:
        import uhashring
    except ImportError:
        labels.append("  uhashring: not installed (pip install uhashring)")
    else:
        for n in (10, 100):
            peer, ours = uhashring.HashRing(nodes=list(range(n)), vnodes=VNODES), ConsistentHashRing(n, vnodes=VNODES)
            actions[f"ring v={VNODES} N={n:<3}", f"uhashring {version('uhashring')}"] = \
                lambda peer=peer: [peer.get_node(k) for k in as_ints]
            actions[f"ring v={VNODES} N={n:<3}", "this"] = lambda ours=ours: ours.place(keys)
    try:
        import jump
    except ImportError:
        labels.append("  jump-consistent-hash: not installed (pip install jump-consistent-hash)")
    else:
        for n in (10, 100):
            ours = JumpHash(n)
            ours.place(keys[:10])
            actions[f"jump N={n:<3}", f"jump-consistent-hash {version('jump-consistent-hash')}"] = \
                lambda n=n: [jump.hash(k, n) for k in as_ints]
            actions[f"jump N={n:<3}", "this"] = lambda ours=ours: ours.place(keys)
    seconds = interleaved_best_seconds(actions, 3)
    lines = [f"lookup rate on {len(keys):,} keys (M keys/s, best of 3), one key a call for the peers, "
             "a prepared list of Python ints (jump-consistent-hash takes the key as it is; this hashes it first):"]
    for case in dict.fromkeys(case for case, _ in actions):
        (peer, peer_s), (_, our_s) = [(who, seconds[c, who]) for c, who in actions if c == case]
        lines.append(f"  {case}: {peer} {len(keys) / peer_s / 1e6:.3f}, this {len(keys) / our_s / 1e6:.1f} "
                     f"({peer_s / our_s:,.0f}x)")
    return lines + labels


def hot_key_rows(n_keys: int) -> list[str]:
    n, skew, universe = 100, 1.1, 1_000_000
    keys = zipf_keys(n_keys, skew, universe, seed=0)
    ring = ConsistentHashRing(n, vnodes=VNODES)
    hot = hottest(keys, 10)
    share = np.isin(keys, hot).mean()
    one = np.bincount(power_of_two_choices(keys, n, choices=1), minlength=n)
    two = np.bincount(power_of_two_choices(keys, n, choices=2), minlength=n)
    mean = n_keys / n
    rows = [("ring, plain", load_balance(ring, keys).max_over_mean),
            ("ring, 10 hottest keys salted x16", load_balance(ring, salt_keys(keys, hot, 16)).max_over_mean),
            (f"bounded loads eps={EPS}", load_balance(BoundedLoadConsistentHashing(n, vnodes=VNODES, eps=EPS),
                                                      keys).max_over_mean),
            ("one hashed choice (stream)", one.max() / mean),
            ("power of two choices (stream)", two.max() / mean)]
    lines = [f"hot keys: Zipf({skew}) over {universe:,} ranks, {n_keys:,} keys on {n} shards; "
             f"the hottest key is {np.mean(keys == hot[0]):.1%} of the stream, the 10 hottest {share:.1%}:"]
    lines += [f"  {label:<34} max/mean {value:.3f}" for label, value in rows]
    wide = 1000  # heavily loaded balls into bins: one choice's excess grows as sqrt(K/N ln N), two choices' as ln ln N
    uniform = np.random.default_rng(1).integers(0, 2**64, size=n_keys, dtype=np.uint64)
    lines.append(f"the same on {n_keys:,} uniform keys and {wide} shards (mean {n_keys // wide:,} a shard):")
    for choices, label in ((1, "one hashed choice"), (2, "power of two choices")):
        loads = np.bincount(power_of_two_choices(uniform, wide, choices=choices), minlength=wide)
        lines.append(f"  {label:<34} max/mean {loads.max() * wide / n_keys:.4f} "
                     f"(max - mean = {loads.max() - n_keys / wide:.0f} keys)")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 keys instead of 1,000,000")
    n_keys = 100_000 if parser.parse_args().quick else 1_000_000
    print(describe_machine(), end="\n\n")
    keys = np.random.default_rng(0).integers(0, 2**64, size=n_keys, dtype=np.uint64)
    print(f"sharding schemes, {n_keys:,} uniform 64-bit keys (lookup: whole place() call, best of {REPEATS})")
    print("\n".join(scheme_rows(keys)))
    print()
    print("\n".join(peer_rows(keys)))
    print()
    print("\n".join(hot_key_rows(n_keys)))


if __name__ == "__main__":
    main()
