"""The time a jailed program is charged: CPU time of its process tree plus the time it sat idle.

Neither part counts time the program spent waiting for a CPU that other work held, so a program
gets the same verdict on a busy host as on a quiet one. CPU time sums every process below the
harness (the program, its threads and its children; reaped children count through their parent).
Idle time is the wall time during which none of the program's tasks was running or waiting to
run, read from the scheduler's per-task statistics (``/proc/<pid>/task/<tid>/schedstat``: time on
a CPU, time waiting in the run queue); it is what catches a program that sleeps instead of working.
The kernel adds a wait to those statistics only once it ends, so a task that is runnable when
sampled (a starved one) counts as busy for the whole interval.
For a single-threaded program the charge is exactly the wall time it would take on an idle machine.
Where the kernel has no scheduler statistics only CPU time is charged and the sandbox's wall-clock
backstop catches sleepers.

Parent side only (uses psutil); sampled every few tens of milliseconds by ``sandbox.run``.
"""

from __future__ import annotations

import os
import time

import psutil

_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


class ProgramClock:
  """Charged seconds of everything below ``harness_pid``, from construction on."""

  def __init__(self, harness_pid: int):
    self._harness = psutil.Process(harness_pid)
    self._cpu_s = 0.0
    self._idle_s = 0.0
    self._seen: dict[int, int] = {}  # task id -> ns running or runnable, at the last sample
    self._last = time.monotonic()
    self.has_schedstat = os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/schedstat")

  def charged_s(self) -> float:
    """Samples the tree and returns its CPU time plus its idle time so far."""
    now = time.monotonic()
    cpu_s, active_ns, runnable, seen = 0.0, 0, False, {}
    try:
      procs = self._harness.children(recursive=True)
    except psutil.Error:
      procs = []
    for proc in procs:
      cpu_s += _process_cpu_s(proc.pid)
      if self.has_schedstat:
        for tid, busy_ns, state in _tasks(proc.pid):
          seen[tid] = busy_ns
          runnable |= state == b"R"
          before = self._seen.get(tid, 0)
          active_ns += busy_ns - before if busy_ns >= before else busy_ns  # a reused task id
    # A process that exited and was reaped where we cannot see it takes its CPU time with it:
    # never let the charge go down.
    self._cpu_s = max(self._cpu_s, cpu_s)
    # A task that ended between two samples takes its run-queue waits with it, so an interval in
    # which tasks came or went cannot be shown idle: it is never charged as idle (under heavy load
    # the waits of reaped children would otherwise be billed to the program).
    if self.has_schedstat and not runnable and seen.keys() == self._seen.keys():
      # Tasks working in parallel can be busy for more than the interval: then nothing was idle.
      self._idle_s += max(0.0, (now - self._last) - active_ns / 1e9)
    self._seen, self._last = seen, now
    return self._cpu_s + self._idle_s


def _process_cpu_s(pid: int) -> float:
  """User + system time of a process, its dead threads and its reaped children."""
  try:
    with open(f"/proc/{pid}/stat", "rb") as f:
      fields = f.read().rsplit(b")", 1)[1].split()
  except OSError:
    return 0.0
  # Fields 14-17 of proc(5) (utime, stime, cutime, cstime); the split drops pid and comm.
  return sum(int(x) for x in fields[11:15]) / _TICKS_PER_S


def _tasks(pid: int):
  """(task id, nanoseconds on a CPU + nanoseconds of finished waits for one, scheduler state) for
  each thread of a process."""
  try:
    tids = os.listdir(f"/proc/{pid}/task")
  except OSError:
    return
  for tid in tids:
    try:
      with open(f"/proc/{pid}/task/{tid}/schedstat", "rb") as f:
        on_cpu, waiting, _ = f.read().split()
      with open(f"/proc/{pid}/task/{tid}/stat", "rb") as f:
        state = f.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, ValueError, IndexError):
      continue
    yield int(tid), int(on_cpu) + int(waiting), state
