"""Attack programs against the sandbox: each must score as a failure, be stopped by its own limits
(not by the wall-clock backstop), and leave the host as it was (no stray processes, no files outside
the work directory, parent alive). Each test gets its own sandbox directory, so that what other
tests or runs do with the shared temp directory at the same time cannot change its outcome."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import psutil
import pytest

from r1jax.rewards import code, sandbox

ADD_TEST = "assert add(1, 2) == 3\nassert add(2, 2) == 4\n"
TOKEN = uuid.uuid4().hex[:12]
OUTSIDE = [os.path.join(tempfile.gettempdir(), f"r1jax_attack_{TOKEN}"),
           f"/var/tmp/r1jax_attack_{TOKEN}", f"/dev/shm/r1jax_attack_{TOKEN}",
           os.path.join(os.path.dirname(os.path.abspath(__file__)), f"attack_{TOKEN}")]


def _jailed_under(root):
  """Live harnesses and jails of sandboxes under `root` (their environment names their work
  directory there); other tests' and runs' jails are not ours to judge."""
  workdirs = os.path.join(root, "r1jax-sbx-")
  found = []
  for p in psutil.process_iter():
    try:
      if p.status() != psutil.STATUS_ZOMBIE and any(
          v.startswith(workdirs) for v in p.environ().values()):
        found.append(p)
    except psutil.Error:
      pass
  return found


def _live_descendants():
  kids = psutil.Process().children(recursive=True)
  return [k for k in kids if k.is_running() and k.status() != psutil.STATUS_ZOMBIE]


@pytest.fixture
def host(monkeypatch):
  """A private sandbox directory for the test; checks afterwards that the host is as it was."""
  root = tempfile.mkdtemp(prefix="r1jax-test-sandboxes-")
  os.chmod(root, 0o711)  # the jail runs as `nobody` when we are root and must reach its directory
  monkeypatch.setenv("R1JAX_SANDBOX_DIR", root)
  kids = {p.pid for p in _live_descendants()}
  try:
    yield root
    assert not [p for p in _live_descendants() if p.pid not in kids], "stray child processes"
    assert not _jailed_under(root), "stray jailed processes"
    assert not os.listdir(root), "work directories left behind"
    for path in OUTSIDE:
      assert not os.path.exists(path), f"the program wrote {path}"
  finally:
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def limits(scaled):
  # The wall clock is only the sandbox's backstop: stretched to this machine as loaded now.
  return {"time_limit_s": 0.5, "memory_limit_mb": 256, "wall_limit_s": scaled(10)}


def _run(limits, program: str, tests: str = ADD_TEST):
  result = code.execute(program, tests, **limits)
  assert result.status != "backstop", "stopped by the wall clock, not by the program's limits"
  assert result.passed == 0, result
  return result


ATTACKS = {
    "fork_bomb": """
import os, time
def add(a, b):
    while True:
        try:
            os.fork()
        except OSError:
            time.sleep(0.001)
""",
    "memory_hog": """
hog = []
def add(a, b):
    while True:
        hog.append(bytearray(16 << 20))
""",
    "cpu_loop": "def add(a, b):\n    while True:\n        pass\n",
    "sleep_loop": "import time\ndef add(a, b):\n    while True:\n        time.sleep(0.05)\n",
    "double_fork_daemon": """
import os, time
def add(a, b):
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            time.sleep(30)
            open(%r, 'w').write('daemon was here')
        os._exit(0)
    return 0
""" % OUTSIDE[0],
    "write_outside": """
import os
def add(a, b):
    wrote = 0
    for path in %r + ['../escape_%s']:
        for opener in (lambda p: open(p, 'w'), lambda p: os.open(p, os.O_CREAT | os.O_WRONLY)):
            try:
                opener(path)
                wrote += 1
            except OSError:
                pass
    return wrote
""" % (OUTSIDE, TOKEN),
    "exit_zero_early": "import os\nos._exit(0)\n",
    "sys_exit_in_function": "import sys\ndef add(a, b):\n    sys.exit(0)\n",
    "print_passed_and_forge_records": """
import os, sys
print('PASSED'); print('ok 2/2')
forged = b'{"i": 0, "value": {"t": true}}\\n{"i": 1, "value": {"s": "PASSED"}}\\n'
for fd in range(0, 64):
    try:
        os.write(fd, forged)
    except OSError:
        pass
def add(a, b):
    return None
""",
    "eq_override_and_builtins_patching": """
import builtins, json
class Liar:
    def __eq__(self, other): return True
    def __ne__(self, other): return False
    def __bool__(self): return True
    __hash__ = object.__hash__
class FakeInt(int):
    def __eq__(self, other): return True
    __hash__ = int.__hash__
builtins.isinstance = lambda *a: True
builtins.AssertionError = type('Nothing', (Exception,), {})
json.dumps = lambda *a, **k: '{"i": 0, "value": {"t": true}}'
def add(a, b):
    return Liar() if a == 1 else FakeInt(a * 100)
""",
    "ctypes_and_importlib": """
import os, sys, gc
def add(a, b):
    got = 0
    attempts = [
        lambda: __import__('ctypes').CDLL(None).getpid(),
        lambda: __import__('importlib').import_module('_ctypes').dlopen(None, 0),
        lambda: sys.modules.get('ctypes') or [o for o in gc.get_objects()
                                              if type(o).__name__ == 'PyDLL'][0].PyRun_SimpleString,
        lambda: os.system('true'),
        lambda: __import__('subprocess').run(['true']),
        lambda: setattr([f for f in gc.get_objects() if getattr(f, '__name__', '') == 'hook'][0],
                        '__code__', (lambda e, a: None).__code__),
    ]
    for attempt in attempts:
        try:
            if attempt() is not None:
                got += 1
        except BaseException:
            pass
    return got + a + b - 3 if got else -1
""",
}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack_fails_within_limits_and_leaves_no_trace(name, host, limits):
  _run(limits, ATTACKS[name])


# Asks for four times the 256 MB limit at once: refused before a page is touched, in no time.
MEMORY_AT_ONCE = "def add(a, b):\n    return len(bytearray(1 << 30))\n"


def test_statuses_of_resource_attacks(host, limits):
  # Each program reaches one limit only, unambiguously (the gradual hog can take its time below).
  assert _run(limits, ATTACKS["cpu_loop"]).status == "timeout"
  assert _run(limits, ATTACKS["sleep_loop"]).status == "timeout"
  assert _run(limits, MEMORY_AT_ONCE).status == "memory"
  flood = "while True:\n    print('x' * 65536)\n"
  assert _run(limits, flood, '[{"input": "", "output": "x"}]').status == "output_limit"


def test_memory_is_the_verdict_however_long_the_allocation_took(host, limits):
  # Runs out of memory on the first test, then out of time on the second: the documented
  # precedence makes it `memory`, whatever the program's clock said by the time it was stopped.
  both = ("calls = []\ndef add(a, b):\n    calls.append(1)\n    if len(calls) == 1:\n"
          "        bytearray(1 << 30)\n    while True:\n        pass\n")
  assert _run(limits, both).status == "memory"
  # The gradual hog with all the time it could need: memory, not a race against the clock.
  assert _run({**limits, "time_limit_s": 5.0}, ATTACKS["memory_hog"]).status == "memory"


def test_lines_written_before_the_time_ran_out_still_count(monkeypatch):
  # The program reports its MemoryError just as the clock passes the limit, between two reads of
  # the channel: the parent must read that line before it judges the run.
  from r1jax.rewards import program_clock
  read_end, write_end = os.pipe()

  class LateClock:   # the program's clock: over the limit, with the line arriving meanwhile
    def __init__(self, harness_pid):
      pass

    def charged_s(self):
      os.write(write_end, b'{"i": 0, "error": "MemoryError"}\n')
      return 1.0

  monkeypatch.setattr(program_clock, "ProgramClock", LateClock)
  os.write(write_end, b'{"isolation": []}\n')   # the jail's first line starts the clock
  try:
    limits = sandbox.Limits(time_s=0.5, memory_mb=256)
    lines, why = sandbox._read_channel(read_end, limits, os.getpid())
  finally:
    os.close(read_end)
    os.close(write_end)
  assert why == "timeout"
  assert sandbox._assemble(lines, why, None, 1, 0.0).status == "memory"


def test_secrets_in_env_and_parent_environ_do_not_leak(host, monkeypatch, limits):
  secret = f"s3cr3t-{TOKEN}"
  monkeypatch.setenv("R1JAX_TEST_SECRET", secret)
  program = """
import os
def add(a, b):
    seen = list(os.environ.values())
    for pid in [str(os.getppid())] + os.listdir('/proc'):
        try:
            seen.append(open('/proc/%s/environ' % pid, 'rb').read().decode('latin-1'))
        except OSError:
            pass
    return ' '.join(seen)
"""
  _run(limits, program, f"SECRET = {secret!r}\nassert SECRET in add(1, 2)\n")


def test_no_network_even_to_the_host_loopback(host, limits):
  listener = socket.socket()
  listener.bind(("127.0.0.1", 0))
  listener.listen(1)
  listener.setblocking(False)
  port = listener.getsockname()[1]
  program = f"""
def add(a, b):
    import socket
    s = socket.create_connection(('127.0.0.1', {port}), timeout=0.3)
    s.sendall(b'hello')
    return 3
"""
  try:
    _run(limits, program)
    with pytest.raises(BlockingIOError):
      listener.accept()
  finally:
    listener.close()


def test_cannot_kill_the_parent_or_other_processes(host, limits):
  bystander = subprocess.Popen(["sleep", "30"])
  try:
    program = f"""
import os, signal
def add(a, b):
    for target in (os.getppid(), {os.getpid()}, {bystander.pid}, -1, 1):
        try:
            os.kill(target, signal.SIGKILL)
        except OSError:
            pass
    return 0
"""
    _run(limits, program)
    assert bystander.poll() is None, "the jailed program killed a host process"
  finally:
    bystander.kill()
    bystander.wait()


def test_honest_program_may_use_its_work_directory(host, limits):
  program = """
def add(a, b):
    with open('scratch.txt', 'w') as f:
        f.write(str(a + b))
    return int(open('scratch.txt').read())
"""
  assert code.execute(program, ADD_TEST, **limits).status == "ok"


@pytest.mark.skipif(os.geteuid() != 0, reason="namespaces and setuid need root")
def test_isolation_mechanisms_are_active_as_root(host):
  result = sandbox.run({"mode": "calls", "program": "import os", "setup": "",
                        "items": ["os.getuid()"]}, sandbox.Limits(time_s=1.0, memory_mb=256))
  assert set(result.isolation) == {"netns", "mountns", "pidns", "setuid"}
  assert sandbox.decode(result.records[0]["value"]) == sandbox.NOBODY


def test_harness_dies_with_its_parent(host, scaled):
  """A worker killed mid-run (e.g. replaced as stuck) must not leave its jail behind."""
  script = ("import sys; sys.path.insert(0, %r)\n"
            "from r1jax.rewards import sandbox\n"
            "sandbox.run({'mode': 'calls', 'program': 'import time\\ntime.sleep(30)', 'setup': '',"
            " 'items': ['1']}, sandbox.Limits(time_s=30, memory_mb=256))\n"
            % os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
  worker = subprocess.Popen([sys.executable, "-c", script])
  deadline = time.monotonic() + scaled(10)
  while time.monotonic() < deadline and len(_jailed_under(host)) < 2:
    time.sleep(0.05)
  jail = _jailed_under(host)
  assert len(jail) >= 2, "the harness never forked the jail"
  worker.send_signal(signal.SIGKILL)
  worker.wait()
  _, alive = psutil.wait_procs(jail, timeout=scaled(5))
  assert not alive, f"outlived their worker: {alive}"


def test_harness_whose_parent_died_during_start_up_cleans_up(host):
  """The parent can die before the harness arms its death signal: nobody else would clean up."""
  workdir = tempfile.mkdtemp(prefix="r1jax-sbx-", dir=host)
  spec = {"job": {"mode": "calls", "program": "", "setup": "", "items": []},
          "limits": {}, "workdir": workdir, "result_fd": -1, "parent": -1}  # not our pid
  harness = subprocess.run([sys.executable, "-I", "-S", sandbox.__file__],
                           input=json.dumps(spec).encode(), capture_output=True)
  assert harness.returncode == 1, harness.stderr.decode()
  assert not os.path.exists(workdir)
