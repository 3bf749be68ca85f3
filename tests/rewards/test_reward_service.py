"""The reward service: same results as inline, chunked submission in order, stuck workers replaced."""
import os
import signal
import time

import numpy as np
import pytest

from r1jax.rewards import compose
from r1jax.rewards.config import RewardConfig
from r1jax.rewards.service import RewardService

CFG = dict(code_time_limit_s=0.5, math_time_limit_s=0.5, item_deadline_s=3.0)
ADD_TESTS = "assert add(1, 2) == 3\nassert add(0, 0) == 0\n"


def batch():
  def ex(t, g):
    return {"prompt": "q", "data_type": t, "gold": g, "difficulty": 1, "source_id": "s"}
  items = [
      ("<think>a</think><answer>0.5</answer>", ex("math", "\\frac12")),
      ("<think>a</think><answer>```python\ndef add(a, b):\n    return a + b\n```</answer>",
       ex("code", ADD_TESTS)),
      ("<think>a</think><answer>```python\ndef add(a, b):\n    return 3\n```</answer>",
       ex("code", ADD_TESTS)),
      ("no format \\boxed{B}", ex("stem", "B")),
      ("<think>a</think><answer>7</answer>", ex("logic", "8")),
  ]
  return [c for c, _ in items], [e for _, e in items]


def wait_ready(svc, n, timeout=60.0):
  deadline = time.monotonic() + timeout
  while svc.metrics()["workers_ready"] < n:
    assert time.monotonic() < deadline, "workers never became ready"
    time.sleep(0.05)


def test_workers_match_inline_and_keep_submission_order():
  completions, examples = batch()
  expected = compose.score_batch(RewardConfig(**CFG), completions, examples)
  assert expected.reward.tolist() == pytest.approx([1.1, 1.1, 0.6, 1.0, 0.1])
  for workers in (0, 2):
    with RewardService(RewardConfig(num_workers=workers, **CFG)) as svc:
      ticket = svc.submit(completions[:2], examples[:2])
      svc.submit(completions[2:], examples[2:], ticket=ticket)  # a later chunk, same batch
      other = svc.submit(completions[::-1], examples[::-1])
      got = svc.collect(ticket)
      np.testing.assert_array_equal(got.reward, expected.reward)
      for name in compose.COMPONENTS:
        np.testing.assert_array_equal(got.components[name], expected.components[name])
      np.testing.assert_array_equal(svc.collect(other).reward, expected.reward[::-1])
      metrics = svc.metrics()
      assert metrics["items"] == 10 and metrics["timeouts"] == metrics["crashes"] == 0
      assert metrics["verify_p99_s"] >= metrics["verify_p50_s"] > 0
      with pytest.raises(KeyError):
        svc.collect(ticket)


def test_stuck_workers_are_replaced_and_their_items_time_out():
  completions, examples = batch()
  with RewardService(RewardConfig(num_workers=2, **CFG)) as svc:
    wait_ready(svc, 2)
    stalled = svc.worker_pids()
    for pid in stalled:
      os.kill(pid, signal.SIGSTOP)  # a worker stuck in a C call looks like this
    start = time.monotonic()
    got = svc.collect(svc.submit(completions[:2], examples[:2]))
    assert got.timed_out.tolist() == [True, True] and got.reward.tolist() == [0.0, 0.0]
    assert time.monotonic() - start < CFG["item_deadline_s"] + 2.0
    metrics = svc.metrics()
    assert metrics["timeouts"] == 2 and metrics["workers_replaced"] == 2
    assert not set(svc.worker_pids()) & set(stalled)
    again = svc.collect(svc.submit(completions, examples))
    assert again.reward.tolist() == pytest.approx([1.1, 1.1, 0.6, 1.0, 0.1])


def test_batch_deadline_bounds_the_wait():
  completions, examples = batch()
  with RewardService(RewardConfig(num_workers=1, **CFG)) as svc:
    wait_ready(svc, 1)
    os.kill(svc.worker_pids()[0], signal.SIGSTOP)
    start = time.monotonic()
    got = svc.collect(svc.submit(completions[:2], examples[:2]), timeout=0.3)
    assert time.monotonic() - start < 1.0 and got.timed_out.all()
    assert svc.metrics()["collect_wait_s"] >= 0.3


def test_worker_dying_mid_item_counts_as_a_crash():
  slow = "<answer>```python\nimport time\ndef add(a, b):\n    time.sleep(0.4)\n    return a + b\n```</answer>"
  _, examples = batch()
  with RewardService(RewardConfig(num_workers=1, **CFG)) as svc:
    wait_ready(svc, 1)
    pid = svc.worker_pids()[0]
    ticket = svc.submit([slow], examples[1:2])
    time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)
    got = svc.collect(ticket)
    assert got.crashed.tolist() == [True] and got.reward.tolist() == [0.0]
    metrics = svc.metrics()
    assert metrics["crashes"] == 1 and metrics["workers_replaced"] == 1
