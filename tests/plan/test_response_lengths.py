"""The sampler's price for --response_lengths against a plain simulation of a sampler that
refills finished rows' slots and reads each row's cache only up to its own filled position."""

import types

import numpy as np
import pytest

from r1jax.plan.estimate import sampler_seconds
from r1jax.plan.hardware import H800


def _simulate(lengths, slots: int, weights: float, prompt: float, per_position: float) -> float:
  """HBM bytes of decoding rows of `lengths` in `slots` slots, each slot taking the next waiting
  row when its own ends: every step reads the weights and prompts' cache once, and each running
  row its cache positions written so far."""
  queue, running, total = list(lengths), [], 0.0
  while queue or running:
    while queue and len(running) < slots:
      running.append([queue.pop(0), 0])
    total += weights + prompt
    for row in running:
      row[1] += 1
      total += row[1] * per_position
    running = [r for r in running if r[1] < r[0]]
  return total


@pytest.mark.parametrize("lengths", ["budget", "uniform"])
def test_sampler_bytes_match_a_refilling_simulation(lengths):
  t, slots, calls = 256, 32, 64       # 64 calls' worth of rows through the same 32 slots: the
  # drain at the end (fewer rows than slots, the weights still read every step) is then small
  weights, prompt, per_row_position = 5e6, 3e5, 2e3
  rows = slots * calls
  spread = np.full(rows, t) if lengths == "budget" else np.linspace(1, t, rows).round()
  order = np.random.default_rng(0).permutation(rows)
  simulated = _simulate([int(x) for x in spread[order]], slots, weights, prompt, per_row_position)
  kv = {"decode_weights": weights, "prompt": prompt, "generated": slots * t * per_row_position}
  flops = {"budget": 1.0, "uniform": 1.0, "compiled": 1.0}
  rollout = types.SimpleNamespace(hlo_flops=0.0)
  priced = sampler_seconds(rollout, kv, t, lengths, flops, H800, 1.0, 0.0, filled=True)
  assert calls * priced["hbm_bytes"] == pytest.approx(simulated, rel=0.03)


def test_uniform_lengths_cost_less_and_scale_the_decode_flops():
  kv = {"decode_weights": 1e9, "prompt": 1e7, "generated": 4e10}
  flops = {"budget": 6.0, "uniform": 2.0, "compiled": 6.0}
  rollout = types.SimpleNamespace(hlo_flops=6e15)
  budget, uniform = (sampler_seconds(rollout, kv, 4096, name, flops, H800, 1e15, 10.0, filled=True)
                     for name in ("budget", "uniform"))
  assert uniform["compute_s"] == pytest.approx(budget["compute_s"] / 3)
  # Collectives run per decode step: half as many steps on average.
  assert uniform["chunk_s"] - max(uniform["compute_s"], uniform["memory_s"]) == pytest.approx(5.0)
  whole = sampler_seconds(rollout, kv, 4096, "budget", flops, H800, 1e15, 0.0, filled=False)
  assert whole["hbm_bytes"] - budget["hbm_bytes"] == pytest.approx(4e10 * 4096 / 2)
