"""Sequence-parallel attention equals the unsplit attention, values and gradients: causal rows,
packed segments with padding, and the learner's shared prompt prefix, with the positions of
every row split over 4 devices (and the rows over 2)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from r1jax.config import ConfigError
from r1jax.mesh import DEFAULT_RULES, MeshConfig, make_mesh, sequence_rules, use_mesh
from r1jax.models import layers, sequence_parallel
from r1jax.models.layers import Mask

B, T, H, KV, DH = 4, 16, 4, 2, 8
SEQ_MESH = (2, 4, 1, 1)      # data 2 (rows), fsdp 4 (positions)


def _mesh():
  return make_mesh(MeshConfig(ici=SEQ_MESH))


def _qkv(seed):
  ks = jax.random.split(jax.random.key(seed), 3)
  return (jax.random.normal(ks[0], (B, T, H, DH)), jax.random.normal(ks[1], (B, T, KV, DH)),
          jax.random.normal(ks[2], (B, T, KV, DH)))


def _causal():
  steps = jnp.arange(T)[None]
  return Mask.make(jnp.ones((B, T), bool), steps, steps, plain_causal=True)


def _segments():
  """Packed rows: several segments, then padding (segment 0)."""
  seg = jnp.array([[1] * 7 + [2] * 6 + [0] * 3, [1] * 16, [1, 1, 2, 2, 2] + [3] * 10 + [0],
                   [0] + [1] * 15])
  steps = jnp.arange(T)[None]
  return Mask.make(seg != 0, steps, steps, seg, seg)


def _prefix(seed, bp=2, p=6):
  ks = jax.random.split(jax.random.key(seed), 2)
  pmask = jnp.arange(p)[None] >= jnp.array([[0], [3]])            # left-padded prompts
  return (jax.random.normal(ks[0], (bp, p, KV, DH)), jax.random.normal(ks[1], (bp, p, KV, DH)),
          pmask)


# The learner's rows (causal, each reading its prompt's prefix) and packed rows with padding.
@pytest.mark.parametrize("make, with_prefix", [(_causal, True), (_segments, False)],
                         ids=["causal-prefix", "segments"])
def test_split_attention_equals_unsplit_values_and_gradients(make, with_prefix):
  mask = make()
  q, k, v = _qkv(1)
  prefix = _prefix(2) if with_prefix else None
  seen = mask.dense().any(-1) | with_prefix       # queries that see no key are never read
  weights = jax.random.normal(jax.random.key(3), (B, T, H, DH)) * seen[..., None, None]
  pk, pv = (prefix[0], prefix[1]) if prefix else (jnp.zeros(()), jnp.zeros(()))

  def loss(fn, q, k, v, pk, pv):
    pre = None if prefix is None else (pk, pv, prefix[2])
    return jnp.sum(fn(q, k, v, pre) * weights)

  plain = lambda q, k, v, pre: layers.attend(q, k, v, mask.dense(), pre)
  argnums = (1, 2, 3, 4, 5) if prefix else (1, 2, 3)
  want = plain(q, k, v, prefix)
  g_want = jax.grad(loss, argnums)(plain, q, k, v, pk, pv)

  mesh = _mesh()
  split = lambda q, k, v, pre: sequence_parallel.attend(q, k, v, mask, pre, block=2)
  with use_mesh(mesh, sequence_rules(DEFAULT_RULES, "fsdp")):
    got = jax.jit(split)(q, k, v, prefix)
    g_got = jax.jit(jax.grad(loss, argnums), static_argnums=0)(split, q, k, v, pk, pv)
    hlo = jax.jit(split).lower(q, k, v, prefix).as_text()
  assert "all_gather" in hlo or "all-gather" in hlo      # the keys travel, the queries stay
  assert got.sharding.spec[1] == "fsdp"                   # the output is split by position
  np.testing.assert_allclose(got * seen[..., None, None], want * seen[..., None, None],
                             atol=2e-5, rtol=2e-5)
  for a, b in zip(g_got, g_want):
    np.testing.assert_allclose(a, b, atol=5e-5, rtol=5e-5)


def test_sequence_rules_move_the_axis_from_rows_to_positions():
  rules = dict(sequence_rules(DEFAULT_RULES, "fsdp"))
  assert rules["length"] == ("fsdp",) and "fsdp" not in rules["batch"]
  assert rules["embed"] == dict(DEFAULT_RULES)["embed"]      # weights keep their layout
  assert sequence_rules(DEFAULT_RULES, "") == DEFAULT_RULES
  assert MeshConfig(sequence_axis="data").learner_rules() == sequence_rules(DEFAULT_RULES, "data")
  with pytest.raises(ConfigError, match="sequence_axis.*allowed values"):
    MeshConfig(sequence_axis="seq").validate()
