"""The learner with each row's positions split over devices (`mesh.sequence_axis`) equals the
unsplit learner: completion log-probs and their gradients, and a whole train step."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from r1jax.mesh import DEFAULT_RULES, MeshConfig, sequence_rules, use_mesh
from r1jax.models import init, layers, sequence_parallel
from r1jax.rl import logprobs
from r1jax.rl.step import init_train_state, make_train_step
from tests.rl.test_step import (CFG, GRPO, OPTIM, _assert_same_update, _assert_trees_close, _batch,
                                _mesh)


@pytest.fixture
def tiny_tiles(monkeypatch):
  """Tiles, vocabulary chunks and feed-forward pieces of 2 positions: the tiny rows take every
  long-sequence path. Counts the sequence-split attentions traced."""
  monkeypatch.setattr(layers, "BLOCK", 2)
  monkeypatch.setattr(layers, "MLP_CHUNK", 2)
  monkeypatch.setattr(logprobs, "CHUNK", 2)
  calls = []
  split = sequence_parallel._attend_split
  monkeypatch.setattr(sequence_parallel, "_attend_split",
                      lambda *a, **k: calls.append(1) or split(*a, **k))
  return calls


def test_split_logprobs_and_gradients_equal_unsplit(tiny_tiles):
  """8 devices on the positions of one row: the 4 fed positions are padded to 8, one each."""
  batch = _batch()
  params = init(CFG, jax.random.key(0))
  weights = jax.random.normal(jax.random.key(1), batch.completion_tokens.shape)

  def loss(params):
    logp, entropy, _ = logprobs.completion_stats(CFG, params, batch.prompt_tokens,
                                                 batch.prompt_mask, batch.completion_tokens)
    return jnp.sum(weights * (logp + 0.1 * entropy)), logp

  (want, want_logp), want_grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
  mesh = _mesh((1, 8, 1, 1))
  with use_mesh(mesh, sequence_rules(DEFAULT_RULES, "fsdp")):
    (got, got_logp), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
  assert tiny_tiles                                  # the split attention ran
  np.testing.assert_allclose(got_logp, want_logp, atol=2e-5, rtol=2e-5)
  np.testing.assert_allclose(got, want, rtol=2e-5)
  _assert_trees_close(grads, want_grads, atol=1e-6, rtol=1e-4)


def test_split_train_step_equals_unsplit(tiny_tiles):
  """Rows over 2 devices, each row's positions over 4: one step updates the params and reports
  the metrics of the single-device step."""
  single = _mesh((1, 1, 1, 1))
  state = init_train_state(CFG, OPTIM, jax.random.key(0), single)
  params0 = jax.tree.map(np.asarray, state.params)
  want_state, want_metrics = make_train_step(CFG, GRPO, OPTIM, single)(state, _batch())
  assert not tiny_tiles

  mesh_cfg = MeshConfig(ici=(2, 4, 1, 1), sequence_axis="fsdp")
  mesh = _mesh(mesh_cfg.ici)
  state = init_train_state(CFG, OPTIM, jax.random.key(0), mesh, mesh_cfg.learner_rules())
  state, metrics = make_train_step(CFG, GRPO, OPTIM, mesh, mesh_cfg.learner_rules())(state,
                                                                                   _batch())
  assert tiny_tiles
  _assert_same_update(state, want_state, params0)
  _assert_trees_close(metrics, want_metrics, atol=1e-6, rtol=1e-5)


def test_split_rows_need_a_fraction_of_the_scratch_memory():
  """Two long rows on 8 devices: unsplit, every device holds both whole rows (2 rows do not
  split 8 ways); split by position, each holds an eighth of each, and the compiled forward and
  backward's scratch memory per device shrinks accordingly."""
  t = 1024
  params = jax.eval_shape(lambda: init(CFG, jax.random.key(0)))
  prompts = jax.ShapeDtypeStruct((1, 8), jnp.int32), jax.ShapeDtypeStruct((1, 8), bool)
  completions = jax.ShapeDtypeStruct((2, t), jnp.int32)

  def loss(params, prompt_tokens, prompt_mask, completion_tokens):
    return jnp.sum(logprobs.completion_stats(CFG, params, prompt_tokens, prompt_mask,
                                             completion_tokens)[0])
  temp = {}
  for axis in ("", "fsdp"):
    mesh_cfg = MeshConfig(ici=(1, 8, 1, 1), sequence_axis=axis)
    with use_mesh(_mesh(mesh_cfg.ici), mesh_cfg.learner_rules()):
      compiled = jax.jit(jax.grad(loss)).lower(params, *prompts, completions).compile()
    temp[axis] = compiled.memory_analysis().temp_size_in_bytes
  assert temp["fsdp"] < temp[""] / 3, temp
