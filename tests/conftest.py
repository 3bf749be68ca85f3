"""Test set-up: 8 fake CPU devices, so mesh tests run on this machine (set before jax loads); a
persistent compilation cache private to this checkout and shared with the command-line runs the
tests start; and `scaled`, for the few waits that cannot avoid the wall clock."""
import os
import statistics
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Under the checkout's ignored build directory, not the shared temp directory: a cache there is
# shared by every checkout, user and concurrent run on the machine (and may belong to another user).
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.join(ROOT, "build", "test-compilation-cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

# Wall time of the probe below on an unloaded 2-core development machine.
_PROBE_REFERENCE_S = 0.01


def _probe() -> float:
  start = time.perf_counter()
  sum(i * i for i in range(100_000))
  return time.perf_counter() - start


def slowness() -> float:
  """How many times slower than the reference machine this one runs Python right now (>= 1):
  its speed and its current load together, measured, so that a wait scaled by it means the same
  amount of work on any machine."""
  return max(1.0, statistics.median(_probe() for _ in range(5)) / _PROBE_REFERENCE_S)


@pytest.fixture
def scaled():
  """scaled(seconds): a wall-clock wait for `seconds` of reference-machine work, stretched by
  `slowness` measured at the start of the test. Use it only where no clock but the wall exists
  (waiting for another process to act); assert on CPU time or on outcomes everywhere else."""
  factor = slowness()
  return lambda seconds: seconds * factor
