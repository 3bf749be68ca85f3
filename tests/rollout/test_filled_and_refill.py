"""Filled-only attention and refilled slots draw exactly what today's full-cache sampler draws,
row by row: the same tokens, ends and log-probs for the same rng, on one device and on eight."""
import dataclasses

import jax
import numpy as np
import pytest

from r1jax.config import ConfigError, from_dict
from r1jax.mesh import MeshConfig, make_mesh, tree_shardings, use_mesh
from r1jax.models import param_axes
from r1jax.rollout import SamplingConfig, sample
from r1jax.rollout.sampler import refill_slots
from tests.models.test_mla import V3

# Uneven prompts; with EOS ids the rows end at different steps, some at their first token.
PROMPTS = [[5, 9, 2, 7, 11], [3], [8, 1, 4], [6, 6], [2, 7, 9, 1]]
KW = dict(num_samples=3, max_new_tokens=9, eos_ids=(3, 17))
WAYS = {"filled": dict(attention="filled", kv_block=2),          # several blocks per row
        "refill": dict(attention="filled", kv_block=4, refill_slots=4)}   # 15 rows, 4 slots


def _assert_same(got, want, atol=1e-5):
  """Tokens and ends equal; log-probs to float32 rounding of differently ordered sums (the same
  bound as the sampler against a teacher-forced forward; ~4e-6 measured here)."""
  for field in ("tokens", "lengths", "finished_eos"):
    np.testing.assert_array_equal(np.asarray(getattr(got, field)), np.asarray(getattr(want, field)),
                                  err_msg=field)
  np.testing.assert_allclose(np.asarray(got.logprobs), np.asarray(want.logprobs), atol=atol, rtol=0)


def _model(ref, name):
  if name == "DENSE":
    return ref.DENSE
  if name == "MOE_REPLAY":  # the recorded experts must land at each row's own steps
    return dataclasses.replace(ref.MOE, moe=dataclasses.replace(ref.MOE.moe, routing_replay=True))
  return V3  # MLA's latent cache written per row (its decode reads the whole cache)


# Both ways on the dense model at both temperatures; refill (which attends filled-only too) on
# the MoE and MLA models, one temperature each, to keep the compiles few.
@pytest.mark.parametrize("name,temperature,ways", [
    ("DENSE", 0.0, ("filled", "refill")), ("DENSE", 0.8, ("filled", "refill")),
    ("MOE_REPLAY", 0.8, ("refill",)), ("V3_MLA", 0.0, ("refill",))])
def test_filled_and_refill_equal_the_full_cache_sampler(ref, name, temperature, ways):
  cfg = _model(ref, name)
  params = ref.make_params(cfg)
  tokens, mask = ref.left_padded(PROMPTS)
  run = lambda **kw: sample(cfg, params, tokens, mask, jax.random.key(7), temperature=temperature,
                            top_k=6, **(KW | kw))
  # EOS ids taken from a first run at different steps of different rows: rows then end unevenly.
  drawn = np.asarray(run(eos_ids=(), attention="full").tokens)
  eos = tuple(sorted({int(drawn[r, 1 + r % 6]) for r in range(0, len(drawn), 4)}))[:3]
  full = run(eos_ids=eos, attention="full")
  lengths = np.asarray(full.lengths)
  assert len(set(lengths.tolist())) >= 3 and lengths.min() < 9, lengths
  for way in ways:
    out = run(eos_ids=eos, **WAYS[way])
    _assert_same(out, full)
    if full.expert_ids is not None:   # routes count where a token was fed in: before its end
      fed = np.arange(9)[None, :] < lengths[:, None] - 1
      np.testing.assert_array_equal(np.asarray(out.expert_ids)[:, fed],
                                    np.asarray(full.expert_ids)[:, fed], err_msg=way)


def test_refilled_logprobs_equal_teacher_forced_logprobs(ref):
  cfg, params = ref.DENSE, ref.make_params(ref.DENSE, init_std=0.5)
  tokens, mask = ref.left_padded(PROMPTS)
  out = sample(cfg, params, tokens, mask, jax.random.key(8), temperature=0.7, **KW,
               **WAYS["refill"])
  forced = ref.teacher_forced_logits(cfg, params, PROMPTS, out, KW["num_samples"])
  for r, lg in enumerate(forced):
    drawn = np.asarray(out.tokens[r, :len(lg)])
    want = np.take_along_axis(ref.log_softmax(lg / 0.7), drawn[:, None], 1)[:, 0]
    np.testing.assert_allclose(np.asarray(out.logprobs[r, :len(lg)]), want, atol=1e-5, rtol=0)


def test_refill_on_eight_devices_equals_the_full_cache_sampler_on_one(ref):
  # The decode layout: rows over data, heads (and the caches' KV heads) over fsdp and tensor.
  ici = (2, 2, 1, 2)
  cfg, params = ref.DENSE, ref.make_params(ref.DENSE)
  tokens, mask = ref.left_padded(PROMPTS + [[4, 4, 1]] * 3)       # 8 prompts, 24 rows
  kw = dict(KW, temperature=0.8)
  single = sample(cfg, params, tokens, mask, jax.random.key(9), attention="full", **kw)
  assert len(set(np.asarray(single.lengths).tolist())) >= 3, "rows should end unevenly"
  mesh = make_mesh(MeshConfig(ici=ici))
  sharded = jax.device_put(params, tree_shardings(param_axes(cfg), params, mesh))
  with use_mesh(mesh):
    # Whole slots per batch shard, so that each shard refills from its own rows.
    assert [refill_slots(SamplingConfig(refill_slots=n), 24) for n in (7, 8, 30)] == [8, 8, 24]
    spread = sample(cfg, sharded, tokens, mask, jax.random.key(9), attention="filled", kv_block=4,
                    refill_slots=7, **kw)
  _assert_same(spread, single)


@pytest.mark.parametrize("values,message", [
    ({"attention": "paged"}, "'rollout.attention': got 'paged'; allowed values: 'filled', 'full'"),
    ({"kv_block": 0}, "'rollout.kv_block'"),
    ({"refill_slots": -1}, "'rollout.refill_slots'"),
    ({"refill_slots": 4, "attention": "full"}, "'rollout.refill_slots'.*attention='filled'")])
def test_bad_decode_options_name_their_key(values, message):
  with pytest.raises(ConfigError, match=message):
    from_dict(SamplingConfig, values, "rollout")
