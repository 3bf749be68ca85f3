"""What a phase does not need leaves the device: the train state in host memory (JAX memory kinds).

`optim.offload` picks how long the float32 master weights and the Adam moments stay on the device:

- "none": always (the default).
- "rollout": not while the sampler runs. The sampler reads a compute-dtype copy of the weights
  (`rollout_phase`), the state waits in host memory, and the copy is deleted before the state
  comes back for the learner (`learner_phase`); the sampler's KV cache lives inside its program.
- "between_updates": only inside the update. The state is born and kept in host memory (its
  shardings carry memory kind `pinned_host`); the jitted step moves it to the device (`fetch`)
  and its outputs go back to host memory. It is then off the device during the rollout as well.

Every move is a copy of the same bits, so steps with either offload equal steps without.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from r1jax.models import ModelConfig
from r1jax.models.transformer import compute_weights

HOST, DEVICE = "pinned_host", "device"


def in_memory(shardings, memory_kind: str):
  """A pytree of shardings moved to `memory_kind` (same devices and layout)."""
  return jax.tree.map(lambda s: s.with_memory_kind(memory_kind), shardings)


def on_host(shardings) -> bool:
  """Whether any of these shardings keeps its array in host memory."""
  return any(s.memory_kind == HOST for s in jax.tree.leaves(shardings))


def fetch(tree, shardings):
  """Inside a jitted function: `tree` (laid out as `shardings`) moved to device memory."""
  return jax.tree.map(lambda x, s: jax.device_put(x, s.with_memory_kind(DEVICE)), tree, shardings)


def place(tree, memory_kind: str):
  """Every array of `tree` copied to `memory_kind` in its own sharding (those already there are
  kept). The caller drops the old tree, whose buffers are then freed."""
  def move(x):
    if not isinstance(x, jax.Array) or x.sharding.memory_kind == memory_kind:
      return x
    return jax.device_put(x, x.sharding.with_memory_kind(memory_kind))
  return jax.tree.map(move, tree)


@functools.partial(jax.jit, static_argnums=0)
def _compute_copy(model_cfg: ModelConfig, params):
  # Copies even the leaves that keep their dtype: the result never shares a buffer with params.
  return jax.tree.map(jnp.copy, compute_weights(model_cfg, params))


def sampler_weights(model_cfg: ModelConfig, params):
  """The compute-dtype weights the sampler reads, on the device, from params in either memory."""
  shardings = jax.tree.map(lambda x: x.sharding, params)
  if on_host(shardings):
    params = place(params, DEVICE)
  return _compute_copy(model_cfg, params)


def rollout_phase(model_cfg: ModelConfig, state, mode: str):
  """(the weights the sampler reads, the train state to hold while it runs). Unless `mode` is
  "none", the weights are a compute-dtype copy on the device and the state is in host memory."""
  if mode == "none":
    return state.params, state
  return sampler_weights(model_cfg, state.params), place(state, HOST)


def learner_phase(state, weights, mode: str):
  """The train state for the learner: `rollout_phase`'s copy of the weights deleted, the state
  back on the device under "rollout", in host memory otherwise."""
  if mode == "none":
    return state
  for x in jax.tree.leaves(weights):
    x.delete()
  return place(state, DEVICE) if mode == "rollout" else state
