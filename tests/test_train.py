"""The R1-Zero loop: its learn loop's reference reset, and end to end the real command line,
exact resume after SIGKILL, NaN stop, and the report."""
import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from r1jax import models, report
from r1jax.mesh import MeshConfig, make_mesh
from r1jax.metrics import read_jsonl
from r1jax.rl.batch import LearnerBatch
from r1jax.rl.config import GRPOConfig, OptimConfig
from r1jax.rl.reference import copy_params
from r1jax.rl.step import init_train_state, make_train_step
from r1jax.train import learn, scheduled

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = os.path.join(ROOT, "experiments", "r1_zero.py") + ":smoke"
# Timing keys differ between any two runs; everything else must repeat exactly.
VOLATILE = ("time/",)


TINY = models.ModelConfig(vocab_size=32, dim=16, num_layers=1, num_heads=2, num_kv_heads=1,
                          head_dim=8, ffn_dim=32)
OPTIM = OptimConfig(lr=0.1)


def _minibatch(seed, prompts=2, g=2, p=3, t=4):
  rng = np.random.default_rng(seed)
  n = prompts * g
  uniform = np.full((n, t), -np.log(TINY.vocab_size), np.float32)
  return LearnerBatch(prompt_tokens=rng.integers(1, 32, (prompts, p)).astype(np.int32),
                      prompt_mask=np.ones((prompts, p), bool),
                      completion_tokens=rng.integers(1, 32, (n, t)).astype(np.int32),
                      completion_mask=np.ones((n, t), bool), old_logprobs=uniform,
                      ref_logprobs=uniform, truncated=np.zeros(n, bool),
                      advantages=np.tile([1.0, -1.0], prompts).astype(np.float32))


def test_learn_replaces_the_reference_every_k_steps_and_stops_at_the_last_step():
  mesh = make_mesh(MeshConfig(), jax.devices()[:1])
  train_step = make_train_step(TINY, GRPOConfig(num_generations=2), OPTIM, mesh)
  batches = [_minibatch(i) for i in range(3)]
  host = lambda tree: jax.tree.map(np.asarray, tree)
  same = lambda a, b: all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a),
                                                               jax.tree.leaves(b)))

  def run(count, every, last_step=10):
    state = init_train_state(TINY, OPTIM, jax.random.key(0), mesh)
    initial = host(state.params)
    state, ref, metrics = learn(train_step, state, copy_params(state.params), batches[:count],
                                step=0, last_step=last_step, ref_reset_every=every)
    return initial, host(state.params), host(ref), metrics

  initial, p1, ref1, _ = run(1, every=2)
  assert same(ref1, initial) and not same(p1, initial)      # before K: the initial policy
  _, p2, _, _ = run(2, every=0)
  _, p3, ref3, _ = run(3, every=2)
  assert same(ref3, p2) and not same(ref3, p3)              # replaced at K, kept after it
  _, _, _, metrics = run(3, every=2, last_step=2)
  assert len(metrics) == 2                                  # no step beyond the last


def test_schedules_are_piecewise_constant():
  schedule = ((0, 32_768), (8_200, 65_536))
  assert scheduled(schedule, 0, 1) == 32_768
  assert scheduled(schedule, 8_199, 1) == 32_768
  assert scheduled(schedule, 8_200, 1) == 65_536
  assert scheduled((), 5, 7) == 7


def _cli(workdir, *overrides, **kwargs):
  env = dict(os.environ, XLA_FLAGS="", JAX_PLATFORMS="cpu")
  args = [sys.executable, "-m", "r1jax.main", f"--config={SMOKE}", f"--workdir={workdir}",
          *[f"--config.{o}" for o in overrides]]
  return subprocess.Popen(args, env=env, cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, **kwargs)


def _stable(records):
  return [{k: v for k, v in r.items() if not k.startswith(VOLATILE)} for r in records]


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("reference")
  proc = _cli(workdir)
  out, _ = proc.communicate(timeout=600)
  assert proc.returncode == 0, out.decode()[-3000:]
  return workdir, out.decode()


def test_cli_run_writes_metrics_summary_checkpoints_and_events(reference_run):
  workdir, out = reference_run
  summary = json.load(open(workdir / "summary.json"))
  assert summary["steps"] == 3 and summary["first"]["step"] == 0 and summary["last"]["step"] == 3
  for key in ("pass@1", "cons@k", "response_length", "reflective_words_per_response"):
    assert 0 <= summary["last"][key] < float("inf")
  metrics = read_jsonl(workdir / "metrics.jsonl")
  assert [r["step"] for r in metrics] == [1, 2, 3]
  for key in ("loss", "grad_norm", "lr", "reward/mean", "clip_frac/low", "approx_kl/ref",
              "entropy", "response_length/mean", "time/reward_wait_s"):
    assert key in metrics[0], key
  assert [r["step"] for r in read_jsonl(workdir / "eval.jsonl")] == [0, 2, 3]
  assert os.listdir(workdir / "tensorboard")
  assert sorted(int(s) for s in os.listdir(workdir / "checkpoints") if s.isdigit())[-1] == 3


def test_sigkill_then_resume_repeats_the_uninterrupted_metrics(reference_run, tmp_path):
  reference, _ = reference_run
  proc = _cli(tmp_path)
  deadline = time.time() + 600
  # Kill it the moment the first checkpoint is complete (mid-run, before the last step).
  while not (tmp_path / "checkpoints" / "2").exists():
    assert proc.poll() is None and time.time() < deadline, proc.communicate()[0].decode()[-3000:]
    time.sleep(0.2)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  resumed = _cli(tmp_path)
  out, _ = resumed.communicate(timeout=600)
  assert resumed.returncode == 0, out.decode()[-3000:]
  assert b"resumed from step 2" in out
  assert _stable(read_jsonl(tmp_path / "metrics.jsonl")) == _stable(
      read_jsonl(reference / "metrics.jsonl"))
  assert read_jsonl(tmp_path / "eval.jsonl") == read_jsonl(reference / "eval.jsonl")


def test_state_in_host_memory_repeats_the_plain_run(reference_run, tmp_path):
  """`optim.offload=between_updates` through the command line: the float32 master and the Adam
  moments wait in host memory (through sampling, evaluation and between updates) and the run's
  metrics and evaluations equal the plain run's, checkpoint included."""
  reference, _ = reference_run
  proc = _cli(tmp_path, "optim.offload=between_updates", "loop.steps=2")
  out, _ = proc.communicate(timeout=600)
  assert proc.returncode == 0, out.decode()[-3000:]
  assert _stable(read_jsonl(tmp_path / "metrics.jsonl")) == _stable(
      read_jsonl(reference / "metrics.jsonl"))[:2]
  assert read_jsonl(tmp_path / "eval.jsonl") == read_jsonl(reference / "eval.jsonl")[:2]
  assert (tmp_path / "checkpoints" / "2").exists()


def test_nan_loss_stops_with_clear_error_and_keeps_last_good_checkpoint(tmp_path):
  # An absurd learning rate blows the policy up within a few steps.
  proc = _cli(tmp_path, "optim.lr=1e30", "optim.grad_clip=0", "loop.save_every=1")
  out, _ = proc.communicate(timeout=600)
  text = out.decode()
  assert proc.returncode != 0
  assert "NonFiniteLossError" in text and "last good checkpoint is kept" in text
  saved = [int(s) for s in os.listdir(tmp_path / "checkpoints") if s.isdigit()]
  metrics = read_jsonl(tmp_path / "metrics.jsonl")
  assert all(s <= len(metrics) for s in saved)


def test_report_renders_plots_and_table(reference_run, tmp_path):
  workdir, _ = reference_run
  path, _ = report.write_run_report(str(workdir), control=str(workdir))
  text = open(path).read()
  assert "| run |" in text and "| control |" in text
  for name in ("accuracy.png", "response_length.png", "reflection.png", report.DIFFICULTY_PLOT):
    assert os.path.getsize(workdir / name) > 1000


def test_bad_override_names_the_key(tmp_path):
  proc = _cli(tmp_path, "rl.kl_estimator=k9")
  out, _ = proc.communicate(timeout=300)
  assert proc.returncode != 0
  assert b"rl.kl_estimator" in out and b"'k1', 'k2', 'k3'" in out


def test_length_by_difficulty_table_and_plot(tmp_path):
  key = "response_length/difficulty="
  runs = {"run": [{"step": 0, f"{key}1": 10.0, f"{key}3": 30.0},
                  {"step": 5, f"{key}1": 12.0, f"{key}3": 55.5}],
          "control": [{"step": 0, f"{key}1": 10.0}, {"step": 5, f"{key}1": 9.0}]}
  table = report.length_by_difficulty_table(runs).splitlines()
  assert table[0] == "| run | step | difficulty 1 | difficulty 3 |"
  assert table[2:] == ["| run | 0 | 10.0 | 30.0 |", "| run | 5 | 12.0 | 55.5 |",
                       "| control | 0 | 10.0 | - |", "| control | 5 | 9.0 | - |"]
  assert os.path.getsize(report.plot_length_by_difficulty(runs, str(tmp_path))) > 1000
  assert report.length_by_difficulty_table({"run": [{"step": 0}]}) == ""
  assert report.plot_length_by_difficulty({"run": [{"step": 0}]}, str(tmp_path)) is None
