"""The R1 pipeline: every variant validates, stage wiring errors are caught at load, and a tiny
pipeline runs end to end through the command line (each stage reading the previous stage's
export, the reward model active only in the last step of RL stage 2), then a re-run skips it all."""
import json
import os
import subprocess
import sys

import pytest
from absl import flags
from ml_collections import config_flags

from r1jax import experiment
from r1jax.config import ConfigError
from r1jax.metrics import read_jsonl
from r1jax.jobs.stages import stage_experiment

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PIPELINE = os.path.join(ROOT, "experiments", "r1_pipeline.py")
ORDER = ["cold_start", "rl1", "rejection", "reward_model", "sft", "rl2"]


def _load(spec):
  fv = flags.FlagValues()
  config_flags.DEFINE_config_file("config", None, "", flag_values=fv, lock_config=True)
  fv(["prog", f"--config={spec}"])
  return fv.config


@pytest.mark.parametrize("variant", ["tiny", "smoke", "paper"])
def test_every_stage_of_every_variant_validates(variant):
  exp = experiment.load(_load(f"{PIPELINE}:{variant}"))
  outputs = {name: f"/runs/{name}/export" for name in exp.pipeline.order}
  stages = {name: stage_experiment(exp, name, outputs) for name in exp.pipeline.order}
  assert list(exp.pipeline.order) == ORDER
  assert stages["rl1"].base_model == outputs["cold_start"] and stages["rl1"].rewards.language_weight > 0
  assert stages["sft"].sft.data[0] == outputs["rejection"]
  rl2 = stages["rl2"]
  assert rl2.preference.model == outputs["reward_model"] and rl2.rollout.temperature == 0.7
  if variant == "paper":
    assert (rl2.loop.steps, rl2.preference.start_step) == (1700, 1300)   # RM in the last 400 steps
    assert stages["rl1"].rl.eps_low == stages["rl1"].rl.eps_high == 10.0
    assert stages["sft"].optim.final_lr_fraction == 0.1 and stages["sft"].sft.row_len == 32_768


def test_stage_wiring_errors_name_the_key():
  config = _load(f"{PIPELINE}:smoke")
  config.pipeline.order = ("rl1", "cold_start", "rejection", "reward_model", "sft", "rl2")
  with pytest.raises(ConfigError, match="pipeline.stages.rl1.set.*'cold_start'.*does not run before"):
    experiment.load(config)
  config = _load(f"{PIPELINE}:smoke")
  config.pipeline.order = ("cold_start",)
  with pytest.raises(ConfigError, match="pipeline.order"):
    experiment.load(config)
  config = _load(f"{PIPELINE}:smoke")
  with config.unlocked():  # the command line already refuses it; a stage key is checked again
    config.pipeline.stages.rl1.set.loop.stepz = 3
  exp = experiment.load(config)
  with pytest.raises(ConfigError, match="pipeline.stages.rl1.set.loop.stepz"):
    stage_experiment(exp, "rl1", {n: "/x" for n in exp.pipeline.order})


def _cli(workdir):
  env = dict(os.environ, XLA_FLAGS="", JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, "-m", "r1jax.main", f"--config={PIPELINE}:smoke",
                         f"--workdir={workdir}"], env=env, cwd=ROOT, capture_output=True,
                        text=True, timeout=900)


def test_tiny_pipeline_runs_end_to_end_and_rerun_skips(tmp_path):
  proc = _cli(tmp_path)
  assert proc.returncode == 0, proc.stderr[-3000:]
  done = json.load(open(tmp_path / "summary.json"))
  assert list(done) == ORDER
  for name in ORDER:
    assert os.path.exists(tmp_path / name / "DONE.json")
  for name in ("cold_start", "rl1", "sft", "rl2", "reward_model"):
    assert os.path.exists(tmp_path / name / "export" / "model.safetensors"), name
    assert os.path.exists(tmp_path / name / "export" / "tokenizer.json"), name
  acceptance = json.load(open(tmp_path / "rejection" / "summary.json"))
  assert acceptance["total"] == 8 * 4
  assert len(read_jsonl(tmp_path / "rejection" / "traces.jsonl")) == acceptance["kept"]
  assert done["reward_model"]["summary"]["last_loss"] < done["reward_model"]["summary"]["first_loss"]
  # RL stage 2: 2 steps with the reward model from step 1 (the last N=1 steps) only.
  metrics = read_jsonl(tmp_path / "rl2" / "metrics.jsonl")
  assert ["reward/preference_mean" in m for m in metrics] == [False, True]
  assert "| rl2 | rl |" in open(tmp_path / "report.md").read()

  again = _cli(tmp_path)
  assert again.returncode == 0, again.stderr[-3000:]
  assert again.stderr.count("complete, skipped") == len(ORDER)
