"""Sample and score: the learner's arrays line up with the decoded and scored texts across chunks,
the reference log-probs of the sampling policy are the sampler's own (at the sampling
temperature), and evaluation summarises k samples per problem on the same path."""
import jax
import numpy as np
import pytest

from r1jax.data.pipeline import make_batch
from r1jax.data.tokenizers import CharTokenizer
from r1jax.experience import EvalConfig, evaluate, sample_and_score, sampling_for
from r1jax.models import ModelConfig, init
from r1jax.rewards.config import RewardConfig
from r1jax.rewards.service import RewardService
from r1jax.rl.logprobs import completion_logprobs
from r1jax.rollout import SamplingConfig

TOK = CharTokenizer()
CFG = ModelConfig(vocab_size=TOK.vocab_size, dim=32, num_layers=1, num_heads=2, num_kv_heads=1,
                  head_dim=16, ffn_dim=64, max_seq_len=512)
EXAMPLES = [
    {"prompt": "1 + 2", "data_type": "math", "gold": "3", "difficulty": 1, "source_id": "a"},
    {"prompt": "2 + 2", "data_type": "math", "gold": "4", "difficulty": 2, "source_id": "b"}]
K = 3
# Two chunks of one prompt each, at a temperature the reference forward must also use.
SAMPLING = sampling_for(SamplingConfig(max_new_tokens=12, temperature=0.7, prompts_per_chunk=1),
                        TOK)


@pytest.fixture(scope="module")
def run():
  params = init(CFG, jax.random.key(0))
  batch = make_batch(EXAMPLES, TOK, template="chat", max_prompt_len=320)
  rewards = RewardService(RewardConfig(num_workers=0))
  try:
    scored = sample_and_score(CFG, params, batch, jax.random.key(1), SAMPLING, K, TOK, rewards,
                              ref_params=params)
    yield scored, params, batch, rewards
  finally:
    rewards.close()


def test_learner_groups_line_up_with_the_scored_texts(run):
  scored, _, _, _ = run
  groups = scored.groups()
  assert groups.group_size() == K and groups.num_prompts == len(EXAMPLES)
  lengths = groups.completion_mask.sum(1)
  assert lengths.max() > 1 and groups.completion_tokens.shape[1] >= lengths.max()
  for i, text in enumerate(scored.texts):
    row = groups.completion_tokens[i, :lengths[i]]
    assert TOK.decode(row if groups.truncated[i] else row[:-1]) == text
  assert np.all(groups.old_logprobs[~groups.completion_mask] == 0)
  assert scored.rewards.reward.shape == (len(EXAMPLES) * K,)
  samples = scored.samples()
  assert [s["problem"] for s in samples] == [0] * K + [1] * K
  assert [s["difficulty"] for s in samples] == [1] * K + [2] * K
  assert [s["length"] for s in samples] == lengths.tolist()


def test_reference_of_the_sampling_policy_is_the_samplers_own_logprobs(run):
  groups = run[0].groups()
  mask = groups.completion_mask
  np.testing.assert_allclose(groups.ref_logprobs[mask], groups.old_logprobs[mask], atol=2e-4)


def test_recomputed_pi_old_is_the_learners_forward_beside_the_samplers(run):
  scored, params, batch, rewards = run
  assert scored.groups().sampler_logprobs is None            # no recompute: pi_old is the sampler's
  # Other weights than the sampler's, so that the recompute is visible: pi_old is their forward.
  other = init(CFG, jax.random.key(7))
  again = sample_and_score(CFG, params, batch, jax.random.key(1), SAMPLING, K, TOK, rewards,
                           ref_params=params, old_params=other)
  groups, mask = again.groups(), again.completion_mask()
  np.testing.assert_array_equal(groups.sampler_logprobs, scored.groups().old_logprobs)
  want = completion_logprobs(CFG, other, groups.prompt_tokens, groups.prompt_mask,
                             groups.completion_tokens, temperature=SAMPLING.logprob_temperature)
  np.testing.assert_allclose(groups.old_logprobs[mask], np.asarray(want)[mask], rtol=1e-5,
                             atol=1e-5)
  assert np.abs(groups.old_logprobs - groups.sampler_logprobs)[mask].max() > 0.1
  assert np.all(groups.old_logprobs[~mask] == 0)


def test_without_reference_params_there_is_no_learner_input(run):
  _, params, batch, rewards = run
  scored = sample_and_score(CFG, params, batch, jax.random.key(1), SAMPLING, K, TOK, rewards)
  assert scored.texts == run[0].texts
  with pytest.raises(ValueError, match="no reference log-probs"):
    scored.groups()


def test_evaluation_summarises_k_samples_per_problem(run):
  _, params, batch, rewards = run
  cfg = EvalConfig(num_samples=K, temperature=0.7, max_new_tokens=12, pass_at=(1, K))
  metrics, samples = evaluate(CFG, params, batch, jax.random.key(1), SAMPLING, TOK, rewards, cfg)
  assert len(samples) == len(EXAMPLES) * K and [s["completion"] for s in samples] == run[0].texts
  assert metrics["cons@k"] == metrics[f"cons@{K}"] and 0.0 <= metrics["pass@1"] <= 1.0


def test_eval_sampling_takes_its_own_top_p_temperature_and_length():
  import types

  from r1jax.experience import sampling_for
  from r1jax.rollout.config import SamplingConfig
  tokenizer = types.SimpleNamespace(eos_ids=[3], pad_id=0)
  rollout = SamplingConfig(max_new_tokens=64, temperature=1.0, top_p=1.0)
  same = sampling_for(rollout, tokenizer)
  assert (same.temperature, same.top_p, same.max_new_tokens, same.eos_ids) == (1.0, 1.0, 64, (3,))
  paper = sampling_for(rollout, tokenizer, temperature=0.6, top_p=0.95, max_new_tokens=128)
  assert (paper.temperature, paper.top_p, paper.max_new_tokens) == (0.6, 0.95, 128)
