"""Device meshes and logical-axis sharding.

The mesh has four named axes, ``data``, ``fsdp``, ``expert`` and ``tensor``, built from an ICI
shape (inside a node) times a DCN shape (across nodes). Model code never names these axes: it
names logical axes (``batch``, ``embed``, ``heads``, ``mlp``, ``vocab``, ``expert``...) and the
config's rules map each logical axis to zero or more mesh axes. A mesh axis that does not divide
a dimension is dropped for that array (replicated) rather than failing, so one set of rules
serves every model size. :func:`use_mesh` makes a mesh and its rules current for
:func:`constrain`, which is a no-op when no mesh is current (single-device code paths).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import math
import re
from collections.abc import Sequence

import jax
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from r1jax.config import ConfigError, check_choice

MESH_AXES = ("data", "fsdp", "expert", "tensor")

# Logical axis -> mesh axes. Batch-like axes spread over every data-parallel axis, including
# `expert`, which doubles as a data axis outside the MoE layers. Weights (and so the float32
# master weights and Adam moments) are split along `embed` over fsdp and then data: every
# device of the mesh holds a distinct shard, nodes included (ZeRO-3 over the whole mesh).
DEFAULT_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("batch", ("data", "fsdp", "expert")),
    ("embed", ("fsdp", "data")),
    ("heads", ("tensor",)),
    ("kv_heads", ("tensor",)),
    ("mlp", ("tensor",)),
    ("vocab", ("tensor",)),
    ("expert", ("expert",)),
    ("expert_mlp", ("tensor",)),
    ("layers", ()),
    ("head_dim", ()),
    ("length", ()),
    ("act_embed", ()),
    ("act_heads", ("tensor",)),
    ("act_mlp", ("tensor",)),
    ("act_vocab", ("tensor",)),
)


# Logical axes that tensor parallelism splits (weights and the activations they produce).
MODEL_PARALLEL = ("heads", "kv_heads", "mlp", "vocab", "expert_mlp", "act_heads", "act_mlp",
                  "act_vocab")


def decode_rules(rules):
  """The rules for decoding: the fsdp axis turns into a tensor-parallel axis.

  A decode step multiplies a few rows by every weight; under the training layout each device
  would need the whole of every weight (gathered along fsdp), under this one it keeps 1/fsdp of
  each weight matrix by heads / hidden units / vocabulary, and rows spread over the remaining
  batch axes only, with their KV caches split by KV head."""
  out = []
  for logical, axes in _rules_dict(rules).items():
    if logical in ("batch", "embed"):
      axes = tuple(a for a in axes if a != "fsdp")
    elif logical in MODEL_PARALLEL and "fsdp" not in axes:
      axes = (*axes, "fsdp")
    out.append((logical, axes))
  return tuple(out)


def sequence_rules(rules, axis: str):
  """The learner's rules under sequence parallelism: the `length` axis of activations split over
  mesh `axis` (each device holds a contiguous slice of every row's positions), which the `batch`
  rule then leaves to it. `rules` as they are for axis ''."""
  if not axis:
    return tuple(rules)
  return tuple((logical, (axis,) if logical == "length" else
                tuple(a for a in axes if a != axis) if logical == "batch" else axes)
               for logical, axes in _rules_dict(rules).items())


def _split_axes(logical: str, size: int) -> tuple[str, ...]:
  ctx = _CURRENT.get()
  if ctx is None:
    return ()
  axes = logical_spec((logical,), (size,), ctx.mesh, ctx.rules)[0]
  return () if axes is None else (axes,) if isinstance(axes, str) else tuple(axes)


def row_axes(rows: int) -> tuple[str, ...]:
  """The mesh axes that the current mesh's `batch` rule splits `rows` rows over (for shard_map
  code that runs on each device's own rows); () without a mesh."""
  return _split_axes("batch", rows)


def length_axes(length: int) -> tuple[str, ...]:
  """The mesh axes that the current `length` rule splits `length` positions over (sequence
  parallelism, `sequence_rules`); () without a mesh, without the rule or when they do not divide."""
  return _split_axes("length", length)


def length_shards() -> int:
  """How many pieces the current `length` rule cuts a sequence into (1 without it): a row
  padded to a multiple of this is split over every piece."""
  ctx = _CURRENT.get()
  return 1 if ctx is None else math.prod(ctx.mesh.shape[a] for a in ctx.rules.get("length", ()))


def batch_shards(mesh: Mesh, rules) -> int:
  """How many ways the `batch` rule can split a batch on `mesh` (the product of its axes)."""
  return math.prod(mesh.shape[a] for a in _rules_dict(rules).get("batch", ()))


@dataclasses.dataclass(frozen=True)
class MeshConfig:
  """Mesh shape per axis in MESH_AXES order; one -1 in `ici` takes the remaining devices."""
  ici: tuple[int, ...] = (1, -1, 1, 1)
  dcn: tuple[int, ...] = (1, 1, 1, 1)
  rules: tuple[tuple[str, tuple[str, ...]], ...] = DEFAULT_RULES
  # Sequence parallelism of the learner: the mesh axis each long row's positions are split over
  # ("" = none); the rollout keeps `rules` as they are.
  sequence_axis: str = ""

  def validate(self):
    check_choice("sequence_axis", self.sequence_axis, ("", *MESH_AXES))
    for name in ("ici", "dcn"):
      shape = getattr(self, name)
      if len(shape) != len(MESH_AXES):
        raise ConfigError(name, f"got {shape}; needs {len(MESH_AXES)} sizes for axes {MESH_AXES}")
      if any(s == 0 or s < -1 for s in shape) or list(shape).count(-1) > (1 if name == "ici" else 0):
        raise ConfigError(name, f"got {shape}; sizes must be >= 1 (ici may hold one -1)")
    for logical, axes in self.rules:
      for axis in (axes if isinstance(axes, (tuple, list)) else (axes,)):
        check_choice(f"rules[{logical}]", axis, MESH_AXES)

  def learner_rules(self):
    """The rules of the learner's forward and backward (`sequence_rules` on `sequence_axis`)."""
    return sequence_rules(self.rules, self.sequence_axis)


def parse_mesh_flag(text: str) -> MeshConfig:
  """Parses 'ici:1,8,1,1,dcn:64,1,1,1' (axes data,fsdp,expert,tensor) into a MeshConfig."""
  text = text.replace(" ", "")
  parts = dict(re.findall(r"(ici|dcn):(-?\d+(?:,-?\d+)*)", text))
  if not parts or re.sub(r"(ici|dcn):(-?\d+(?:,-?\d+)*),?", "", text):
    raise ConfigError("mesh", f"got {text!r}; expected 'ici:d,f,e,t[,dcn:d,f,e,t]' for axes {MESH_AXES}")
  config = MeshConfig(ici=tuple(int(s) for s in parts.get("ici", "1,-1,1,1").split(",")),
                      dcn=tuple(int(s) for s in parts.get("dcn", "1,1,1,1").split(",")))
  config.validate()
  return config


def resolve_shape(config: MeshConfig, num_devices: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
  """Fills the -1 in `ici` so that prod(ici) * prod(dcn) == num_devices."""
  dcn = tuple(config.dcn)
  per_node, rem = divmod(num_devices, math.prod(dcn))
  known = math.prod(s for s in config.ici if s != -1)
  if rem or per_node % known:
    raise ConfigError("mesh", f"ici={config.ici} x dcn={dcn} does not fit {num_devices} devices")
  ici = tuple(per_node // known if s == -1 else s for s in config.ici)
  if math.prod(ici) * math.prod(dcn) != num_devices:
    raise ConfigError("mesh", f"ici={ici} x dcn={dcn} needs {math.prod(ici) * math.prod(dcn)} "
                      f"devices; {num_devices} are available")
  return ici, dcn


def make_mesh(config: MeshConfig = MeshConfig(), devices: Sequence[jax.Device] | None = None) -> Mesh:
  devices = list(jax.devices() if devices is None else devices)
  ici, dcn = resolve_shape(config, len(devices))
  if math.prod(dcn) == 1:
    array = mesh_utils.create_device_mesh(ici, devices, allow_split_physical_axes=True)
  elif all(hasattr(d, "slice_index") for d in devices) or jax.process_count() > 1:
    # Nodes are slices where the platform reports them (TPU pods), else processes: CPU devices
    # of several processes all report slice 0.
    slices = {getattr(d, "slice_index", None) for d in devices}
    array = mesh_utils.create_hybrid_device_mesh(
        ici, dcn, devices, process_is_granule=len(slices) != math.prod(dcn))
  else:
    # Fake CPU devices in one process have no slices: treat each run of prod(ici) as a node.
    nodes = np.array(devices).reshape(*dcn, *ici)
    order = [a for pair in zip(range(4), range(4, 8)) for a in pair]
    array = nodes.transpose(order).reshape([i * d for i, d in zip(ici, dcn)])
  return Mesh(array, MESH_AXES)


@dataclasses.dataclass(frozen=True)
class _Context:
  mesh: Mesh
  rules: dict[str, tuple[str, ...]]


_CURRENT: contextvars.ContextVar[_Context | None] = contextvars.ContextVar("r1jax_mesh", default=None)


@contextlib.contextmanager
def use_mesh(mesh: Mesh, rules=DEFAULT_RULES):
  """Makes `mesh` and its logical rules current for `constrain` and `logical_sharding`."""
  token = _CURRENT.set(_Context(mesh, _rules_dict(rules)))
  try:
    yield mesh
  finally:
    _CURRENT.reset(token)


def current_mesh() -> Mesh | None:
  ctx = _CURRENT.get()
  return None if ctx is None else ctx.mesh


def current_rules() -> dict[str, tuple[str, ...]]:
  """The logical-axis rules made current with the mesh (the defaults when none is)."""
  ctx = _CURRENT.get()
  return _rules_dict(DEFAULT_RULES) if ctx is None else ctx.rules


def _rules_dict(rules) -> dict[str, tuple[str, ...]]:
  pairs = rules.items() if isinstance(rules, dict) else rules
  return {k: tuple(v) if isinstance(v, (tuple, list)) else ((v,) if v else ()) for k, v in pairs}


def logical_spec(axes: Sequence[str | None], shape: Sequence[int], mesh: Mesh, rules) -> PartitionSpec:
  """The PartitionSpec for an array of `shape` with logical `axes` under `rules`."""
  rules = rules if isinstance(rules, dict) else _rules_dict(rules)
  used: set[str] = set()
  spec = []
  for axis, dim in zip(axes, shape):
    chosen = []
    size = 1
    for mesh_axis in rules.get(axis, ()) if axis else ():
      n = mesh.shape[mesh_axis]
      if n == 1 or mesh_axis in used or dim % (size * n):
        continue
      chosen.append(mesh_axis)
      size *= n
    used.update(chosen)
    spec.append(tuple(chosen) if len(chosen) > 1 else (chosen[0] if chosen else None))
  return PartitionSpec(*spec)


def logical_sharding(axes, shape, mesh: Mesh | None = None, rules=None) -> NamedSharding:
  ctx = _CURRENT.get()
  mesh = mesh or ctx.mesh
  rules = rules if rules is not None else (ctx.rules if ctx else DEFAULT_RULES)
  return NamedSharding(mesh, logical_spec(axes, shape, mesh, rules))


def constrain(x: jax.Array, axes: Sequence[str | None]) -> jax.Array:
  """with_sharding_constraint by logical axes; identity when no mesh is current."""
  ctx = _CURRENT.get()
  if ctx is None or ctx.mesh.size == 1:
    return x
  return jax.lax.with_sharding_constraint(x, logical_sharding(axes, x.shape, ctx.mesh, ctx.rules))


def tree_shardings(axes_tree, shapes_tree, mesh: Mesh, rules=DEFAULT_RULES):
  """NamedShardings for a pytree, given a matching pytree of logical-axes tuples."""
  rules = _rules_dict(rules)
  return jax.tree.map(
      lambda axes, s: NamedSharding(mesh, logical_spec(axes, s.shape, mesh, rules)),
      axes_tree, shapes_tree, is_leaf=lambda x: isinstance(x, tuple) and all(
          isinstance(a, (str, type(None))) for a in x))
