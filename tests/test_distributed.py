"""Two local processes (CPU, gloo) x 4 devices against one process with 8, via launch/local.py.

The GRPO metrics of a few steps must equal the single-process run's; the checkpoint the two
processes wrote must restore in this process onto another mesh shape, equal to the single-process
state; both processes must get through the shutdown barrier however far apart they arrive; and when
one process dies, the other must be stopped by the coordination service's heartbeat instead of
hanging. The launcher's timeout and the heartbeat are wall-clock waits, so they are scaled by how
slow the machine is at the start of the test.
"""

import json
import math
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import distributed_worker as worker  # noqa: E402

from r1jax import distributed  # noqa: E402
from r1jax.checkpoint import Checkpointer  # noqa: E402
from r1jax.mesh import MeshConfig, make_mesh  # noqa: E402
from r1jax.rl.step import state_shardings  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The hang guard for a test that launches processes: a quiet 2-core machine needs 2 minutes, a
# saturated one several times that; the launcher's own timeout is scaled by the machine's speed.
LAUNCH_TEST_TIMEOUT_S = 1800


def _launch(out_dir, scaled, *extra):
  timeout_s = scaled(240)
  cmd = [sys.executable, os.path.join(ROOT, "launch", "local.py"), "--processes=2",
         "--devices_per_process=4", f"--log_dir={out_dir}/logs",
         f"--heartbeat_s={math.ceil(scaled(10))}", f"--timeout_s={timeout_s}", "--",
         sys.executable, os.path.join(ROOT, "tests", "distributed_worker.py"), str(out_dir), *extra]
  proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s + 60)
  assert "timed out" not in proc.stderr, proc.stderr   # the launcher's timeout is only a guard
  return proc


def _logs(out_dir) -> str:
  return "\n".join(open(os.path.join(out_dir, "logs", f)).read()
                   for f in sorted(os.listdir(os.path.join(out_dir, "logs"))))


@pytest.mark.slow
@pytest.mark.timeout(LAUNCH_TEST_TIMEOUT_S)
def test_two_processes_equal_one_and_checkpoint_restores_on_another_mesh(tmp_path, scaled):
  # Process 1 reaches the shutdown barrier later than a heartbeat timeout after process 0.
  proc = _launch(tmp_path / "two", scaled, f"--late_exit_s={scaled(10) + 5}")
  assert proc.returncode == 0, proc.stderr + _logs(tmp_path / "two")[-3000:]
  two = json.loads((tmp_path / "two" / "metrics.json").read_text())
  assert two["processes"] == 2 and two["local_rows"] == 8   # each process loaded half the rows

  history, state = worker.run(str(tmp_path / "one"))
  assert len(history) == len(two["history"]) == worker.STEPS
  for mine, theirs in zip(history, two["history"]):
    assert mine.keys() == theirs.keys()
    for key in mine:
      np.testing.assert_allclose(theirs[key], mine[key], rtol=2e-5, atol=1e-6, err_msg=key)
  assert history[-1]["loss"] != history[0]["loss"]   # the steps did change the policy

  other = make_mesh(MeshConfig(ici=(1, 2, 1, 4), dcn=(1, 1, 1, 1)))
  shardings = state_shardings(worker.MODEL, worker.OPTIM, other)
  target = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                        state, shardings)
  ckpt = Checkpointer(str(tmp_path / "two" / "ckpt"))
  restored, meta, _ = ckpt.restore(ckpt.latest_step(), {"train": target})
  ckpt.close()
  assert meta["step"] == worker.STEPS
  leaves = jax.tree.leaves(restored["train"].params)
  assert any(x.sharding.spec != s.sharding.spec for x, s in zip(leaves, jax.tree.leaves(state.params)))
  # Gloo and in-process reductions sum in different orders; Adam's lr=1e-2 steps carry that
  # float32 noise into the weights at ~1e-6.
  for got, want in zip(leaves, jax.tree.leaves(state.params)):
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
@pytest.mark.timeout(LAUNCH_TEST_TIMEOUT_S)
def test_dead_process_stops_the_other_with_an_error(tmp_path, scaled):
  proc = _launch(tmp_path / "die", scaled, "--die_after=1")
  assert proc.returncode != 0
  assert "process 1 failed first (exit code 3)" in proc.stderr
  # The survivor was stopped by the heartbeat, not by the launcher after its grace period.
  logs = _logs(tmp_path / "die")
  assert "stopped sending heartbeats" in logs or "another task died" in logs, logs[-3000:]


def test_initialize_separates_death_from_lateness(monkeypatch):
  calls = []
  monkeypatch.setattr(distributed, "_initialized", False)
  monkeypatch.setattr(jax.distributed, "initialize", lambda *a, **k: calls.append((a, k)))
  monkeypatch.setattr(jax.distributed, "shutdown", lambda: calls.append("shutdown"))
  env = {"R1JAX_COORDINATOR": "127.0.0.1:1", "R1JAX_NUM_PROCESSES": "2", "R1JAX_PROCESS_ID": "1",
         "R1JAX_HEARTBEAT_TIMEOUT_S": "7"}
  distributed.initialize(env)
  assert calls == [(("127.0.0.1:1", 2, 1), {"heartbeat_timeout_seconds": 7,
                                            "initialization_timeout": 600,
                                            "shutdown_timeout_seconds": 600})]
  distributed.shutdown()
  distributed.shutdown()   # once only
  assert calls[1:] == ["shutdown"]


def test_barrier_waits_for_stragglers_in_a_multi_process_run(monkeypatch):
  calls = []

  class Client:   # the coordination service's client, as jax.distributed holds it
    def wait_at_barrier(self, name, timeout_ms):
      calls.append((name, timeout_ms))

  from jax._src import distributed as jax_distributed
  monkeypatch.setattr(jax_distributed.global_state, "client", Client())
  monkeypatch.setattr(distributed, "_initialized", True)
  distributed.barrier("first_step", {"R1JAX_STRAGGLER_TIMEOUT_S": "9"})
  assert calls == [("first_step", 9000)]
  monkeypatch.setattr(distributed, "_initialized", False)
  distributed.barrier("single_process")
  assert len(calls) == 1


@pytest.mark.parametrize("name,value", [("R1JAX_HEARTBEAT_TIMEOUT_S", "0"),
                                        ("R1JAX_STRAGGLER_TIMEOUT_S", "ten")])
def test_bad_timeouts_are_clear_errors(name, value):
  with pytest.raises(ValueError, match=name):
    distributed.initialize({"R1JAX_COORDINATOR": "127.0.0.1:1", name: value})


def test_abandon_exits_at_once_in_a_multi_process_run():
  script = ("from r1jax import distributed\n"
            "distributed._initialized = True  # as after initialize() in one of several processes\n"
            "try:\n  raise RuntimeError('boom')\nexcept RuntimeError:\n  distributed.abandon()\n"
            "print('not reached')\n")
  proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                        env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert proc.returncode == 1 and "RuntimeError: boom" in proc.stderr
  assert "not reached" not in proc.stdout


def test_slurm_script_sets_coordinator_ranks_and_command(tmp_path):
  out = tmp_path / "job.sbatch"
  subprocess.run([sys.executable, os.path.join(ROOT, "launch", "slurm.py"), "--nodes=64",
                  "--config=experiments/r1_zero.py:30b", f"--workdir={tmp_path}/run",
                  "--override=rl.kl_coef=0.01", f"--out={out}"], check=True, capture_output=True)
  text = out.read_text()
  assert "#SBATCH --nodes=64" in text and "#SBATCH --gpus-per-node=8" in text
  assert 'R1JAX_NUM_PROCESSES="$SLURM_NNODES"' in text and "R1JAX_PROCESS_ID=$SLURM_PROCID" in text
  assert "-m r1jax.main --config=experiments/r1_zero.py:30b" in text
  assert "--config.rl.kl_coef=0.01" in text
  assert subprocess.run(["bash", "-n", str(out)]).returncode == 0
