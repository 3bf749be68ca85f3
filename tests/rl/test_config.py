"""GRPOConfig / OptimConfig: R1 settings are expressible, bad values name their key."""

import pytest

from r1jax.config import ConfigError, from_dict
from r1jax.rl.config import GRPOConfig, OptimConfig


def test_defaults_are_valid_and_r1_stage1_is_expressible():
  GRPOConfig().validate()
  OptimConfig().validate()
  r1 = from_dict(GRPOConfig, {"num_generations": 16, "eps_low": 10, "eps_high": 10,
                              "kl_coef": 0.001, "ref_reset_every": 400, "num_minibatches": 16})
  assert (r1.eps_low, r1.eps_high, r1.kl_estimator, r1.aggregation) == (
      10.0, 10.0, "k3", "seq-mean-token-mean")


@pytest.mark.parametrize("values, key, words", [
    ({"advantage": "gae"}, "rl.advantage", "'grpo', 'no-std', 'rloo', 'batch-std'"),
    ({"kl_estimator": "k4"}, "rl.kl_estimator", "'k1', 'k2', 'k3'"),
    ({"kl_placement": "both"}, "rl.kl_placement", "'loss', 'reward'"),
    ({"aggregation": "mean"}, "rl.aggregation", "'token-mean'"),
    ({"aggregation": "seq-mean-token-sum-norm"}, "rl.max_length", "maximum response length"),
    ({"dual_clip": 1.0}, "rl.dual_clip", "(1.0, inf]"),
    ({"num_generations": 1}, "rl.num_generations", "[2, inf]"),
    ({"eps_low": -0.1}, "rl.eps_low", "[0.0, inf]"),
    ({"micro_batches": 0}, "rl.micro_batches", "[1, inf]"),
    ({"kl_coeff": 0.1}, "rl.kl_coeff", "unknown key"),
    ({"policy_loss": "ppo"}, "rl.policy_loss", "'grpo', 'gspo', 'cispo'"),
    ({"policy_loss": "cispo", "dual_clip": 3.0}, "rl.dual_clip", "leave it None"),
    ({"is_correction": "clip"}, "rl.is_correction", "'none', 'tis', 'mis'"),
    ({"is_correction": "tis"}, "rl.is_correction", "rl.recompute_old_logprobs=true"),
    ({"is_cap": 0.5, "is_correction": "mis", "recompute_old_logprobs": True}, "rl.is_cap",
     "[1.0, inf]"),
    ({"std_ddof": 2}, "rl.std_ddof", "0, 1"),
    ({"aggregation": "seq-sum"}, "rl.aggregation", "'seq-mean-token-sum'"),
    ({"overlong_buffer": 16, "overlong_max_length": 16}, "rl.overlong_max_length",
     "above the buffer"),
    ({"overlong_buffer": -1}, "rl.overlong_buffer", "[0, inf]"),
    ({"dynamic_sampling_max_rounds": 0}, "rl.dynamic_sampling_max_rounds", "[1, inf]"),
])
def test_grpo_config_errors_name_key_and_allowed(values, key, words):
  with pytest.raises(ConfigError) as err:
    from_dict(GRPOConfig, values, "rl")
  assert err.value.key == key and words in str(err.value)


@pytest.mark.parametrize("values, key, words", [
    ({"schedule": "linear"}, "optim.schedule", "'constant', 'cosine'"),
    ({"b2": 1.0}, "optim.b2", "[0.0, 1.0)"),
    ({"final_lr_fraction": 2.0}, "optim.final_lr_fraction", "[0.0, 1.0]"),
    ({"schedule": "cosine", "warmup_steps": 10, "total_steps": 10}, "optim.warmup_steps", "below"),
    ({"grad_clip": -1.0}, "optim.grad_clip", "[0.0, inf]"),
])
def test_optim_config_errors_name_key_and_allowed(values, key, words):
  with pytest.raises(ConfigError) as err:
    from_dict(OptimConfig, values, "optim")
  assert err.value.key == key and words in str(err.value)


def test_loss_kl_coef_follows_placement():
  assert GRPOConfig(kl_coef=0.01).loss_kl_coef == 0.01
  assert GRPOConfig(kl_coef=0.01, kl_placement="reward").loss_kl_coef == 0.0
