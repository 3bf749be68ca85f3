"""Sharded forward and gradient equal the single-device result under every mesh layout."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from r1jax import mesh as mesh_lib
from r1jax.models import ModelConfig, MoEConfig, init, logits, param_axes

CFG = ModelConfig(vocab_size=64, dim=32, num_layers=3, num_heads=8, num_kv_heads=4, head_dim=4,
                  ffn_dim=64, qkv_bias=True,
                  moe=MoEConfig(num_experts=8, top_k=2, expert_ffn_dim=16, shared_ffn_dim=16,
                                shared_gate=True, first_dense_layers=1))
LAYOUTS = {"data": (8, 1, 1, 1), "fsdp": (1, 8, 1, 1), "expert": (1, 1, 8, 1),
           "tensor": (1, 1, 1, 8), "mixed": (2, 1, 2, 2)}


def _loss(params, tokens):
  out = logits(CFG, params, tokens)
  return jnp.mean(jax.nn.log_softmax(out)[..., 0]), out


@pytest.fixture(scope="module")
def reference():
  params = init(CFG, jax.random.key(0))
  tokens = jax.random.randint(jax.random.key(1), (8, 8), 0, CFG.vocab_size)
  (_, out), grads = jax.value_and_grad(_loss, has_aux=True)(params, tokens)
  return params, tokens, out, grads


@pytest.mark.parametrize("layout", LAYOUTS)
def test_sharded_forward_and_grad_equal_unsharded(layout, reference):
  params, tokens, out, grads = reference
  mesh = mesh_lib.make_mesh(mesh_lib.MeshConfig(ici=LAYOUTS[layout]))
  shardings = mesh_lib.tree_shardings(param_axes(CFG), params, mesh)
  sharded = jax.device_put(params, shardings)
  token_sharding = mesh_lib.logical_sharding(("batch", "length"), tokens.shape, mesh)
  with mesh_lib.use_mesh(mesh):
    step = jax.jit(jax.value_and_grad(_loss, has_aux=True), out_shardings=(None, shardings))
    (_, s_out), s_grads = step(sharded, jax.device_put(tokens, token_sharding))
  if layout != "data":  # the layout really distributes the parameters
    assert any(len(s.device_set) > 1 and not s.is_fully_replicated
               for s in jax.tree.leaves(shardings))
  np.testing.assert_allclose(s_out, out, atol=2e-5, rtol=1e-4)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=2e-6, rtol=1e-4), s_grads, grads)


def test_hybrid_mesh_from_ici_and_dcn_shapes():
  mesh = mesh_lib.make_mesh(mesh_lib.MeshConfig(ici=(1, 4, 1, 1), dcn=(2, 1, 1, 1)))
  assert dict(mesh.shape) == {"data": 2, "fsdp": 4, "expert": 1, "tensor": 1}
  # Each DCN slice (a "node") holds a contiguous block of devices.
  ids = np.vectorize(lambda d: d.id)(mesh.devices)
  assert set(ids[0].ravel()) == {0, 1, 2, 3} and set(ids[1].ravel()) == {4, 5, 6, 7}


def test_bad_mesh_is_a_clear_error():
  with pytest.raises(mesh_lib.ConfigError, match="does not fit 8 devices"):
    mesh_lib.make_mesh(mesh_lib.MeshConfig(ici=(3, -1, 1, 1)))
  with pytest.raises(mesh_lib.ConfigError, match="expected 'ici:"):
    mesh_lib.parse_mesh_flag("ici=1,2")
