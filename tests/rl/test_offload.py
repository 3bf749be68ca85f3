"""The train state off the device (`optim.offload`): steps with the float32 master and Adam
moments in host memory between updates equal steps on the device, bit for bit; so does an RL
step (sample, then learn) whose state waits in host memory while the sampler runs."""
import dataclasses

import jax
import numpy as np
import pytest

from r1jax.config import ConfigError
from r1jax.mesh import use_mesh
from r1jax.rl import offload
from r1jax.rl.advantages import group_advantages
from r1jax.rl.batch import LearnerBatch
from r1jax.rl.step import init_train_state, make_train_step
from r1jax.rollout import sample
from tests.rl.test_step import CFG, GRPO, OPTIM, SHARDED, _batch, _mesh

BF16 = dataclasses.replace(CFG, compute_dtype="bfloat16")   # the sampler's copy is a real cast


def _memory_kinds(tree):
  return {x.sharding.memory_kind for x in jax.tree.leaves(tree)}


def _assert_identical(a, b):
  for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=jax.tree_util.keystr(path))


def _rl_step(mode: str):
  """Samples G completions per prompt with the weights `rollout_phase` gives, then one train
  step on them; returns the rollout, the new state and what was where during the rollout."""
  mesh = _mesh(SHARDED)
  optim = dataclasses.replace(OPTIM, offload=mode)
  state = init_train_state(BF16, optim, jax.random.key(0), mesh)
  prompts = _batch()
  weights, state = offload.rollout_phase(BF16, state, mode)
  during = (_memory_kinds(state), _memory_kinds(weights), {str(x.dtype) for x in
                                                           jax.tree.leaves(weights)})
  with use_mesh(mesh):
    rollout = sample(BF16, weights, prompts.prompt_tokens, prompts.prompt_mask,
                     jax.random.key(7), num_samples=GRPO.num_generations, max_new_tokens=5,
                     temperature=1.0)
  state = offload.learner_phase(state, weights, mode)
  if mode != "none":
    assert all(x.is_deleted() for x in jax.tree.leaves(weights))   # freed before the learner
  rewards = (np.asarray(rollout.tokens)[:, 0] % 2).astype(np.float32)
  batch = dataclasses.replace(
      prompts, completion_tokens=rollout.tokens,
      completion_mask=np.arange(5)[None] < np.asarray(rollout.lengths)[:, None],
      old_logprobs=rollout.logprobs, ref_logprobs=rollout.logprobs,
      advantages=np.asarray(group_advantages(rewards, GRPO.num_generations)),
      truncated=~np.asarray(rollout.finished_eos))
  step = make_train_step(BF16, GRPO, optim, mesh)
  state, metrics = step(state, LearnerBatch.of({k: np.asarray(v) for k, v in
                                                batch.fields().items()}))
  kept = _memory_kinds(state)
  state, second = step(state, _batch(1))     # the state as the last step left it feeds the next
  return rollout, state, (metrics, second), (*during, kept)


@pytest.fixture(scope="module")
def on_device():
  """The RL step with the state on the device throughout; the sampler reads the master."""
  result = _rl_step("none")
  during_state, _, dtypes, kept = result[-1]
  assert during_state == kept == {offload.DEVICE} and "float32" in dtypes
  return result


@pytest.mark.parametrize("mode, kept", [("rollout", offload.DEVICE),
                                        ("between_updates", offload.HOST)])
def test_rl_step_with_the_state_off_the_device_equals_one_without(on_device, mode, kept):
  """"rollout": the state waits in host memory while the sampler reads a bf16 copy, which is
  deleted before the state returns for the learner. "between_updates": the state is born, and
  stays, in host memory; each update moves it in and out."""
  want_rollout, want_state, want_metrics, _ = on_device
  rollout, state, metrics, (during_state, during_weights, dtypes, after_step) = _rl_step(mode)
  assert during_state == {offload.HOST} and during_weights == {offload.DEVICE}
  assert dtypes == {"bfloat16", "float32"}               # matrices cast, norm gains kept
  assert after_step == _memory_kinds(state) == {kept}
  _assert_identical((rollout.tokens, rollout.logprobs), (want_rollout.tokens,
                                                         want_rollout.logprobs))
  _assert_identical((state, metrics), (want_state, want_metrics))


def test_state_from_given_params_is_born_in_host_memory():
  mesh = _mesh(SHARDED)
  host = jax.tree.map(np.asarray, init_train_state(CFG, OPTIM, jax.random.key(0), mesh).params)
  born = init_train_state(CFG, dataclasses.replace(OPTIM, offload="between_updates"), host, mesh)
  assert _memory_kinds(born) == {offload.HOST}
  _assert_identical(born.params, host)
  assert int(born.step) == 0


def test_unknown_offload_mode_is_a_config_error():
  with pytest.raises(ConfigError, match="'offload'.*allowed values: 'none', 'rollout'"):
    dataclasses.replace(OPTIM, offload="cpu").validate()
