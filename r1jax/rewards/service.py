"""The reward service: a pool of CPU worker processes that scores completions while the sampler runs.

Workers are started with the ``spawn`` method (no inherited accelerator state, no forked locks), hide
any accelerator, import the verifiers once, then score one item at a time. A pump thread in the
caller's process hands items to idle workers over per-worker pipes (so killing one worker can never
corrupt another's channel), collects results, and replaces a worker that dies or passes the per-item
deadline. The per-item deadline is wall clock, a backstop that a busy host can reach without any
fault of the item, so such an item (like one whose verifier reports its own backstop) is run once
more before it scores 0 as a timeout; a worker that dies scores its item 0 as a crash. ``submit``
may be called chunk by chunk as samples finish and blocks only when the bounded queue is full;
``collect`` returns the ticket's results in submission order, giving up on stragglers at the
per-batch deadline. ``num_workers=0`` scores inline in ``submit``, with the same results and the
same retry, for tests and debugging.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import multiprocessing
import multiprocessing.connection
import os
import threading
import time
from collections.abc import Mapping, Sequence

import numpy as np

from r1jax.rewards import compose
from r1jax.rewards.config import RewardConfig

_LATENCY_WINDOW = 10_000
_PUMP_TICK_S = 0.1
# Workers that die before they are ready this many times in a row mean a broken environment.
_MAX_STARTUP_FAILURES = 3


@dataclasses.dataclass(frozen=True)
class Ticket:
  id: int


@dataclasses.dataclass
class _Worker:
  process: multiprocessing.process.BaseProcess
  conn: multiprocessing.connection.Connection
  ready: bool = False
  item: int | None = None
  started: float = 0.0


class RewardService:
  """Scores (completion, example) pairs; see the module docstring."""

  def __init__(self, config: RewardConfig):
    config.validate()
    self._config = config
    self._cond = threading.Condition()
    self._pending: collections.deque[int] = collections.deque()
    self._inputs: dict[int, tuple[str, dict]] = {}
    self._results: dict[int, dict] = {}
    self._retried: set[int] = set()  # items run a second time after a backstop
    self._tickets: dict[int, list[int]] = {}
    self._ids = itertools.count()
    self._latencies: collections.deque[float] = collections.deque(maxlen=_LATENCY_WINDOW)
    self._counts = collections.Counter()
    self._wait_s = 0.0
    self._last_wait_s = 0.0
    self._closed = False
    self._broken = ""
    self._startup_failures = 0
    self._ctx = multiprocessing.get_context("spawn")
    self._workers = [self._start_worker() for _ in range(config.num_workers)]
    self._pump = None
    # Written by submit/close so that the pump dispatches at once instead of at its next tick.
    self._wake_r, self._wake_w = os.pipe()
    os.set_blocking(self._wake_r, False)
    os.set_blocking(self._wake_w, False)
    if self._workers:
      self._pump = threading.Thread(target=self._pump_loop, name="reward-pump", daemon=True)
      self._pump.start()

  # -------------------------------------------------------------------------------- public API

  def submit(self, completions: Sequence[str], examples: Sequence[Mapping],
             ticket: Ticket | None = None) -> Ticket:
    """Queues a chunk; pass the returned ticket back in to add more chunks to the same batch."""
    if len(completions) != len(examples):
      raise ValueError(f"{len(completions)} completions but {len(examples)} examples")
    with self._cond:
      if self._closed:
        raise RuntimeError("RewardService is closed")
      self._raise_if_broken()
      if ticket is None:
        ticket = Ticket(next(self._ids))
        self._tickets[ticket.id] = []
      elif ticket.id not in self._tickets:
        raise KeyError(f"unknown or already collected ticket {ticket.id}")
    for completion, example in zip(completions, examples):
      item = next(self._ids)
      example = dict(example)
      if not self._workers:
        with self._cond:
          self._inputs[item] = (completion, example)
          self._pending.append(item)
          self._tickets[ticket.id].append(item)
        self._score_inline()
        continue
      with self._cond:
        deadline = time.monotonic() + self._config.batch_deadline_s
        while len(self._pending) >= self._config.queue_bound:
          if not self._cond.wait(timeout=deadline - time.monotonic()):
            raise TimeoutError(f"reward queue stayed full ({self._config.queue_bound} items) for "
                               f"{self._config.batch_deadline_s}s; are the workers alive?")
        self._inputs[item] = (completion, example)
        self._pending.append(item)
        self._tickets[ticket.id].append(item)
      self._wake()
    return ticket

  def collect(self, ticket: Ticket, timeout: float | None = None) -> compose.RewardBatch:
    """Waits for the ticket's results (at most ``timeout``, default the per-batch deadline);
    items still unfinished then score 0 and count as timed out."""
    start = time.monotonic()
    limit = self._config.batch_deadline_s if timeout is None else timeout
    with self._cond:
      items = self._tickets.pop(ticket.id)
      while not all(i in self._results for i in items):
        self._raise_if_broken()
        left = start + limit - time.monotonic()
        if left <= 0:
          break
        self._cond.wait(timeout=left)
      for item in items:
        if item not in self._results:
          self._give_up(item, "timeout")
      results = [self._results.pop(i) for i in items]
      waited = time.monotonic() - start
      self._wait_s += waited
      self._last_wait_s = waited
    return compose.RewardBatch.from_results(results)

  def metrics(self) -> dict:
    with self._cond:
      lat = np.array(self._latencies) if self._latencies else np.zeros(1)
      return {"verify_p50_s": float(np.percentile(lat, 50)),
              "verify_p99_s": float(np.percentile(lat, 99)),
              "items": self._counts["items"], "timeouts": self._counts["timeout"],
              "retries": self._counts["retries"], "crashes": self._counts["crashed"],
              "workers_replaced": self._counts["replaced"],
              "collect_wait_s": self._wait_s, "last_collect_wait_s": self._last_wait_s,
              "pending": len(self._pending),
              "workers_ready": sum(w.ready for w in self._workers)}

  def worker_pids(self) -> list[int]:
    """Process ids of the current workers (for monitoring, and for tests that stall one)."""
    return [w.process.pid for w in self._workers]

  def close(self) -> None:
    with self._cond:
      if self._closed:
        return
      self._closed = True
      self._cond.notify_all()
    self._wake()
    if self._pump is not None:
      self._pump.join()
    os.close(self._wake_r)
    os.close(self._wake_w)
    for w in self._workers:
      try:
        w.conn.send(None)
      except OSError:
        pass
    for w in self._workers:
      w.process.join(timeout=2.0)
      if w.process.is_alive():
        w.process.kill()
        w.process.join()
      w.conn.close()

  def __enter__(self) -> "RewardService":
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  # -------------------------------------------------------------------------------- internals

  def _wake(self) -> None:
    try:
      os.write(self._wake_w, b"x")
    except BlockingIOError:
      pass  # already full of wake-ups

  def _raise_if_broken(self) -> None:
    if self._broken:
      raise RuntimeError(self._broken)

  def _score_inline(self) -> None:
    """num_workers=0: scores the queue (this item, and its retry if it needs one) in this thread."""
    while True:
      with self._cond:
        if not self._pending:
          return
        item = self._pending.popleft()
        completion, example = self._inputs[item]
      start = time.perf_counter()
      result = compose.score_one(self._config, completion, example)
      with self._cond:
        self._finish(item, result, time.perf_counter() - start)

  def _finish(self, item: int, result: dict, latency: float) -> None:
    """An attempt's result (caller holds the lock): recorded, or the item queued once more."""
    if item not in self._inputs or item in self._results:
      return  # given up on by collect: the late answer is dropped
    self._latencies.append(latency)
    if result["status"] == "backstop":
      self._retry_or_fail(item)
    else:
      self._inputs.pop(item)
      self._record(item, result)

  def _retry_or_fail(self, item: int) -> None:
    """After a wall-clock backstop (caller holds the lock): one more run, then a timeout."""
    if item in self._retried:
      self._inputs.pop(item, None)
      self._record(item, compose.failed_result("timeout"))
    else:
      self._retried.add(item)
      self._counts["retries"] += 1
      self._pending.appendleft(item)  # ahead of new work: its batch has waited longest
    self._cond.notify_all()

  def _record(self, item: int, result: dict) -> None:
    if item in self._retried:
      self._retried.discard(item)
      result = dict(result, retried=True)
    self._results[item] = result
    self._counts["items"] += 1
    if result["status"] in ("timeout", "crashed"):
      self._counts[result["status"]] += 1

  def _give_up(self, item: int, status: str) -> None:
    """Records a zero for an item whose answer will not come (a late answer is then dropped)."""
    self._inputs.pop(item, None)
    try:
      self._pending.remove(item)
    except ValueError:
      pass
    self._record(item, compose.failed_result(status))

  def _start_worker(self) -> _Worker:
    parent, child = self._ctx.Pipe()
    process = self._ctx.Process(target=_worker_main, args=(child, self._config),
                                name="reward-worker", daemon=True)
    process.start()
    child.close()
    return _Worker(process, parent)

  def _replace(self, w: _Worker, status: str) -> None:
    if w.process.is_alive():
      w.process.kill()
    w.process.join()
    w.conn.close()
    with self._cond:
      if w.item is not None and w.item not in self._results and w.item in self._inputs:
        self._latencies.append(time.monotonic() - w.started)
        if status == "timeout":  # the per-item deadline: a backstop
          self._retry_or_fail(w.item)
        else:
          self._inputs.pop(w.item)
          self._record(w.item, compose.failed_result(status))
      self._counts["replaced"] += 1
      self._startup_failures = 0 if w.ready else self._startup_failures + 1
      if self._startup_failures >= _MAX_STARTUP_FAILURES:
        self._broken = (f"reward workers died during start-up {self._startup_failures} times in a "
                        "row; run with num_workers=0 to see the error")
        self._workers.remove(w)
      else:
        self._workers[self._workers.index(w)] = self._start_worker()
      self._cond.notify_all()

  def _dispatch(self) -> None:
    for w in list(self._workers):
      if not w.ready or w.item is not None:
        continue
      with self._cond:
        while self._pending and self._pending[0] not in self._inputs:
          self._pending.popleft()  # given up on by collect
        if not self._pending:
          return
        item = self._pending.popleft()
        completion, example = self._inputs[item]
        self._cond.notify_all()  # room in the queue
      w.item, w.started = item, time.monotonic()
      try:
        w.conn.send((item, completion, example))
      except (OSError, ValueError):
        self._replace(w, "crashed")

  def _pump_loop(self) -> None:
    while True:
      with self._cond:
        if self._closed:
          return
      self._dispatch()
      waitables = {w.conn: w for w in self._workers}
      waitables.update({w.process.sentinel: w for w in self._workers})
      for ready in multiprocessing.connection.wait([*waitables, self._wake_r],
                                                   timeout=_PUMP_TICK_S):
        if ready == self._wake_r:
          _drain(self._wake_r)
          continue
        w = waitables[ready]
        if w not in self._workers:
          continue  # replaced earlier in this round
        if ready is w.conn:
          self._receive(w)
        elif not w.conn.poll():
          self._replace(w, "crashed")
      now = time.monotonic()
      for w in list(self._workers):
        if w.item is not None and now - w.started > self._config.item_deadline_s:
          self._replace(w, "timeout")

  def _receive(self, w: _Worker) -> None:
    try:
      msg = w.conn.recv()
    except (EOFError, OSError):
      self._replace(w, "crashed")
      return
    if msg == "ready":
      w.ready = True
      return
    item, result, latency = msg
    with self._cond:
      self._finish(item, result, latency)
      self._cond.notify_all()
    w.item = None


def _drain(fd: int) -> None:
  try:
    while os.read(fd, 4096):
      pass
  except BlockingIOError:
    pass


def _worker_main(conn, config: RewardConfig) -> None:
  """Worker process: CPU only, verifiers imported once, then one item at a time until None."""
  os.environ["CUDA_VISIBLE_DEVICES"] = ""
  os.environ["JAX_PLATFORMS"] = "cpu"
  from r1jax.rewards import compose as worker_compose  # the heavy imports, once per worker

  worker_compose.score_one(config, "<answer>1</answer>", {"data_type": "math", "gold": "1"})
  conn.send("ready")
  while True:
    try:
      msg = conn.recv()
    except (EOFError, KeyboardInterrupt):
      return
    if msg is None:
      return
    item, completion, example = msg
    start = time.perf_counter()
    result = worker_compose.score_one(config, completion, example)
    conn.send((item, result, time.perf_counter() - start))
