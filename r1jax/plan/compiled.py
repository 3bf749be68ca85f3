"""Lowers and compiles the real train step and the real sampler on abstract inputs.

Inputs are ``jax.ShapeDtypeStruct`` with the shardings the run would use, so nothing the size of
the model is ever allocated: only XLA's per-device program is built. The train step compiles at
full size (the layer scan keeps its HLO one layer long). The sampler unrolls its layers inside the
decode loop, so for deep models it is compiled with two small layer counts and every figure is
extended linearly to the full depth (:func:`extrapolate`; every per-device figure of the sampler
is affine in the number of layers: weights, caches, per-layer traffic and work).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from r1jax import models
from r1jax.experiment import Experiment
from r1jax.mesh import logical_sharding, tree_shardings, use_mesh
from r1jax.plan import hlo
from r1jax.rl.batch import LearnerBatch
from r1jax.rl.optim import make_optimizer
from r1jax.rl.step import TrainState, make_train_step, state_shardings
from r1jax.rollout import sampler
from r1jax.rollout.chunks import prompts_per_call

# The sampler is compiled with these layer counts when the model has more than the larger one.
ROLLOUT_PROBE_LAYERS = (2, 4)


@dataclasses.dataclass(frozen=True)
class CompiledFigures:
  """Per-device numbers of one compiled program (all floats so they can be extrapolated)."""
  argument_bytes: float
  output_bytes: float
  alias_bytes: float
  temp_bytes: float
  inputs: dict[str, float]                  # argument bytes by category, from input shardings
  xla_flops: float                          # cost_analysis(): loop bodies counted once
  hlo_flops: float                          # dots with loop trip counts (`hlo`)
  collective_bytes: dict[str, float]
  collective_bytes_by_link: dict[str, float]
  collective_time_terms: dict[str, float]
  layers: int                               # model depth these figures are for

  @property
  def peak_bytes(self) -> float:
    return self.argument_bytes + self.output_bytes - self.alias_bytes + self.temp_bytes


def _abstract(tree, shardings):
  return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                      tree, shardings)


def _batch_struct(shape, dtype, mesh, rules):
  sharding = logical_sharding(("batch",) + (None,) * (len(shape) - 1), shape, mesh, rules)
  return jax.ShapeDtypeStruct(shape, dtype, sharding=sharding)


def _local_bytes(tree) -> float:
  return float(sum(math.prod(x.sharding.shard_shape(x.shape)) * np.dtype(x.dtype).itemsize
                   for x in jax.tree.leaves(tree)))


def _node_of(mesh: Mesh, devices_per_node: int):
  """Logical device id (position in the mesh's device order) -> node, as make_mesh laid it out."""
  ids = [d.id for d in mesh.devices.flat]
  return lambda i: ids[i] // devices_per_node


def _figures(compiled, inputs: dict, mesh: Mesh, devices_per_node: int, layers: int,
             unknown_trip_count: float | tuple[float, ...] = 1) -> CompiledFigures:
  memory = compiled.memory_analysis()
  cost = compiled.cost_analysis()
  cost = (cost[0] if isinstance(cost, (list, tuple)) else cost) or {}   # None from XLA:GPU
  stats = hlo.analyse(compiled.as_text(), node_of=_node_of(mesh, devices_per_node),
                           unknown_trip_count=unknown_trip_count)
  return CompiledFigures(
      float(memory.argument_size_in_bytes), float(memory.output_size_in_bytes),
      float(memory.alias_size_in_bytes), float(memory.temp_size_in_bytes),
      {k: _local_bytes(v) for k, v in inputs.items()}, float(cost.get("flops", 0.0)),
      stats.dot_flops, stats.collective_bytes, stats.collective_bytes_by_link,
      stats.collective_time_terms, layers)


def compile_train_step(exp: Experiment, mesh: Mesh, devices_per_node: int) -> CompiledFigures:
  """One optimizer step on a minibatch at the configured sizes (completions at full length),
  under the learner's rules (`mesh.sequence_axis` splits each row's positions)."""
  rules = exp.mesh.learner_rules()
  params = jax.eval_shape(functools.partial(models.init, exp.model), jax.random.key(0))
  state = TrainState(params, jax.eval_shape(make_optimizer(exp.optim).init, params),
                     jax.ShapeDtypeStruct((), jnp.int32))
  state = _abstract(state, state_shardings(exp.model, exp.optim, mesh, rules))
  bp = exp.data.questions_per_step // exp.rl.num_minibatches
  batch = LearnerBatch.abstract(bp, exp.rl.num_generations, exp.data.max_prompt_len,
                                exp.rollout.max_new_tokens, exp.model,
                                sampler_logprobs=exp.rl.recompute_old_logprobs)
  batch = jax.tree.map(lambda x: _batch_struct(x.shape, x.dtype, mesh, rules), batch)
  train_step = make_train_step(exp.model, exp.rl, exp.optim, mesh, rules)
  compiled = train_step.jitted(batch).lower(state, batch).compile()
  inputs = {"params": state.params, "optimizer": state.opt_state, "batch": batch}
  return _figures(compiled, inputs, mesh, devices_per_node, exp.model.num_layers)


def compile_rollout(exp: Experiment, mesh: Mesh, devices_per_node: int,
                    layers: int | None = None) -> CompiledFigures:
  """One sampler call on `rollout.prompts_per_chunk` prompts (rounded as `sample_chunks` rounds
  them on this mesh), every row running to the budget (the worst case): the decode loop's body
  counts `max_new_tokens` times (more where refilled slots take several rows each), and the
  filled-only attention's block loop inside it its mean over those steps."""
  rules = exp.mesh.rules
  model_cfg = dataclasses.replace(exp.model, num_layers=layers or exp.model.num_layers)
  if model_cfg.moe is not None:
    moe = dataclasses.replace(model_cfg.moe, first_dense_layers=min(
        model_cfg.moe.first_dense_layers, model_cfg.num_layers - 1))
    model_cfg = dataclasses.replace(model_cfg, moe=moe)
  abstract = jax.eval_shape(lambda k: models.init(model_cfg, k), jax.random.key(0))
  params = _abstract(abstract, tree_shardings(models.param_axes(model_cfg), abstract, mesh, rules))
  shape = (prompts_per_call(model_cfg, exp.rollout.prompts_per_chunk, mesh, rules),
           exp.data.max_prompt_len)
  prompts = _batch_struct(shape, jnp.int32, mesh, rules)
  mask = _batch_struct(shape, jnp.bool_, mesh, rules)
  replicated = NamedSharding(mesh, PartitionSpec())
  rng = jax.ShapeDtypeStruct((), jax.random.key(0).dtype, sharding=replicated)
  offset = jax.ShapeDtypeStruct((), jnp.int32, sharding=replicated)
  with use_mesh(mesh, rules):
    compiled = sampler.rollout_jit.lower(model_cfg, exp.rollout, exp.rl.num_generations, mesh,
                                         params, prompts, mask, rng, offset).compile()
  return _figures(compiled, {"params": params, "prompts": (prompts, mask)}, mesh,
                  devices_per_node, model_cfg.num_layers,
                  unknown_trip_count=decode_trip_counts(exp.rollout,
                                                        shape[0] * exp.rl.num_generations))


def decode_trip_counts(config, rows: int) -> tuple[float, ...]:
  """Trip counts of the sampler's data-dependent loops with every row to the budget: decode
  steps, then the filled-only attention's cache blocks per step (their mean over the steps)."""
  t = config.max_new_tokens
  slots = config.refill_slots if 0 < config.refill_slots < rows else rows
  steps = math.ceil(t * rows / slots)
  if config.attention != "filled":
    return (steps,)
  block = min(config.kv_block, t)
  return (steps, sum(-(-s // block) for s in range(1, t + 1)) / t)


def extrapolate(a: CompiledFigures, b: CompiledFigures, layers: int) -> CompiledFigures:
  """Figures at `layers`, on the line through compilations at a.layers and b.layers."""
  w = (layers - a.layers) / (b.layers - a.layers)
  line = lambda x, y: x + w * (y - x)
  mix = lambda x, y: {k: line(x.get(k, 0.0), y.get(k, 0.0)) for k in set(x) | set(y)}
  values = {}
  for field in dataclasses.fields(CompiledFigures):
    x, y = getattr(a, field.name), getattr(b, field.name)
    values[field.name] = mix(x, y) if isinstance(x, dict) else line(x, y)
  values["layers"] = layers
  return CompiledFigures(**values)


def rollout_figures(exp: Experiment, mesh: Mesh, devices_per_node: int) -> tuple[CompiledFigures, str]:
  """The sampler's figures at full depth, and how they were obtained (for the report)."""
  depth = exp.model.num_layers
  small, large = ROLLOUT_PROBE_LAYERS
  first_dense = exp.model.moe.first_dense_layers if exp.model.moe else 0
  if depth <= large or first_dense >= small:
    return compile_rollout(exp, mesh, devices_per_node), f"compiled at full depth ({depth} layers)"
  a = compile_rollout(exp, mesh, devices_per_node, small)
  b = compile_rollout(exp, mesh, devices_per_node, large)
  return extrapolate(a, b, depth), (f"compiled at {small} and {large} layers (decode unrolls its "
                                    f"layers) and extended linearly to {depth}")
