"""A jail for model-written Python: one fresh process per program, limited, isolated and killed whole.

The parent (:func:`run`) starts this file as a script (``python -I -S sandbox.py``) in a new session.
That harness, still privileged, unshares network, mount and PID namespaces where the kernel allows,
makes the world-writable directories read-only except the private work directory, pre-imports the
common standard library, and forks the program's process, which drops to ``nobody`` (when root),
sets rlimits (CPU, address space, processes, file size, open files), installs an audit hook (no
sockets, no ctypes, no writes outside the work directory: the fallback where namespaces are
missing), and only then runs the model's code. Results travel back as JSON lines on a pipe, but the
design does not rely on the program being unable to write there: the child is never given the
expected answers, only the expressions or stdin to evaluate, and the parent does all judging. So a
forged line is at best a guessed answer. See ``docs/sandbox.md`` for the threat model.

The time limit is charged by ``program_clock`` (CPU time of the program's processes plus the time
it sat idle, never the time it waited for a CPU), so a busy host does not change a verdict. Wall
clock is only a generous backstop (``Limits.backstop_s``); a run that hits it has status
``backstop``, which the reward service retries once. Work directories are made under
``$R1JAX_SANDBOX_DIR`` when set, else the system temp directory.
"""

from __future__ import annotations

import dataclasses
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from typing import Any

NOBODY = 65534
# The wall-clock backstop, unless Limits.wall_s says otherwise: this many times the time limit, and
# at least BACKSTOP_MIN_S, once for the harness's start-up and once for the program. Only a starved
# host or a process the program's clock cannot see reaches it.
BACKSTOP_FACTOR = 10.0
BACKSTOP_MIN_S = 10.0
# How often the parent samples the program's clock.
CLOCK_POLL_S = 0.05
# Time the harness gets to exit on its own once the program's channel is closed.
EXIT_GRACE_S = 2.0
# Imported by the harness while it can still read the interpreter's files: after dropping to
# `nobody` the program may not be able to read the standard library (e.g. under /root).
PRELOAD = (
    "abc", "array", "bisect", "cmath", "collections", "collections.abc", "contextlib", "copy",
    "dataclasses", "datetime", "decimal", "enum", "fractions", "functools", "hashlib", "heapq",
    "io", "itertools", "json", "math", "numbers", "operator", "queue", "random", "re",
    "statistics", "string", "struct", "textwrap", "time", "types", "typing", "unicodedata",
)
# World-writable places a program could otherwise leave files in (made read-only in its namespace).
SHARED_WRITABLE = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")
# Audit events refused inside the jail (prefix match); see _audit_hook.
_BLOCKED_EVENTS = ("socket.", "ctypes.", "os.system", "os.exec", "os.posix_spawn", "os.spawn",
                   "subprocess.Popen")


@dataclasses.dataclass(frozen=True)
class Limits:
  """Resource limits for one program run.

  ``time_s`` is the program's charged time (``program_clock``: CPU time of all its processes plus
  idle time); ``wall_s`` the wall-clock backstop, for start-up and again for the program (default:
  see BACKSTOP_FACTOR).
  """
  time_s: float
  memory_mb: int
  max_processes: int = 16
  max_file_mb: int = 8
  max_output_bytes: int = 1 << 20
  max_open_files: int = 64
  wall_s: float | None = None

  def __post_init__(self):
    if not self.time_s > 0:
      raise ValueError(f"Limits.time_s must be positive, got {self.time_s!r}")
    if self.wall_s is not None and not self.wall_s >= self.time_s:
      raise ValueError(f"Limits.wall_s (the wall-clock backstop) must be at least time_s "
                       f"({self.time_s!r}), got {self.wall_s!r}")

  @property
  def backstop_s(self) -> float:
    if self.wall_s is not None:
      return self.wall_s
    return max(BACKSTOP_FACTOR * self.time_s, BACKSTOP_MIN_S)


@dataclasses.dataclass(frozen=True)
class RunResult:
  """What came back: per-item records in item order (None where missing) and an overall status.

  status: ``ok`` (the harness finished all items), ``timeout`` (the program used up its charged
  time), ``memory`` (it ran out of memory before it was stopped), ``output_limit``, ``crashed``
  (the program could not be loaded, or the process died) or ``backstop`` (the wall clock ran out
  first: a verdict on the host, not on the program).
  A program that reaches several limits gets the first of ``output_limit``, ``memory``,
  ``timeout`` / ``backstop`` that applies, whichever it reached first in time.
  ``isolation`` lists the mechanisms that were active, e.g. ``("netns", "mountns", "pidns",
  "setuid")``.
  """
  records: tuple[dict | None, ...]
  status: str
  wall_s: float
  isolation: tuple[str, ...] = ()
  detail: str = ""


def run(job: Mapping[str, Any], limits: Limits) -> RunResult:
  """Runs ``job`` ({"mode": "calls"|"stdio", "program", "setup", "items"}) in a fresh jail."""
  n_items = len(job["items"])
  workdir = tempfile.mkdtemp(prefix="r1jax-sbx-", dir=work_root())
  read_fd, write_fd = os.pipe()
  start = time.monotonic()
  proc = None
  try:
    if os.geteuid() == 0:
      os.chown(workdir, NOBODY, NOBODY)
    payload = json.dumps({"job": dict(job), "limits": dataclasses.asdict(limits),
                          "workdir": workdir, "result_fd": write_fd,
                          "parent": os.getpid()}).encode()
    proc = subprocess.Popen(
        [sys.executable, "-I", "-S", os.path.abspath(__file__)],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        pass_fds=(write_fd,), cwd=workdir, env=_clean_env(workdir), start_new_session=True)
    os.close(write_fd)
    write_fd = -1
    try:
      proc.stdin.write(payload)
      proc.stdin.close()
    except BrokenPipeError:
      pass
    lines, why = _read_channel(read_fd, limits, proc.pid)
    if not why:
      try:  # the harness still has to reap the jail; give it a moment before killing it
        proc.wait(timeout=EXIT_GRACE_S)
      except subprocess.TimeoutExpired:
        pass
  finally:
    if write_fd >= 0:
      os.close(write_fd)
    os.close(read_fd)
    try:
      if proc is not None:
        _kill_tree(proc)
    finally:
      shutil.rmtree(workdir, ignore_errors=True)
  return _assemble(lines, why, proc.returncode if proc else None, n_items, time.monotonic() - start)


def work_root() -> str:
  """Where work directories are made: ``$R1JAX_SANDBOX_DIR`` or the system temp directory."""
  root = os.environ.get("R1JAX_SANDBOX_DIR")
  if root and not os.path.isdir(root):
    raise ValueError(f"R1JAX_SANDBOX_DIR={root!r} is not a directory")
  return root or tempfile.gettempdir()


def _clean_env(workdir: str) -> dict[str, str]:
  # Nothing from the parent's environment: secrets (API keys, tokens) must not reach the program.
  return {"PATH": "/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8",
          "PYTHONHASHSEED": "0", "PYTHONIOENCODING": "utf-8"}


def _read_channel(fd: int, limits: Limits, harness_pid: int) -> tuple[list[bytes], str]:
  """Reads result lines until EOF; returns (lines, reason) with reason '' or why reading stopped."""
  from r1jax.rewards.program_clock import ProgramClock  # parent side only, like psutil

  os.set_blocking(fd, False)
  buf = bytearray()
  backstop = time.monotonic() + limits.backstop_s
  clock = None
  next_sample = 0.0
  why = ""
  with selectors.DefaultSelector() as sel:
    sel.register(fd, selectors.EVENT_READ)
    while True:
      now = time.monotonic()
      if now >= backstop:
        why = "backstop"
        break
      if clock is not None and now >= next_sample:
        if clock.charged_s() > limits.time_s:
          why = "timeout"
          # What the program wrote before its time ran out still counts (a MemoryError it reached
          # first decides the verdict): take the lines already in the pipe.
          buf += _drain(fd, limits.max_output_bytes + (1 << 16) - len(buf))
          break
        next_sample = now + CLOCK_POLL_S
      if not sel.select(timeout=min(backstop - now, CLOCK_POLL_S)):
        continue
      try:
        chunk = os.read(fd, 1 << 16)
      except BlockingIOError:
        continue
      if not chunk:
        break
      buf += chunk
      if len(buf) > limits.max_output_bytes + (1 << 16):
        why = "output_limit"
        break
      if clock is None and b"\n" in buf:
        # The jail's first line says the program is about to run: start its clock now.
        clock = ProgramClock(harness_pid)
        backstop = time.monotonic() + limits.backstop_s
  return bytes(buf).split(b"\n"), why


def _drain(fd: int, cap: int) -> bytes:
  """What is already waiting in the (non-blocking) pipe, up to `cap` bytes, without waiting."""
  out = bytearray()
  while len(out) < cap:
    try:
      chunk = os.read(fd, min(1 << 16, cap - len(out)))
    except BlockingIOError:
      break
    if not chunk:
      break
    out += chunk
  return bytes(out)


def _kill_tree(proc: subprocess.Popen) -> None:
  """Kills the harness, its session and every descendant (including re-parented daemons)."""
  import psutil  # parent side only: the jailed interpreter runs without site-packages

  try:
    kids = psutil.Process(proc.pid).children(recursive=True)
  except psutil.Error:
    kids = []
  for _ in range(2):
    try:
      os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
      pass
    for kid in kids:
      try:
        kid.kill()
      except psutil.Error:
        pass
  proc.wait()
  deadline = time.monotonic() + 2.0
  while time.monotonic() < deadline and any(_alive(k) for k in kids):
    time.sleep(0.01)


def _alive(p) -> bool:
  import psutil

  try:
    return p.status() != psutil.STATUS_ZOMBIE
  except psutil.Error:
    return False


def _assemble(lines: Sequence[bytes], why: str, returncode: int | None, n_items: int,
              wall_s: float) -> RunResult:
  records: list[dict | None] = [None] * n_items
  isolation: tuple[str, ...] = ()
  load_error = ""
  memory = output_limit = False
  for i, line in enumerate(lines):
    try:
      msg = json.loads(line)
    except (ValueError, RecursionError):
      continue
    if not isinstance(msg, dict):
      continue
    if i == 0 and "isolation" in msg:
      isolation = tuple(str(x) for x in msg["isolation"])
      continue
    error = msg.get("error")
    memory |= error == "MemoryError"
    output_limit |= error == "OutputLimit"
    if "load_error" in msg:
      load_error = str(msg["load_error"])
      memory |= load_error == "MemoryError"
    k = msg.get("i")
    if isinstance(k, int) and 0 <= k < n_items and records[k] is None:
      records[k] = msg
  # Precedence, so that a program that runs into two limits gets one verdict however the race
  # between them went: output, then memory (a MemoryError the program reported before it was
  # stopped), then time.
  if why == "output_limit" or output_limit:
    status = "output_limit"
  elif memory:
    status = "memory"
  elif why in ("timeout", "backstop"):
    status = why
  elif returncode in (128 + signal.SIGXCPU, 128 + signal.SIGKILL):  # CPU rlimit (soft, hard)
    status = "timeout"
  elif load_error or returncode != 0 or any(r is None for r in records):
    status = "crashed"
  else:
    status = "ok"
  return RunResult(tuple(records), status, wall_s, isolation, load_error or why)


# ----------------------------------------------------------------------------------------------
# Harness side: everything below runs in the jailed interpreter (standard library only).


def _harness_main() -> None:
  spec = json.loads(sys.stdin.buffer.read())
  job, limits, workdir, result_fd = spec["job"], spec["limits"], spec["workdir"], spec["result_fd"]
  child = []
  signal.signal(signal.SIGTERM, lambda *_: _abandon(child, workdir))
  _die_with_parent(spec["parent"], workdir)
  _keep_priority(spec["parent"])
  pidns = _libc().unshare(0x20000000) == 0  # CLONE_NEWPID: our child is init of a new namespace
  for name in PRELOAD:
    __import__(name)
  pid = os.fork()
  if pid == 0:
    try:
      # Network and mount namespaces are the child's alone, so the harness can still clean up.
      isolation = _isolate(workdir) + (["pidns"] if pidns else [])
      _enter_jail(workdir, limits, isolation)
      out = os.fdopen(result_fd, "w", buffering=1, encoding="utf-8")
      out.write(json.dumps({"isolation": isolation}) + "\n")
      _run_job(job, limits, out)
      out.flush()
      os._exit(0)
    except MemoryError:
      os._exit(3)
    except BaseException:
      os._exit(4)
  child.append(pid)
  os.close(result_fd)
  status = _wait_child(pid)
  _reap_orphans()
  os._exit(min(status, 255) if status >= 0 else 128 - status)


def _abandon(child: list[int], workdir: str) -> None:
  """SIGTERM (our parent died): kill the jail, remove the work directory, and go."""
  for pid in child:
    try:
      os.kill(pid, signal.SIGKILL)
      os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
      pass
  _reap_orphans()
  shutil.rmtree(workdir, ignore_errors=True)
  os._exit(1)


def _libc():
  import ctypes

  return ctypes.CDLL(None, use_errno=True)


def _die_with_parent(parent: int, workdir: str) -> None:
  # If the worker that started us is killed, the kernel sends us SIGTERM (see _abandon).
  libc = _libc()
  libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
  libc.prctl(36, 1)  # PR_SET_CHILD_SUBREAPER: orphaned daemons re-parent to us, not to init
  if os.getppid() != parent:  # it died before the death signal was armed: nobody else cleans up
    shutil.rmtree(workdir, ignore_errors=True)
    os._exit(1)


def _keep_priority(parent: int) -> None:
  """Gives our new session's scheduling group the nice value of the worker's. Where the kernel
  shares CPUs between sessions first (autogroup), a new session would otherwise get a default
  share, more than the worker's own when its session was niced (as a low-priority job's is)."""
  try:
    with open(f"/proc/{parent}/autogroup") as f:
      nice = f.read().split()[-1]
    with open("/proc/self/autogroup", "w") as f:
      f.write(nice)
  except (OSError, IndexError):
    pass  # no autogroups here


def _isolate(workdir: str) -> list[str]:
  """Unshares network and mounts where the kernel allows; returns the mechanisms in force."""
  libc = _libc()
  active = []
  if libc.unshare(0x40000000) == 0:  # CLONE_NEWNET: only a loopback device, and it is down
    active.append("netns")
  if libc.unshare(0x00020000) == 0 and _private_mounts(libc, workdir):  # CLONE_NEWNS
    active.append("mountns")
  return active


def _private_mounts(libc, workdir: str) -> bool:
  ms_rdonly, ms_remount, ms_bind, ms_rec, ms_private = 1, 32, 4096, 16384, 1 << 18
  if libc.mount(b"none", b"/", None, ms_rec | ms_private, None) != 0:
    return False
  for d in SHARED_WRITABLE:
    if os.path.isdir(d) and not os.path.islink(d):
      path = d.encode()
      if libc.mount(path, path, None, ms_bind | ms_rec, None) != 0:
        return False
      if libc.mount(None, path, None, ms_remount | ms_bind | ms_rdonly, None) != 0:
        return False
  # The work directory lives under /tmp: give it its own mount, then clear the inherited read-only.
  w = workdir.encode()
  return (libc.mount(w, w, None, ms_bind, None) == 0
          and libc.mount(None, w, None, ms_remount | ms_bind, None) == 0)


def _enter_jail(workdir: str, limits: Mapping[str, Any], isolation: list[str]) -> None:
  import resource

  os.chdir(workdir)
  devnull = os.open(os.devnull, os.O_RDWR)
  for fd in (0, 1, 2):
    os.dup2(devnull, fd)
  os.close(devnull)
  if os.geteuid() == 0:
    # Root ignores RLIMIT_NPROC and file permissions; `nobody` does not.
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)
    isolation.append("setuid")
  _libc().prctl(1, signal.SIGKILL)  # set again: changing credentials clears PR_SET_PDEATHSIG
  cpu = int(limits["time_s"]) + 1
  mem = int(limits["memory_mb"]) << 20
  for rlimit, value in ((resource.RLIMIT_CPU, (cpu, cpu + 1)),
                        (resource.RLIMIT_AS, (mem, mem)),
                        (resource.RLIMIT_NPROC, (limits["max_processes"],) * 2),
                        (resource.RLIMIT_FSIZE, (limits["max_file_mb"] << 20,) * 2),
                        (resource.RLIMIT_NOFILE, (limits["max_open_files"],) * 2),
                        (resource.RLIMIT_CORE, (0, 0))):
    resource.setrlimit(rlimit, value)
  sys.modules.pop("ctypes", None)
  sys.set_int_max_str_digits(0)
  sys.addaudithook(_make_audit_hook(os.path.realpath(workdir)))


def _make_audit_hook(root: str):
  """The jail's audit hook: the fallback wall where namespaces are missing, and defence in depth."""
  # Everything it reads is a default argument, not a global or a closure cell, so the program cannot
  # rebind it (rebinding __defaults__ or __code__ is itself refused below).
  def hook(event: str, args: tuple, _root=root + os.sep, _blocked=_BLOCKED_EVENTS,
           _realpath=os.path.realpath, _fsdecode=os.fsdecode,
           _write_flags=os.O_WRONLY | os.O_RDWR | os.O_CREAT) -> None:
    if event.startswith(_blocked):
      raise PermissionError(f"sandbox: {event} is not allowed")
    if event == "object.__setattr__" and len(args) > 1 and args[1] in (
        "__code__", "__defaults__", "__kwdefaults__", "__globals__"):
      raise PermissionError("sandbox: rebinding function internals is not allowed")
    if event == "open" and len(args) > 2 and isinstance(args[0], (str, bytes)):
      mode, flags = args[1], args[2]
      writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
          mode is None and isinstance(flags, int) and flags & _write_flags)
      if writing and not (_realpath(_fsdecode(args[0])) + "/").startswith(_root):
        raise PermissionError("sandbox: writing outside the work directory is not allowed")

  return hook


class OutputLimit(BaseException):
  """Raised inside the jail when a test's captured output passes its cap (not an Exception)."""


class _CappedBytes:
  """Binary sink that raises OutputLimit past ``cap`` bytes."""

  def __init__(self, cap: int):
    import io

    self.cap = cap
    self.buf = io.BytesIO()

  def writable(self):
    return True

  def readable(self):
    return False

  def seekable(self):
    return False

  @property
  def closed(self):
    return False

  def flush(self):
    pass

  def write(self, data) -> int:
    if self.buf.tell() + len(data) > self.cap:
      raise OutputLimit()
    return self.buf.write(data)


def _run_job(job: Mapping[str, Any], limits: Mapping[str, Any], out) -> None:
  # Bound before the program runs, so that patching builtins or json later changes nothing here.
  dumps, encode, write = json.dumps, _encode, out.write
  if job["mode"] == "calls":
    scope = {"__name__": "__solution__", "__builtins__": __builtins__}
    try:
      exec(compile(job["program"] + "\n" + job.get("setup", ""), "<solution>", "exec"), scope)
    except BaseException as e:  # noqa: BLE001 - any failure to load is the program's fault
      write(dumps({"load_error": type(e).__name__}) + "\n")
      return
    for i, expr in enumerate(job["items"]):
      try:
        msg = {"i": i, "value": encode(eval(compile(expr, "<test>", "eval"), scope))}
      except BaseException as e:  # noqa: BLE001
        msg = {"i": i, "error": type(e).__name__}
      write(dumps(msg) + "\n")
    return
  code = None
  try:
    code = compile(job["program"], "<solution>", "exec")
  except BaseException as e:  # noqa: BLE001
    write(dumps({"load_error": type(e).__name__}) + "\n")
    return
  for i, stdin in enumerate(job["items"]):
    write(dumps(_run_stdio(code, stdin, limits["max_output_bytes"]) | {"i": i}) + "\n")


def _run_stdio(code, stdin: str, cap: int) -> dict:
  import io

  sink = _CappedBytes(cap)
  old = sys.stdin, sys.stdout
  sys.stdin = io.TextIOWrapper(io.BytesIO(stdin.encode()), encoding="utf-8")
  sys.stdout = io.TextIOWrapper(sink, encoding="utf-8", write_through=True)
  error = None
  try:
    exec(code, {"__name__": "__main__", "__builtins__": __builtins__})
  except SystemExit as e:
    if e.code not in (None, 0):
      error = "SystemExit"
  except BaseException as e:  # noqa: BLE001
    error = type(e).__name__
  try:
    sys.stdout.flush()
  except BaseException as e:  # noqa: BLE001
    error = error or type(e).__name__
  sys.stdin, sys.stdout = old
  if error:
    return {"error": error}
  return {"value": {"s": sink.buf.getvalue().decode("utf-8", "replace")}}


def _encode(value, depth: int = 0):
  """Plain data only, by exact type, so no subclass can smuggle a custom __eq__ to the judge."""
  if depth > 100:
    raise ValueError("value nested too deeply")
  t = type(value)
  if t is bool:
    return {"t": value}
  if t is int:
    return {"i": hex(value)}
  if t is float:
    return {"f": value.hex()}
  if t is complex:
    return {"c": [value.real.hex(), value.imag.hex()]}
  if t is str:
    return {"s": value}
  if t is bytes:
    return {"b": value.hex()}
  if value is None:
    return {"n": 0}
  if t in (list, tuple, set, frozenset):
    tag = {list: "l", tuple: "u", set: "S", frozenset: "F"}[t]
    return {tag: [_encode(v, depth + 1) for v in value]}
  if t is dict:
    return {"d": [[_encode(k, depth + 1), _encode(v, depth + 1)] for k, v in value.items()]}
  raise TypeError(f"unrepresentable result type {t.__name__}")


def decode(tree):
  """Parent-side inverse of the jail's encoding; raises ValueError on anything malformed."""
  if not isinstance(tree, dict) or len(tree) != 1:
    raise ValueError("malformed value")
  (tag, v), = tree.items()
  simple = {"t": lambda x: bool(x) if isinstance(x, bool) else _bad(),
            "i": lambda x: int(x, 16), "f": float.fromhex, "s": lambda x: _str(x),
            "b": bytes.fromhex, "n": lambda x: None,
            "c": lambda x: complex(float.fromhex(x[0]), float.fromhex(x[1]))}
  if tag in simple:
    return simple[tag](v)
  if tag in ("l", "u", "S", "F"):
    items = [decode(x) for x in v]
    return {"l": list, "u": tuple, "S": set, "F": frozenset}[tag](items)
  if tag == "d":
    return {decode(k): decode(x) for k, x in v}
  raise ValueError(f"unknown tag {tag!r}")


def _str(x):
  return x if isinstance(x, str) else _bad()


def _bad():
  raise ValueError("malformed value")


def _wait_child(pid: int) -> int:
  _, status = os.waitpid(pid, 0)
  return os.waitstatus_to_exitcode(status)


def _reap_orphans() -> None:
  """Kills whatever re-parented to us (daemons that escaped when no PID namespace was available)."""
  me = str(os.getpid())
  for _ in range(100):
    kids = []
    for entry in os.listdir("/proc"):
      if entry.isdigit():
        try:
          with open(f"/proc/{entry}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
          continue
        if fields[1] == me:
          kids.append(int(entry))
    if not kids:
      return
    for kid in kids:
      try:
        os.kill(kid, signal.SIGKILL)
      except ProcessLookupError:
        pass
    for kid in kids:
      try:
        os.waitpid(kid, 0)
      except ChildProcessError:
        pass


if __name__ == "__main__":
  _harness_main()
