"""Runs one command as N cooperating JAX processes on this machine (CPU devices, gloo collectives).

  python launch/local.py --processes=2 --devices_per_process=4 -- \
      python -m r1jax.main --config=experiments/r1_zero.py:smoke --workdir=/tmp/run

Each process gets ``R1JAX_COORDINATOR`` / ``R1JAX_NUM_PROCESSES`` / ``R1JAX_PROCESS_ID`` (read by
``r1jax.distributed.initialize``), ``K`` fake CPU devices and gloo CPU collectives: the same code
path as a multi-node GPU job, on one machine. Output of process i goes to ``<log_dir>/process_i.log``
(or this terminal). If a process fails, the others get ``--grace_s`` to fail on their own (the
coordination service's heartbeat stops them), then are terminated; the launcher exits non-zero
and names the process that failed first. The launcher prints each process's pid, and when it is
itself interrupted or terminated (SIGINT, SIGTERM) it terminates its processes before exiting.

The processes may start on an empty data dir: one builds each dataset while the others wait for
it (`r1jax.data.builders.prepared`). The rl, rejection and evaluate jobs, and pipelines of them,
give the results of one process; base_model, sft and reward_model (and a pipeline with such a
stage) refuse several processes with a one-line error (`r1jax.jobs.registry.check_processes`).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def process_env(base: dict, process_id: int, processes: int, devices: int, port: int,
                heartbeat_s: int) -> dict:
  others = [f for f in base.get("XLA_FLAGS", "").split()
            if not f.startswith("--xla_force_host_platform_device_count")]
  return dict(base, R1JAX_COORDINATOR=f"127.0.0.1:{port}", R1JAX_NUM_PROCESSES=str(processes),
              R1JAX_PROCESS_ID=str(process_id), JAX_PLATFORMS="cpu",
              JAX_CPU_COLLECTIVES_IMPLEMENTATION="gloo", R1JAX_HEARTBEAT_TIMEOUT_S=str(heartbeat_s),
              XLA_FLAGS=" ".join(others + [f"--xla_force_host_platform_device_count={devices}"]))


def launch(command: list[str], processes: int, devices_per_process: int, *, log_dir: str | None = None,
           heartbeat_s: int = 60, grace_s: float | None = None, timeout_s: float | None = None) -> list[int]:
  """Starts the processes, waits for all, returns their exit codes (see the module doc)."""
  port = free_port()
  grace_s = 2 * heartbeat_s if grace_s is None else grace_s
  procs, logs = [], []
  # SIGTERM's default action would end the launcher alone and leave its processes running: turn it
  # into an exception, so that the `finally` below stops them.
  main_thread = threading.current_thread() is threading.main_thread()   # where signals go
  previous = signal.signal(signal.SIGTERM, _raise_exit) if main_thread else None
  try:
    return _run(command, processes, devices_per_process, port, log_dir, heartbeat_s, grace_s,
                timeout_s, procs, logs)
  finally:
    for p in procs:
      if p.poll() is None:
        p.terminate()
    for p in procs:
      try:
        p.wait(timeout=10)
      except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
    for f in logs:
      f.close()
    if main_thread:
      signal.signal(signal.SIGTERM, previous)


def _raise_exit(signum, frame):
  raise SystemExit(128 + signum)


def _run(command, processes, devices_per_process, port, log_dir, heartbeat_s, grace_s, timeout_s,
         procs, logs) -> list[int]:
  for i in range(processes):
    out = None
    if log_dir:
      os.makedirs(log_dir, exist_ok=True)
      out = open(os.path.join(log_dir, f"process_{i}.log"), "wb")
      logs.append(out)
    procs.append(subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT if out else None,
                                  env=process_env(os.environ, i, processes, devices_per_process,
                                                  port, heartbeat_s)))
    print(f"launch/local.py: process {i} pid {procs[-1].pid}", file=sys.stderr, flush=True)
  start, first_failure, failed_at = time.monotonic(), None, None
  while any(p.poll() is None for p in procs):
    now = time.monotonic()
    for i, p in enumerate(procs):
      if first_failure is None and p.poll() not in (None, 0):
        first_failure, failed_at = i, now
    late = failed_at is not None and now - failed_at > grace_s
    if late or (timeout_s is not None and now - start > timeout_s):
      for p in procs:
        if p.poll() is None:
          p.terminate()
      break
    time.sleep(0.2)
  codes = [p.wait(timeout=30) for p in procs]
  if first_failure is None and any(codes):
    first_failure = next(i for i, c in enumerate(codes) if c)
  if first_failure is not None:
    print(f"launch/local.py: process {first_failure} failed first (exit code "
          f"{codes[first_failure]}); exit codes {codes}", file=sys.stderr)
  elif timeout_s is not None and time.monotonic() - start > timeout_s:
    print(f"launch/local.py: timed out after {timeout_s:.0f} s; exit codes {codes}", file=sys.stderr)
  return codes


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--processes", type=int, default=2)
  parser.add_argument("--devices_per_process", type=int, default=4)
  parser.add_argument("--log_dir", default=None)
  parser.add_argument("--heartbeat_s", type=int, default=60,
                      help="seconds without a heartbeat before the others are stopped")
  parser.add_argument("--grace_s", type=float, default=None,
                      help="after a process fails, seconds the others get to fail on their own "
                      "before they are terminated (default: twice the heartbeat)")
  parser.add_argument("--timeout_s", type=float, default=None, help="terminate all after this")
  parser.add_argument("command", nargs=argparse.REMAINDER, help="-- command to run")
  args = parser.parse_args(argv)
  command = args.command[1:] if args.command[:1] == ["--"] else args.command
  if not command:
    parser.error("give the command after --")
  codes = launch(command, args.processes, args.devices_per_process, log_dir=args.log_dir,
                 heartbeat_s=args.heartbeat_s, grace_s=args.grace_s, timeout_s=args.timeout_s)
  return max((abs(c) for c in codes), default=0) and 1


if __name__ == "__main__":
  sys.exit(main())
