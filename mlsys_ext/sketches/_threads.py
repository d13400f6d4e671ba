"""Which form of a kernel a batch runs: serial, or split over numba's threads."""
import numba

# Below this many keys a batch takes ~1-2 ms or less on one thread: splitting it buys
# little, and waking the thread team can cost far more on a busy machine.
PARALLEL_MIN_KEYS = 1 << 17


def run(kernels, n_keys: int, *args) -> None:
    """Call ``serial(*args)`` or, for a large batch with several threads available,
    ``parallel(*args, n_threads)``; ``kernels`` is the pair (serial, parallel).
    The thread count is read here, never inside a cached kernel, so it follows
    ``numba.set_num_threads``."""
    serial, parallel = kernels
    n_threads = numba.get_num_threads()
    if n_keys >= PARALLEL_MIN_KEYS and n_threads > 1:
        parallel(*args, n_threads)
    else:
        serial(*args)
