"""The sandbox's time limit: CPU time of the program's whole process tree plus the time it sat idle,
never the time it waited for a CPU; the wall clock only as a backstop; limits checked up front; and
the jail's CPU priority no higher than its worker's."""
import os
import subprocess
import sys

import pytest

from r1jax.rewards import code, sandbox

ADD_TEST = "assert add(1, 2) == 3\n"
HELPERS = """
import os, threading, time

def burn(cpu_s):
    while time.process_time() < cpu_s:
        pass

def sleepers(n, seconds):
    threads = [threading.Thread(target=time.sleep, args=(seconds,)) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

def burn_in_children(n, cpu_s):
    pids = []
    for _ in range(n):
        pid = os.fork()
        if pid == 0:
            burn(cpu_s)
            os._exit(0)
        pids.append(pid)
    for pid in pids:
        os.waitpid(pid, 0)
"""



@pytest.fixture
def limits(scaled):
  # The wall clock is only the backstop here: stretched to this machine as loaded now.
  return {"time_limit_s": 0.5, "memory_limit_mb": 256, "wall_limit_s": scaled(10)}


@pytest.mark.parametrize("body,status", [
    ("burn(0.2)", "ok"),
    ("burn(5.0)", "timeout"),
    ("time.sleep(0.2)", "ok"),                 # idle time is charged ...
    ("time.sleep(5.0)", "timeout"),            # ... so a sleeper times out instead of hanging
    ("sleepers(4, 0.3)", "ok"),                # threads idle together: 0.3 s, not 1.2 s
    ("burn_in_children(2, 0.2)", "ok"),
    ("burn_in_children(2, 0.35)", "timeout"),  # CPU of child processes adds up: 0.7 s
])
def test_charged_time(body, status, limits):
  program = f"{HELPERS}\ndef add(a, b):\n    {body}\n    return a + b\n"
  assert code.execute(program, ADD_TEST, **limits).status == status


def test_wall_clock_backstop_is_its_own_status():
  # No interpreter starts in a millisecond: the backstop ends the run during start-up.
  result = code.execute("def add(a, b):\n    return a + b\n", ADD_TEST, time_limit_s=0.001,
                        memory_limit_mb=256, wall_limit_s=0.001)
  assert (result.status, result.passed) == ("backstop", 0)


def test_backstop_defaults_to_a_multiple_of_the_limit():
  assert sandbox.Limits(time_s=2.0, memory_mb=64).backstop_s == 20.0
  assert sandbox.Limits(time_s=0.1, memory_mb=64).backstop_s == sandbox.BACKSTOP_MIN_S
  assert sandbox.Limits(time_s=2.0, memory_mb=64, wall_s=3.0).backstop_s == 3.0


@pytest.mark.parametrize("kwargs,match", [
    ({"time_s": 0.0}, "time_s must be positive"),
    ({"time_s": 2.0, "wall_s": 1.0}, "must be at least time_s"),
])
def test_bad_limits_are_clear_errors(kwargs, match):
  with pytest.raises(ValueError, match=match):
    sandbox.Limits(memory_mb=64, **kwargs)


def test_missing_sandbox_dir_is_a_clear_error(monkeypatch, tmp_path, limits):
  monkeypatch.setenv("R1JAX_SANDBOX_DIR", str(tmp_path / "missing"))
  with pytest.raises(ValueError, match="R1JAX_SANDBOX_DIR"):
    code.execute("def add(a, b):\n    return a + b\n", ADD_TEST, **limits)


@pytest.mark.skipif(not os.path.exists("/proc/self/autogroup"),
                    reason="no session scheduling groups")
def test_jail_gets_no_more_cpu_priority_than_its_worker(limits):
  # A worker in a session niced to 5: the jail's new session must not be back at the default 0.
  script = f"""
from r1jax.rewards import code
with open("/proc/self/autogroup", "w") as f:
    f.write("5")
program = "def add(a, b):\\n    return open('/proc/self/autogroup').read().split()[-1]\\n"
print(code.execute(program, "assert add(1, 2) == '5'", **{limits!r}).status)
"""
  out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       start_new_session=True)
  assert out.stdout.strip() == "ok", out.stderr[-2000:]
