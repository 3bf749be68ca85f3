"""The feed-forward in pieces along the sequence, each device on its own rows, equals it whole:
values and gradients, with the weights' gradient crossing devices once."""
import jax
import jax.numpy as jnp
import numpy as np

from r1jax.mesh import MeshConfig, make_mesh, use_mesh
from r1jax.models import layers
from r1jax.plan import hlo


def test_pieces_equal_the_whole_and_sum_weight_gradients_once(monkeypatch):
  ks = jax.random.split(jax.random.key(0), 4)
  params = {"gate": jax.random.normal(ks[0], (8, 16)), "up": jax.random.normal(ks[1], (8, 16)),
            "down": jax.random.normal(ks[2], (16, 8))}
  x = jax.random.normal(ks[3], (8, 11, 8))
  loss = lambda p, x: jnp.sum(jnp.sin(layers.swiglu(p, x, jnp.float32)))
  want, want_grad = layers.swiglu(params, x, jnp.float32), jax.grad(loss, (0, 1))(params, x)
  monkeypatch.setattr(layers, "MLP_CHUNK", 4)          # 3 pieces, the last one short
  mesh = make_mesh(MeshConfig(ici=(4, 2, 1, 1)))

  def sharded(fn):
    def run(*args):
      with use_mesh(mesh):
        return fn(*args)
    return jax.jit(run)
  got = sharded(lambda p, x: layers.swiglu(p, x, jnp.float32))(params, x)
  grad_fn = sharded(jax.grad(loss, (0, 1)))
  got_grad = grad_fn(params, x)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  for a, b in zip(jax.tree.leaves(got_grad), jax.tree.leaves(want_grad)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
  text = grad_fn.lower(params, x).compile().as_text()
  assert "f32[1,4,16]" in text and "f32[1,11,16]" not in text     # hidden units piece by piece
  once = 3 * 8 * 16 * 4
  assert hlo.analyse(text).collective_bytes["all-reduce"] <= 1.5 * once
