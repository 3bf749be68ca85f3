"""The reward service: same results as inline, chunked submission in order, stuck workers replaced,
an item that hits a wall-clock backstop run once more before it scores 0."""
import os
import signal
import time

import numpy as np
import psutil
import pytest

from r1jax.rewards import compose
from r1jax.rewards.config import RewardConfig
from r1jax.rewards.service import RewardService

ADD_TESTS = "assert add(1, 2) == 3\nassert add(0, 0) == 0\n"



@pytest.fixture
def cfg(scaled):
  """Short CPU limits; the wall-clock backstops stretched to this machine as loaded now."""
  return dict(code_time_limit_s=0.5, math_time_limit_s=0.5, code_wall_limit_s=scaled(4),
              item_deadline_s=scaled(5))


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


def wait_until(condition, timeout, what):
  deadline = time.monotonic() + timeout
  while not condition():
    assert time.monotonic() < deadline, what
    time.sleep(0.01)


def wait_ready(svc, n, scaled):
  wait_until(lambda: svc.metrics()["workers_ready"] >= n, scaled(60), "workers never became ready")


def test_workers_match_inline_and_keep_submission_order(cfg):
  completions, examples = batch()
  expected = compose.score_batch(RewardConfig(**cfg), completions, examples)
  assert expected.reward.tolist() == pytest.approx([1.1, 1.1, 0.6, 1.0, 0.1])
  for workers in (0, 2):
    with RewardService(RewardConfig(num_workers=workers, **cfg)) as svc:
      ticket = svc.submit(completions[:2], examples[:2])
      svc.submit(completions[2:], examples[2:], ticket=ticket)  # a later chunk, same batch
      other = svc.submit(completions[::-1], examples[::-1])
      got = svc.collect(ticket)
      np.testing.assert_array_equal(got.reward, expected.reward)
      for name in compose.COMPONENTS:
        np.testing.assert_array_equal(got.components[name], expected.components[name])
      np.testing.assert_array_equal(svc.collect(other).reward, expected.reward[::-1])
      metrics = svc.metrics()
      assert metrics["items"] == 10
      assert metrics["timeouts"] == metrics["crashes"] == metrics["retries"] == 0
      assert not got.retried.any()
      assert metrics["verify_p99_s"] >= metrics["verify_p50_s"] > 0
      with pytest.raises(KeyError):
        svc.collect(ticket)


def test_stuck_workers_are_replaced_and_their_items_run_again(scaled, cfg):
  completions, examples = batch()
  with RewardService(RewardConfig(num_workers=2, **cfg)) as svc:
    wait_ready(svc, 2, scaled)
    stalled = svc.worker_pids()
    for pid in stalled:
      os.kill(pid, signal.SIGSTOP)  # a worker stuck in a C call looks like this
    got = svc.collect(svc.submit(completions[:2], examples[:2]))
    # The per-item deadline is a wall-clock backstop: the items ran again on fresh workers.
    assert got.retried.tolist() == [True, True] and not got.timed_out.any()
    assert got.reward.tolist() == pytest.approx([1.1, 1.1])
    metrics = svc.metrics()
    assert metrics["retries"] == 2 and metrics["timeouts"] == 0
    assert metrics["workers_replaced"] == 2
    assert not set(svc.worker_pids()) & set(stalled)
    again = svc.collect(svc.submit(completions, examples))
    assert again.reward.tolist() == pytest.approx([1.1, 1.1, 0.6, 1.0, 0.1])
    assert not again.retried.any()


def test_backstop_twice_scores_zero_as_a_timeout(cfg):
  # No interpreter starts in a millisecond: every code run ends at the sandbox's wall clock, twice.
  cfg = dict(cfg, code_time_limit_s=0.001, code_wall_limit_s=0.001)
  completions, examples = batch()
  with RewardService(RewardConfig(num_workers=0, **cfg)) as svc:
    got = svc.collect(svc.submit(completions[:2], examples[:2]))
    assert got.reward.tolist() == pytest.approx([1.1, 0.0])   # the math item is unaffected
    assert got.timed_out.tolist() == [False, True] and got.retried.tolist() == [False, True]
    metrics = svc.metrics()
    assert metrics["retries"] == 1 and metrics["timeouts"] == 1 and metrics["items"] == 2


def test_backstop_once_then_the_retry_counts(monkeypatch, cfg):
  calls, score_one = [], compose.score_one

  def flaky(config, completion, example):
    calls.append(completion)
    result = score_one(config, completion, example)
    return dict(result, status="backstop") if len(calls) == 1 else result

  monkeypatch.setattr(compose, "score_one", flaky)
  completions, examples = batch()
  with RewardService(RewardConfig(num_workers=0, **cfg)) as svc:
    got = svc.collect(svc.submit(completions[:1], examples[:1]))
  assert calls == completions[:1] * 2
  assert got.reward.tolist() == pytest.approx([1.1]) and got.retried.tolist() == [True]
  assert not got.timed_out.any() and svc.metrics()["retries"] == 1


def test_a_verdict_timeout_is_not_retried(cfg):
  loop = "<answer>```python\ndef add(a, b):\n    while True:\n        pass\n```</answer>"
  _, examples = batch()
  with RewardService(RewardConfig(num_workers=0, **cfg)) as svc:
    got = svc.collect(svc.submit([loop], examples[1:2]))
  assert got.timed_out.tolist() == [True] and got.retried.tolist() == [False]
  assert svc.metrics()["retries"] == 0 and svc.metrics()["timeouts"] == 1


def test_batch_deadline_bounds_the_wait(scaled, cfg):
  completions, examples = batch()
  with RewardService(RewardConfig(num_workers=1, **cfg)) as svc:
    wait_ready(svc, 1, scaled)
    os.kill(svc.worker_pids()[0], signal.SIGSTOP)
    got = svc.collect(svc.submit(completions[:2], examples[:2]), timeout=0.3)
    assert got.timed_out.all() and not got.retried.any()
    # It gave up at the collect timeout, long before the per-item deadline could act.
    assert svc.metrics()["workers_replaced"] == 0
    assert svc.metrics()["collect_wait_s"] >= 0.3


def test_worker_dying_mid_item_counts_as_a_crash(scaled, cfg):
  slow = "<answer>```python\nimport time\ndef add(a, b):\n    time.sleep(0.4)\n    return a + b\n```</answer>"
  _, examples = batch()
  with RewardService(RewardConfig(num_workers=1, **cfg)) as svc:
    wait_ready(svc, 1, scaled)
    worker = psutil.Process(svc.worker_pids()[0])
    ticket = svc.submit([slow], examples[1:2])
    # Mid-item: the worker's sandbox harness has started the program.
    wait_until(lambda: _has_grandchild(worker), scaled(30), "the item never reached the worker")
    worker.kill()
    got = svc.collect(ticket)
    assert got.crashed.tolist() == [True] and got.reward.tolist() == [0.0]
    assert not got.retried.any()   # a crash is not a backstop: no second run
    metrics = svc.metrics()
    assert metrics["crashes"] == 1 and metrics["workers_replaced"] == 1


def _has_grandchild(process) -> bool:
  try:
    return any(child.children() for child in process.children())
  except psutil.Error:
    return False
