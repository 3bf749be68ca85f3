"""What every benchmark needs to measure honestly on a shared machine.

A ratio against a multi-threaded peer means nothing while other work holds the cores, so a
benchmark opens a :class:`Session`: it records the load average and the thread settings before and
after, refuses to start when the 1-minute load exceeds the core count (``--allow-busy`` runs anyway),
stamps a figure BUSY when the load rose above the cores plus one (the benchmark's own threads), and times each side with :func:`timings` (repeated calls after a
warm-up, reported as median and spread) so one lucky or unlucky run cannot carry a claim.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np


def add_flags(parser: argparse.ArgumentParser, repeats: int | None = 5) -> None:
  """--allow-busy, and --repeats unless the benchmark times one long pass (`repeats` None)."""
  if repeats is not None:
    parser.add_argument("--repeats", type=int, default=repeats,
                        help="timed calls per side after one warm-up (median and spread reported)")
  parser.add_argument("--allow-busy", action="store_true",
                      help="run even when the load exceeds the core count; figures marked BUSY")


def thread_settings(torch=None) -> str:
  parts = [f"{os.cpu_count()} CPUs"]
  for var in ("XLA_FLAGS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    if os.environ.get(var):
      parts.append(f"{var}={os.environ[var]}")
  if torch is not None:
    parts.append(f"torch {torch.__version__} threads={torch.get_num_threads()}")
  return ", ".join(parts)


@dataclasses.dataclass
class Timing:
  seconds: list[float]

  @property
  def median(self) -> float:
    return statistics.median(self.seconds)

  def rate(self, work: float) -> str:
    """`work` per second at the median, with the range over the timed calls."""
    lo, hi = work / max(self.seconds), work / min(self.seconds)
    return f"{work / self.median:,.0f} ({lo:,.0f}-{hi:,.0f})"


def timings(fn: Callable[[], object], repeats: int) -> Timing:
  """Wall seconds of `repeats` calls of `fn` after one warm-up call (compilation, caches)."""
  fn()
  out = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    out.append(time.perf_counter() - start)
  return Timing(out)


def matmul_flops_per_s(repeats: int, torch=None, n: int = 2048) -> dict[str, float]:
  """The machine's fp32 matmul peak as each framework reaches it (fastest of the calls): the
  physical limit a benchmark's model FLOP/s are a share of."""
  a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n), np.float32))
  f = jax.jit(lambda x: x @ x)
  out = {"jax": 2 * n**3 / min(timings(lambda: f(a).block_until_ready(), repeats).seconds)}
  if torch is not None:
    t = torch.from_numpy(np.array(a))
    with torch.inference_mode():
      out["torch"] = 2 * n**3 / min(timings(lambda: t @ t, repeats).seconds)
  return out


def ratio(ours: Timing, peer: Timing) -> str:
  """peer time / our time at the medians, with the range over every pairing of calls."""
  lo = min(peer.seconds) / max(ours.seconds)
  hi = max(peer.seconds) / min(ours.seconds)
  return f"{peer.median / ours.median:.2f}x (range {lo:.2f}-{hi:.2f})"


class Session:
  """Brackets a benchmark run with the machine's load; refuses a busy machine unless allowed."""

  def __init__(self, args: argparse.Namespace, torch=None):
    self.allow_busy = args.allow_busy
    self.torch = torch
    self.cores = os.cpu_count() or 1

  def __enter__(self):
    self.load_before = os.getloadavg()
    if self.load_before[0] > self.cores and not self.allow_busy:
      raise SystemExit(
          f"machine busy: 1-minute load {self.load_before[0]:.1f} > {self.cores} cores; a ratio "
          "against a multi-threaded peer would mean nothing. Wait for a quiet machine, or pass "
          "--allow-busy to run anyway (figures are then marked BUSY).")
    print(f"before: load {_loads(self.load_before)}; {thread_settings(self.torch)}", flush=True)
    return self

  @property
  def busy(self) -> bool:
    # While it runs the benchmark itself keeps up to every core busy, hence the one spare.
    return self.load_before[0] > self.cores or os.getloadavg()[0] > self.cores + 1

  def mark(self) -> str:
    """A suffix for a printed figure: ' [BUSY ...]' when others' load exceeded the cores."""
    return " [BUSY: load above core count]" if self.busy else ""

  def __exit__(self, *exc):
    after = os.getloadavg()
    verdict = "BUSY, do not quote" if self.busy else "quiet"
    print(f"after: load {_loads(after)}; run was {verdict}", flush=True)
    return False


def _loads(avg) -> str:
  return "/".join(f"{x:.2f}" for x in avg) + " (1/5/15 min)"
