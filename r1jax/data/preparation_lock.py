"""One writer for files that several processes want at once: a lock file next to them.

Every process of a multi-host run (and every run of a sweep sharing a data dir) asks for the same
dataset at start-up. :func:`exclusive` lets the first one in prepare it while the others wait on
an OS file lock (``flock``, which local and NFS file systems honour), then re-check and read what
it wrote. The kernel drops the lock when its holder dies, so a crashed preparer leaves no stale
lock: the next waiter takes over. A waiter that runs out of time gets a one-line error (a
`DataError`) that names the lock and the key that sets the wait.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time

from absl import logging

from r1jax.data.schema import DataError

POLL_S = 0.2


@contextlib.contextmanager
def exclusive(lock_path: str, what: str, timeout_s: float, timeout_key: str):
  """Holds `lock_path` (created if missing) for the block, waiting up to `timeout_s` for another
  process that holds it; `what` and `timeout_key` phrase the waiting and timeout messages."""
  os.makedirs(os.path.dirname(lock_path) or ".", exist_ok=True)
  with open(lock_path, "a", encoding="utf-8") as f:
    deadline, told = time.monotonic() + timeout_s, False
    while True:
      try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        break
      except BlockingIOError:
        if not told:
          logging.info("waiting for another process to prepare %s (it holds %s)", what, lock_path)
          told = True
        if time.monotonic() >= deadline:
          raise DataError(
              f"waited {timeout_s:g} s for another process to prepare {what} (it holds "
              f"{lock_path}); raise {timeout_key} if preparing takes longer, or stop that "
              "process") from None
        time.sleep(POLL_S)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)
