"""The real command line (`python -m r1jax.main`) on two local processes x 4 CPU devices (gloo),
started by launch/local.py, against one process with 8 devices. A pipeline of the rl, rejection
and evaluate jobs, started on an empty data dir, gives the results of one process (RL metrics and
evaluations equal step for step, the same kept traces, the same evaluation), the checkpoint the
two processes wrote resumes in one process and continues exactly as the one-process run, and both
get through the shutdown barrier. The jobs that run on one process only (base_model, sft,
reward_model, and a pipeline with such a stage) refuse two at once with a one-line error. When
one process is killed the other exits with an error within 120 s instead of hanging. Waits are
generous hang guards only, except that 120 s bound, which is the promise under test.
"""

import glob
import json
import os
import re
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from r1jax import distributed
from r1jax.metrics import read_jsonl

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = os.path.join(ROOT, "experiments", "r1_zero.py") + ":smoke"
MESH = ["--config.mesh.ici=(1,4,1,1)", "--config.mesh.dcn=(2,1,1,1)"]
# The hang guard of one command on a saturated 2-core machine.
GUARD_S = 1800
VOLATILE = ("time/",)   # timings differ between any two runs


def _main(workdir, *overrides, config=SMOKE):
  return [sys.executable, "-m", "r1jax.main", f"--config={config}", *MESH, f"--workdir={workdir}",
          *overrides]


def _one_process(workdir, *overrides, config=SMOKE):
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             XLA_FLAGS="--xla_force_host_platform_device_count=8")
  proc = subprocess.run(_main(workdir, *overrides, config=config), cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=GUARD_S)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc


def _launcher(workdir, *overrides, config=SMOKE, flags=()):
  return subprocess.Popen(
      [sys.executable, os.path.join(ROOT, "launch", "local.py"), "--processes=2",
       "--devices_per_process=4", f"--log_dir={workdir}/logs", *flags, "--",
       *_main(workdir, *overrides, config=config)], cwd=ROOT, stderr=subprocess.PIPE, text=True)


def _two_processes(workdir, *overrides, config=SMOKE):
  launcher = _launcher(workdir, *overrides, config=config)
  _, err = launcher.communicate(timeout=GUARD_S)
  return launcher.returncode, err


def _logs(workdir) -> str:
  logs = os.path.join(workdir, "logs")
  return "\n".join(open(os.path.join(logs, f)).read()[-3000:] for f in sorted(os.listdir(logs)))


def _records(path):
  return [{k: v for k, v in r.items() if not k.startswith(VOLATILE)} for r in read_jsonl(path)]


def _assert_equal_records(got, want):
  assert [r["step"] for r in got] == [r["step"] for r in want]
  for mine, theirs in zip(got, want):
    assert mine.keys() == theirs.keys(), (mine.keys() ^ theirs.keys())
    for key in mine:
      # Gloo and in-process reductions sum in different orders: float32 noise only.
      np.testing.assert_allclose(mine[key], theirs[key], rtol=1e-4, atol=1e-6,
                                 err_msg=f"step {mine['step']} {key}")


# RL, rejection sampling and evaluation as the stages of one pipeline: four jobs in one launch.
# The later stages sample the base model, so the RL stage's length does not change them.
PIPELINE = """
import runpy
def get_config(arg=""):
  c = runpy.run_path(%r)["get_config"]("smoke")
  c.job = "pipeline"
  c.pipeline.stages = {
      "train": {"job": "rl", "set": {}},
      "sample": {"job": "rejection", "set": {"rejection": {
          "num_problems": 4, "num_samples": 2, "prompts_per_batch": 4, "require_format": False}}},
      "score": {"job": "evaluate", "set": {}}}
  c.pipeline.order = ("train", "sample", "score")
  return c
""" % SMOKE.split(":")[0]


@pytest.mark.slow
@pytest.mark.timeout(4 * GUARD_S)
def test_two_processes_run_the_jobs_as_one_and_their_checkpoint_resumes_on_one(tmp_path):
  config = tmp_path / "pipeline.py"
  config.write_text(PIPELINE)
  two, one = tmp_path / "two", tmp_path / "one"
  # The two processes start from an empty data dir: one builds the dataset, the other waits.
  data = f"--config.data.data_dir={tmp_path / 'data'}"
  code, err = _two_processes(two, "--config.loop.steps=2", data, config=str(config))
  assert code == 0, err + _logs(two)
  assert "failed" not in err and "Shutdown barrier" not in _logs(two)
  [copy] = glob.glob(str(tmp_path / "data" / "r1_procedural" / "*"))   # one copy, no leftovers
  assert sorted(os.listdir(copy)) == ["1.0.0", "1.0.0.lock"]
  _one_process(one, "--config.loop.steps=3", data, config=str(config))

  # rl: equal metrics and evaluations step for step.
  want = _records(one / "train" / "metrics.jsonl")
  assert [r["step"] for r in want] == [1, 2, 3]
  assert want[1]["loss"] != want[0]["loss"]   # the steps did change the policy
  _assert_equal_records(_records(two / "train" / "metrics.jsonl"), want[:2])
  _assert_equal_records(_records(two / "train" / "eval.jsonl"),
                        _records(one / "train" / "eval.jsonl")[:2])
  # Only process 0 wrote: one line per step, one summary.
  assert json.loads((two / "train" / "summary.json").read_text())["steps"] == 2
  # rejection: every process's prompts' samples judged and kept as texts, as on one process.
  got, mine = (json.loads((d / "summary.json").read_text()) for d in (two, one))
  assert list(got) == ["train", "sample", "score"]
  assert got["sample"]["summary"] == mine["sample"]["summary"]
  assert mine["sample"]["summary"]["kept"] > 0
  assert read_jsonl(two / "sample" / "traces.jsonl") == read_jsonl(one / "sample" / "traces.jsonl")
  # evaluate: the same metrics, overall and per difficulty.
  for metrics in ("last", "by_difficulty"):
    np.testing.assert_allclose(_flat(got["score"]["summary"][metrics]),
                               _flat(mine["score"]["summary"][metrics]), rtol=1e-5)

  # The two processes' checkpoint (step 2) resumes in one process and repeats its step 3.
  proc = _one_process(two / "train", "--config.loop.steps=3", data)
  assert "resumed from step 2" in proc.stderr
  _assert_equal_records(_records(two / "train" / "metrics.jsonl"), want)


def _flat(tree) -> list[float]:
  if isinstance(tree, dict):
    return [x for key in sorted(tree) for x in _flat(tree[key])]
  return [float(tree)]


@pytest.mark.slow
@pytest.mark.parametrize("config,refusal", [
    ("base_pretrain.py", "the base_model job runs on one process; got 2"),
    ("r1_pipeline.py:smoke", "the pipeline job runs on one process when a stage does; its stages "
     "cold_start (sft), reward_model (reward_model), sft (sft) run on one process; got 2")])
def test_single_process_jobs_refuse_two_processes_at_once(tmp_path, config, refusal):
  code, err = _two_processes(tmp_path, config=os.path.join(ROOT, "experiments", config))
  logs = _logs(tmp_path)
  assert code != 0 and f"error: {refusal}" in logs, err + logs
  # One line, before anything ran: no traceback, no stage directory, no export.
  assert "Traceback" not in logs and sorted(os.listdir(tmp_path)) == ["logs"]


@pytest.mark.slow
@pytest.mark.timeout(2 * GUARD_S)
def test_a_killed_process_makes_the_other_exit_with_an_error(tmp_path):
  # The launcher would stop the survivor only after 300 s: what stops it sooner is its own error.
  launcher = _launcher(tmp_path, "--config.loop.steps=1000",
                       flags=("--heartbeat_s=30", "--grace_s=300"))
  pid = {}
  while len(pid) < 2:
    line = launcher.stderr.readline()
    assert line, "the launcher ended before starting its processes"
    if m := re.match(r"launch/local.py: process (\d) pid (\d+)", line):
      pid[int(m[1])] = int(m[2])
  metrics = tmp_path / "metrics.jsonl"
  deadline = time.monotonic() + GUARD_S
  while not (metrics.exists() and metrics.read_text().strip()):   # both are in the loop
    assert launcher.poll() is None, launcher.stderr.read() + _logs(tmp_path)
    assert time.monotonic() < deadline, "no training step within the guard"
    time.sleep(1)
  os.kill(pid[1], signal.SIGKILL)
  killed = time.monotonic()
  _, err = launcher.communicate(timeout=GUARD_S)
  codes = [int(c) for c in re.search(r"exit codes \[(-?\d+), (-?\d+)\]", err).groups()]
  # Process 0 stopped with an error of its own (not the launcher's SIGTERM), within 120 s.
  assert codes[1] == -signal.SIGKILL and codes[0] not in (0, -signal.SIGTERM), err
  assert time.monotonic() - killed < 120, err + _logs(tmp_path)


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
  monkeypatch.setattr(distributed, "_passages", {})
  distributed.barrier("first_step", {"R1JAX_STRAGGLER_TIMEOUT_S": "9"})
  distributed.barrier("first_step", {"R1JAX_STRAGGLER_TIMEOUT_S": "9"})   # e.g. the next stage
  assert calls == [("first_step_1", 9000), ("first_step_2", 9000)]
  monkeypatch.setattr(distributed, "_initialized", False)
  distributed.barrier("single_process")
  assert len(calls) == 2


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


def test_launcher_stops_its_processes_when_terminated(tmp_path):
  launcher = subprocess.Popen(
      [sys.executable, os.path.join(ROOT, "launch", "local.py"), "--processes=2", "--",
       sys.executable, "-c", "import time; time.sleep(600)"], cwd=ROOT, stderr=subprocess.PIPE,
      text=True)
  pids = [int(launcher.stderr.readline().split()[-1]) for _ in range(2)]
  launcher.terminate()
  launcher.wait(timeout=GUARD_S)
  for pid in pids:   # reaped by the launcher, so no such process is left
    with pytest.raises(ProcessLookupError):
      os.kill(pid, 0)


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
