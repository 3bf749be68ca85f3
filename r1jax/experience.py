"""Sample and score: from prompts to scored completions, the learner's input, and evaluation.

:func:`sample_and_score` samples n completions per prompt in chunks (`rollout.sample_chunks`
dispatches the next chunk before handing on the last); each finished chunk's completions are
decoded and queued on the reward service at once and, when reference params are given, its
reference log-probs are dispatched to the device, so the CPU verifiers, the sampler and the
reference forward overlap. Only then does it wait for the rewards. In RL, n is G and
:meth:`Scored.groups` is the learner's input (`r1jax.rl.batch.Groups`); in evaluation n is the
eval section's k, and :func:`evaluate` summarises the same samples with `r1jax.evaluate`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import time
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from r1jax import mesh as mesh_lib
from r1jax.config import check_choice, check_range
from r1jax.data.pipeline import load_examples, make_batch
from r1jax.data.schema import FIELDS, SPLITS
from r1jax.data.tokenizers import Tokenizer
from r1jax.evaluate import summarize
from r1jax.models import ModelConfig
from r1jax.rewards.compose import RewardBatch
from r1jax.rewards.service import RewardService
from r1jax.rl.batch import Groups
from r1jax.rl.logprobs import completion_logprobs
from r1jax.rollout import Rollout, SamplingConfig, sample_chunks

# Completion arrays are cut to the longest completion, rounded up to this many tokens: the
# learner and the reference then skip the unused tail of the length budget, while the number of
# distinct shapes (and so compilations) stays small.
LENGTH_BUCKET = 32


@dataclasses.dataclass(frozen=True)
class EvalConfig:
  split: str = "eval"
  num_problems: int = 64
  num_samples: int = 8            # k per problem: pass@1 is averaged over k; cons@k votes over them
  temperature: float = 1.0
  max_new_tokens: int = 0         # 0 = the rollout's
  pass_at: tuple[int, ...] = (1, 8)

  def validate(self):
    check_choice("split", self.split, SPLITS)
    check_range("num_problems", self.num_problems, 1)
    check_range("num_samples", self.num_samples, 1)
    check_range("temperature", self.temperature, 0.0)
    check_range("max_new_tokens", self.max_new_tokens, 0)
    for k in self.pass_at:
      check_range("pass_at", k, 1, self.num_samples)


def sampling_for(rollout: SamplingConfig, tokenizer: Tokenizer, *, temperature: float | None = None,
                 max_new_tokens: int = 0) -> SamplingConfig:
  """The rollout config completed with the tokenizer's EOS / pad ids; a given temperature and a
  non-zero length override the rollout's (evaluation and rejection sampling use their own)."""
  return dataclasses.replace(
      rollout, temperature=rollout.temperature if temperature is None else temperature,
      max_new_tokens=max_new_tokens or rollout.max_new_tokens,
      eos_ids=rollout.eos_ids or tuple(tokenizer.eos_ids), pad_id=tokenizer.pad_id)


@dataclasses.dataclass
class Scored:
  """n scored completions per prompt of `batch`; row r answers prompt r // n."""
  batch: Mapping[str, np.ndarray]   # the prompt batch (`r1jax.data.pipeline.make_batch`)
  rollout: Rollout                  # host arrays, cut to the used length
  texts: list[str]
  rewards: RewardBatch
  reward_wait_s: float
  ref_logprobs: np.ndarray | None = None

  @property
  def num_samples(self) -> int:
    return len(self.texts) // len(self.batch["prompt_tokens"])

  def completion_mask(self) -> np.ndarray:
    return np.arange(self.rollout.tokens.shape[1])[None, :] < self.rollout.lengths[:, None]

  def groups(self) -> Groups:
    """The learner's arrays; needs the reference log-probs (`sample_and_score(ref_params=...)`)."""
    if self.ref_logprobs is None:
      raise ValueError("no reference log-probs: sample with ref_params to train on these samples")
    return Groups(prompt_tokens=np.asarray(self.batch["prompt_tokens"]),
                  prompt_mask=np.asarray(self.batch["prompt_mask"]).astype(bool),
                  completion_tokens=self.rollout.tokens, completion_mask=self.completion_mask(),
                  old_logprobs=self.rollout.logprobs.astype(np.float32),
                  ref_logprobs=self.ref_logprobs, truncated=~self.rollout.finished_eos)

  def samples(self) -> list[dict[str, Any]]:
    """Per-sample records, as `r1jax.evaluate.summarize` reads them."""
    n = self.num_samples
    return [{"problem": i // n, "completion": text,
             "correct": self.rewards.components["accuracy"][i] >= 1.0,
             "length": int(self.rollout.lengths[i]), "data_type": self.batch["data_type"][i // n],
             "difficulty": int(self.batch["difficulty"][i // n])}
            for i, text in enumerate(self.texts)]


def decode_completions(tokenizer: Tokenizer, tokens, lengths, finished_eos) -> list[str]:
  """Completion texts without the final EOS token and the padding after it."""
  out = []
  for row, n, eos in zip(np.asarray(tokens), np.asarray(lengths), np.asarray(finished_eos)):
    out.append(tokenizer.decode(row[:n - 1] if eos and n > 0 else row[:n]))
  return out


def used_length(lengths, budget: int) -> int:
  """The longest completion rounded up to LENGTH_BUCKET, at most the budget."""
  longest = int(np.max(lengths)) if np.size(lengths) else 1
  return min(budget, -(-max(longest, 1) // LENGTH_BUCKET) * LENGTH_BUCKET)


def _fit(x: np.ndarray, length: int, fill) -> np.ndarray:
  """Cuts or pads axis 1 to `length`."""
  x = np.asarray(x)
  if x.shape[1] >= length:
    return x[:, :length]
  return np.pad(x, ((0, 0), (0, length - x.shape[1])), constant_values=fill)


def examples_of(batch: Mapping[str, np.ndarray], rows: range) -> list[dict[str, Any]]:
  return [{k: (batch[k][i].item() if hasattr(batch[k][i], "item") else batch[k][i])
           for k in FIELDS} for i in rows]


@functools.partial(jax.jit, static_argnames=("model_cfg", "temperature"))
def _reference_logprobs(model_cfg, params, prompt_tokens, prompt_mask, tokens, temperature):
  return completion_logprobs(model_cfg, params, prompt_tokens, prompt_mask, tokens,
                             temperature=temperature)


def sample_and_score(model_cfg: ModelConfig, params, batch: Mapping[str, np.ndarray], rng,
                     sampling: SamplingConfig, num_samples: int, tokenizer: Tokenizer,
                     rewards: RewardService, *, ref_params=None) -> Scored:
  """Samples `num_samples` completions per prompt of `batch`, scores them with `rewards`, and
  with `ref_params` computes their reference log-probs chunk by chunk."""
  ticket, parts, texts, ref_parts = None, [], [], []
  for part, out in sample_chunks(model_cfg, params, batch["prompt_tokens"], batch["prompt_mask"],
                                 rng, sampling, num_samples):
    out = jax.device_get(out)
    out = dataclasses.replace(out, tokens=out.tokens[:, :used_length(out.lengths,
                                                                     sampling.max_new_tokens)])
    chunk_texts = decode_completions(tokenizer, out.tokens, out.lengths, out.finished_eos)
    examples = [e for e in examples_of(batch, range(part.start, part.stop))
                for _ in range(num_samples)]
    ticket = rewards.submit(chunk_texts, examples, ticket)
    if ref_params is not None:   # dispatched now, read after the rewards
      ref_parts.append(_reference_logprobs(model_cfg, ref_params, batch["prompt_tokens"][part],
                                           batch["prompt_mask"][part], out.tokens,
                                           sampling.logprob_temperature))
    parts.append(out)
    texts.extend(chunk_texts)
  start = time.perf_counter()
  reward_batch = rewards.collect(ticket)
  wait = time.perf_counter() - start
  length = max(p.tokens.shape[1] for p in parts)
  rollout = Rollout(tokens=np.concatenate([_fit(p.tokens, length, sampling.pad_id) for p in parts]),
                    logprobs=np.concatenate([_fit(p.logprobs, length, 0.0) for p in parts]),
                    lengths=np.concatenate([p.lengths for p in parts]),
                    finished_eos=np.concatenate([p.finished_eos for p in parts]))
  ref = (np.concatenate([_fit(r, length, 0.0) for r in ref_parts]).astype(np.float32)
         if ref_parts else None)
  return Scored(batch, rollout, texts, reward_batch, wait, ref)


def eval_batch(exp, tokenizer: Tokenizer) -> dict[str, np.ndarray]:
  """The prompt batch of the eval section's problems."""
  examples = load_examples(exp.data, exp.eval.split, tokenizer=tokenizer)[:exp.eval.num_problems]
  return make_batch(examples, tokenizer, template=exp.data.template,
                    max_prompt_len=exp.data.max_prompt_len)


def evaluate(model_cfg: ModelConfig, params, batch, rng, sampling: SamplingConfig,
             tokenizer: Tokenizer, rewards: RewardService, cfg: EvalConfig
             ) -> tuple[dict[str, float], list[dict[str, Any]]]:
  """(metrics, per-sample records) of k samples per problem of `batch`, drawn as `sampling` does
  at the eval section's temperature and length."""
  sampling = sampling_for(sampling, tokenizer, temperature=cfg.temperature,
                          max_new_tokens=cfg.max_new_tokens)
  scored = sample_and_score(model_cfg, params, batch, rng, sampling, cfg.num_samples, tokenizer,
                            rewards)
  samples = scored.samples()
  return summarize(samples, cfg.num_samples, cfg.pass_at), samples


@contextlib.contextmanager
def scoring(exp, params):
  """Outside the RL loop: the experiment's mesh made current, `params` placed on it, and a reward
  service, closed on exit. Yields (params, rewards)."""
  mesh = mesh_lib.make_mesh(exp.mesh)
  rewards = RewardService(exp.rewards)
  try:
    with mesh_lib.use_mesh(mesh, exp.mesh.rules):
      yield jax.device_put(params), rewards
  finally:
    rewards.close()


def evaluate_policy(exp, model_cfg: ModelConfig, params, tokenizer: Tokenizer, *,
                    seed: int = 0) -> tuple[dict[str, float], list[dict[str, Any]]]:
  """(metrics as in the RL loop's eval.jsonl, per-sample records) on `exp.eval`'s problems."""
  with scoring(exp, params) as (params, rewards):
    return evaluate(model_cfg, params, eval_batch(exp, tokenizer), jax.random.key(seed),
                    exp.rollout, tokenizer, rewards, exp.eval)
