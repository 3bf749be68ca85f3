"""Verdicts do not depend on load: one batch scored on a quiet CPU and on a saturated one.

Everything runs on one CPU (the reward workers, their sandboxes and the busy loops inherit this
thread's affinity), so a few busy loops saturate it on any machine. Each busy loop has its own
session, as another job's processes would: where the scheduler shares a CPU between sessions
before processes (autogroup), loops in this test's session would barely slow the sandboxes, which
have their own. Like the sandboxes, each loop's session takes this test's session's nice value,
so a test run in a niced session stays behind the machine's other work.
The batch holds items that use a large part of their limit: on the saturated CPU they take several
times their limit in wall time, so a wall-clock limit would score them 0.
"""
import contextlib
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from r1jax.rewards.config import RewardConfig
from r1jax.rewards.service import RewardService

pytestmark = pytest.mark.slow

BUSY_LOOPS = 4
# Each busy loop stops by itself after this much wall or CPU time, even if this test is killed.
BUSY_LIFETIME_S = 300
BUSY_LOOP = f"""
import os, resource, time
resource.setrlimit(resource.RLIMIT_CPU, ({BUSY_LIFETIME_S}, {BUSY_LIFETIME_S}))
try:
    with open("/proc/%d/autogroup" % os.getppid()) as f:
        nice = f.read().split()[-1]
    with open("/proc/self/autogroup", "w") as f:
        f.write(nice)
except (OSError, IndexError):
    pass
end = time.monotonic() + {BUSY_LIFETIME_S}
while time.monotonic() < end:
    pass
"""
# Default math limit; code gets 1 s, of which the heaviest program uses 0.4 s.
LIMITS = dict(num_workers=2, code_time_limit_s=1.0)
TESTS = "assert add(1, 2) == 3\nassert add(2, 5) == 7\n"


def _code(body):
  return f"<think>t</think><answer>```python\nimport time\ndef add(a, b):\n    {body}\n" \
         f"    return a + b\n```</answer>"


def _example(data_type, gold):
  return {"prompt": "q", "data_type": data_type, "gold": gold, "difficulty": 1, "source_id": "s"}


BATCH = [
    ("<answer>2\\sqrt{2}</answer>", _example("math", "\\sqrt{8}"), 1.0),
    ("<answer>(x+1)^2</answer>", _example("math", "x^2+2x+1"), 1.0),   # ~0.5 s of sympy, cold
    ("<answer>x^2+2x</answer>", _example("math", "(x+1)^2"), 0.0),
    ("<answer>e^{i\\pi}</answer>", _example("math", "-1"), 1.0),
    ("<answer>\\varnothing</answer>", _example("math", "\\{\\}"), 1.0),
    ("<answer>\\{0\\}</answer>", _example("math", "\\emptyset"), 0.0),
    (_code("pass"), _example("code", TESTS), 1.1),
    (_code("while time.process_time() < 0.4: pass"), _example("code", TESTS), 1.1),
    (_code("time.sleep(0.3)"), _example("code", TESTS), 1.1),
    (_code("return a - b"), _example("code", TESTS), 0.1),
    (_code("while True: pass"), _example("code", TESTS), 0.1),   # a timeout either way
    ("<answer>7</answer>", _example("logic", "8"), 0.0),
]


@contextlib.contextmanager
def _pinned(cpu: int):
  """Pins this thread (and so every process and thread it starts) to one CPU."""
  before = os.sched_getaffinity(0)
  os.sched_setaffinity(0, {cpu})
  try:
    yield
  finally:
    os.sched_setaffinity(0, before)


def _cpu_share(cpu: int, work_s: float = 0.2) -> float:
  """The share of the CPU a process in this session gets now: CPU time over wall time."""
  with _pinned(cpu):
    start, wall = time.thread_time(), time.monotonic()
    while time.thread_time() - start < work_s:
      pass
    return work_s / (time.monotonic() - wall)


def _score(cpu: int, busy: int, scaled):
  """(rewards, timed out, CPU share) with `busy` busy loops on the CPU."""
  loops = []
  try:
    with _pinned(cpu):
      loops = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP], start_new_session=True)
               for _ in range(busy)]
      share = _cpu_share(cpu)
      # Only the wall-clock backstops stretch with the load; the verdicts' clocks do not.
      stretched = lambda seconds: scaled(seconds) / share  # noqa: E731
      # The sandbox's backstop has a config ceiling; a machine that slow still gets the most.
      config = RewardConfig(**LIMITS, code_wall_limit_s=min(stretched(10), 3600.0),
                            item_deadline_s=stretched(60), batch_deadline_s=stretched(600))
      svc = RewardService(config)
    with svc:
      # Start-up imports sympy in each worker: a few seconds of reference work.
      deadline = time.monotonic() + stretched(60)
      while svc.metrics()["workers_ready"] < config.num_workers:
        assert time.monotonic() < deadline, "the reward workers never became ready"
        time.sleep(0.05)
      got = svc.collect(svc.submit([c for c, _, _ in BATCH], [e for _, e, _ in BATCH]))
      return got.reward, got.timed_out, share
  finally:
    for loop in loops:
      loop.kill()
      loop.wait()


def test_saturated_cpu_gives_the_quiet_verdicts(scaled):
  cpu = max(os.sched_getaffinity(0))
  quiet, quiet_timeouts, _ = _score(cpu, 0, scaled)
  np.testing.assert_allclose(quiet, [want for _, _, want in BATCH], rtol=1e-6)
  loaded, loaded_timeouts, share = _score(cpu, BUSY_LOOPS, scaled)
  # At most a third of the CPU: the 0.4 s program then needs more than its 1 s limit of wall time.
  assert share < 1 / 3, f"the busy loops left {share:.0%} of the CPU: the test saw no load"
  np.testing.assert_array_equal(loaded, quiet)
  np.testing.assert_array_equal(loaded_timeouts, quiet_timeouts)
