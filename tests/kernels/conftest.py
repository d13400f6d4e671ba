import os
import subprocess
import sys
import textwrap


def run_under_cudasim(code: str, timeout: float = 240.0) -> str:
    """Run ``code`` in a fresh interpreter with numba's CUDA simulator on; its stdout.

    The variable must be set before numba is first imported, hence the subprocess.
    Keep launches to a few thousand threads: the simulator runs each one in Python.
    """
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout
