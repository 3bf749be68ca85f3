"""The expert-parallel load a MoE policy's layout implies, without and with redundant copies of
its hottest experts (`model.moe.redundant_experts` slots per expert-parallel device).

The plan has no rollout to count tokens from, so it takes a skewed routing (expert loads
falling as 1 / rank^exponent, the hottest experts spread over the devices at random) unless a
rollout's per-expert token counts (`expert_load`) are given. Imbalance is the busiest device's
tokens over the mean: it sets the all-to-all and expert-matmul time of every MoE layer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from r1jax.models import ModelConfig
from r1jax.models.expert_placement import device_loads, imbalance, place_experts

SKEW_EXPONENT = 1.0


def skewed_load(num_experts: int, exponent: float = SKEW_EXPONENT, seed: int = 0) -> np.ndarray:
  """Tokens per expert [E] of a Zipf-like routing, its hot experts at random positions."""
  load = 1.0 / np.arange(1, num_experts + 1) ** exponent
  return np.random.default_rng(seed).permutation(load * 1e6 / load.sum())


def expert_shards(mesh_shape: Mapping[str, int], rules) -> int:
  """How many devices the `expert` logical axis splits the experts over."""
  axes = dict(rules).get("expert", ())
  axes = (axes,) if isinstance(axes, str) else axes
  return math.prod(mesh_shape.get(a, 1) for a in axes)


def expert_balance(model_cfg: ModelConfig, mesh_shape: Mapping[str, int], rules,
                   load=None) -> dict | None:
  """{shards, redundant, imbalance_before, imbalance_after, copied} for a MoE policy (None for a
  dense one or one whose experts are not split). With model.moe.redundant_experts = 0 the
  figures are for 1 slot per device, what enabling it would give."""
  moe = model_cfg.moe
  shards = expert_shards(mesh_shape, rules)
  if moe is None or not model_cfg.num_moe_layers or shards <= 1:
    return None
  load = skewed_load(moe.num_experts) if load is None else np.asarray(load, np.float64)
  redundant = moe.redundant_experts or 1
  before = place_experts(load, shards, 0)
  after = place_experts(load, shards, redundant)
  return {"shards": shards, "redundant": redundant, "configured": moe.redundant_experts,
          "imbalance_before": imbalance(device_loads(load, before)),
          "imbalance_after": imbalance(device_loads(load, after)),
          "copied": int((after.copies > 1).sum())}


def describe(balance: dict | None, routing: str = f"Zipf({SKEW_EXPONENT:g})-skewed") -> str:
  """One plan line for :func:`expert_balance`'s figures ("" without them)."""
  if balance is None:
    return ""
  slots = (f"{balance['redundant']} redundant slot(s) per device" if balance["configured"] else
           f"with --config.model.moe.redundant_experts={balance['redundant']}")
  return (f"expert load ({routing} routing, {balance['shards']} expert-parallel devices): busiest "
          f"device {balance['imbalance_before']:.2f}x the mean; {slots} holding copies of "
          f"{balance['copied']} hot experts: {balance['imbalance_after']:.2f}x")
