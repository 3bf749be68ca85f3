"""The planner's expert-load line: max/mean tokens per expert-parallel device on a skewed
routing, without and with redundant copies of the hottest experts."""
import dataclasses

import numpy as np
import pytest

from r1jax.config import ConfigError
from r1jax.mesh import DEFAULT_RULES
from r1jax.models import ModelConfig, MoEConfig
from r1jax.plan.experts import describe, expert_balance, skewed_load

V3_LIKE = ModelConfig(num_layers=4, moe=MoEConfig(num_experts=64, top_k=8, first_dense_layers=1,
                                                  redundant_experts=2))


def test_redundant_copies_lower_the_busiest_devices_share_of_a_skewed_routing():
  mesh = {"data": 1, "fsdp": 8, "expert": 16, "tensor": 1}
  balance = expert_balance(V3_LIKE, mesh, DEFAULT_RULES)
  load = skewed_load(64)
  per_device = load.reshape(16, 4).sum(1)            # experts 4d .. 4d+3 on device d
  assert balance["imbalance_before"] == pytest.approx(per_device.max() / per_device.mean())
  assert balance["shards"] == 16 and balance["redundant"] == 2 and balance["copied"] >= 1
  assert 1.0 <= balance["imbalance_after"] < 0.75 * balance["imbalance_before"]
  line = describe(balance)
  for key in ("imbalance_before", "imbalance_after"):
    assert f"{balance[key]:.2f}x" in line
  # A rollout's own counts replace the assumed skew.
  flat = expert_balance(V3_LIKE, mesh, DEFAULT_RULES, load=np.ones(64))
  assert flat["imbalance_before"] == pytest.approx(1.0) == flat["imbalance_after"]


def test_no_line_for_dense_models_or_unsplit_experts():
  assert expert_balance(ModelConfig(), {"expert": 8}, DEFAULT_RULES) is None
  assert expert_balance(V3_LIKE, {"fsdp": 8, "expert": 1}, DEFAULT_RULES) is None
  assert describe(None) == ""


def test_redundant_experts_key_is_validated():
  bad = dataclasses.replace(V3_LIKE.moe, redundant_experts=-1)
  with pytest.raises(ConfigError, match=r"redundant_experts.*got -1.*\[0, 64\]"):
    bad.validate()
