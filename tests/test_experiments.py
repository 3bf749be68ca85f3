"""Experiment files: every variant loads and validates; overrides are checked and typos rejected;
keys that moved are still read when they agree, and otherwise name their new key."""
import os
import subprocess
import sys

import pytest
from absl import flags
from ml_collections import config_flags

from r1jax import experiment
from r1jax.config import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
R1_ZERO = os.path.join(ROOT, "experiments", "r1_zero.py")


def _load(spec, **changes):
  """Loads a config file through absl config_flags (locked), then sets `section__key` values."""
  fv = flags.FlagValues()
  config_flags.DEFINE_config_file("config", None, "", flag_values=fv, lock_config=True)
  fv(["prog", f"--config={spec}"])
  config = fv.config
  for path, value in changes.items():
    section, key = path.split("__") if "__" in path else (None, path)
    setattr(config[section] if section else config, key, value)
  return config


@pytest.mark.parametrize("variant", ["tiny", "tiny_control", "smoke", "paper", "7b", "16b_moe", "30b",
                                     "v3", "smoke_v3"])
def test_every_variant_validates(variant):
  exp = experiment.load(_load(f"{R1_ZERO}:{variant}"))
  assert exp.rl.num_generations == 16
  if variant in ("paper", "30b"):
    assert (exp.model.dim, exp.model.num_layers, exp.model.num_kv_heads) == (5120, 64, 8)
    assert exp.data.questions_per_step // exp.rl.num_minibatches == 32   # 32 questions per step
    assert dict(exp.loop.max_new_tokens_schedule) == {0: 32_768, 8_200: 65_536}
    assert exp.rl.kl_coef == 0.001 and exp.rl.ref_reset_every == 400
  if variant == "16b_moe":
    assert exp.model.moe.num_experts == 64 and exp.model.moe.first_dense_layers == 1
  if variant == "v3":
    assert (exp.model.num_layers, exp.model.mla.kv_lora_rank, exp.model.moe.num_experts,
            exp.model.moe.n_group, exp.model.mtp_layers) == (61, 512, 256, 8, 1)
    assert exp.mesh.dcn == (1, 4, 16, 1) and exp.model.moe.routing_replay
    assert exp.rl.kl_coef == 0.001 and exp.rl.eps_low == exp.rl.eps_high == 0.2


def _cli_error(tmp_path, *overrides) -> str:
  """Runs the real command line with overrides that fail validation before any work starts."""
  proc = subprocess.run([sys.executable, "-m", "r1jax.main", f"--config={R1_ZERO}:tiny",
                         f"--workdir={tmp_path}", *[f"--config.{o}" for o in overrides]],
                        capture_output=True, text=True, timeout=300, cwd=ROOT)
  assert proc.returncode != 0
  return proc.stderr


def test_command_line_overrides_are_applied_and_typos_rejected(tmp_path):
  # The override reaches validation (so it was applied) and the error names key and range.
  assert "'rl.kl_coef': got -1.0; allowed range: [0.0, inf]" in _cli_error(tmp_path, "rl.kl_coef=-1")
  assert 'Did you mean "kl_coef"' in _cli_error(tmp_path, "rl.kl_coeff=0.05")


def test_cross_section_errors_name_both_keys():
  with pytest.raises(ConfigError, match=r"rl.num_minibatches.*data.questions_per_step=8"):
    experiment.load(_load(f"{R1_ZERO}:tiny", rl__num_minibatches=3))
  with pytest.raises(ConfigError, match=r"'job'.*'rl', 'base_model'"):
    experiment.load(_load(f"{R1_ZERO}:tiny", job="train"))


@pytest.mark.parametrize("old, new, value", [("rollout.num_samples", "rl.num_generations", 4),
                                             ("rl.temperature", "rollout.temperature", 0.7)])
def test_a_moved_key_is_read_when_it_agrees_and_names_its_new_key_when_not(old, new, value):
  section, key = new.split(".")
  old_section, old_key = old.split(".")
  values = {"rl": {"num_minibatches": 1}, "rollout": {}}   # the defaults split Q into 16 otherwise
  values[section][key] = values[old_section][old_key] = value
  exp = experiment.load(values)
  assert getattr(getattr(exp, section), key) == value
  values[old_section][old_key] = 3
  with pytest.raises(ConfigError, match=rf"'{old}': got 3; this value is set once, as '{new}'"):
    experiment.load(values)
