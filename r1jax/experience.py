"""Sample and score: from prompts to scored completions, the learner's input, and evaluation.

:func:`sample_and_score` samples n completions per prompt in chunks (`rollout.sample_chunks`
dispatches the next chunk before handing on the last); each finished chunk's completions are
decoded and queued on the reward service at once and, when reference params are given, its
reference log-probs are dispatched to the device, so the CPU verifiers, the sampler and the
reference forward overlap. Only then does it wait for the rewards. In RL, n is G and
:meth:`Scored.groups` is the learner's input (`r1jax.rl.batch.Groups`); in evaluation n is the
eval section's k, and :func:`evaluate` summarises the same samples with `r1jax.evaluate`.

Under a mesh the prompts are a global array sharded along the batch (each process supplies its
rows, `r1jax.distributed.process_rows`), so several processes sample one batch together. The host
code then reads only what it holds or gathers explicitly: each chunk's completions are fetched whole
(the learner needs every group), but each process decodes and scores only the completions of its
own prompts, and the rewards are gathered afterwards, so every process ends with the same
:class:`Scored` batch.
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

from r1jax import distributed
from r1jax import mesh as mesh_lib
from r1jax.config import check_choice, check_range
from r1jax.data.pipeline import load_examples, make_batch
from r1jax.data.schema import DATA_TYPES, FIELDS, SPLITS
from r1jax.data.tokenizers import Tokenizer
from r1jax.evaluate import summarize
from r1jax.models import ModelConfig
from r1jax.models.moe import replay_ids_dtype
from r1jax.models.transformer import compute_weights
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
  top_p: float = 0.0              # 0 = the rollout's; the paper's protocol samples at 0.95
  max_new_tokens: int = 0         # 0 = the rollout's
  pass_at: tuple[int, ...] = (1, 8)

  def validate(self):
    check_choice("split", self.split, SPLITS)
    check_range("num_problems", self.num_problems, 1)
    check_range("num_samples", self.num_samples, 1)
    check_range("temperature", self.temperature, 0.0)
    check_range("top_p", self.top_p, 0.0, 1.0)
    check_range("max_new_tokens", self.max_new_tokens, 0)
    for k in self.pass_at:
      check_range("pass_at", k, 1, self.num_samples)


def sampling_for(rollout: SamplingConfig, tokenizer: Tokenizer, *, temperature: float | None = None,
                 max_new_tokens: int = 0, top_p: float = 0.0) -> SamplingConfig:
  """The rollout config completed with the tokenizer's EOS / pad ids; a given temperature and a
  non-zero length or top-p override the rollout's (evaluation and rejection sampling use their
  own)."""
  return dataclasses.replace(
      rollout, temperature=rollout.temperature if temperature is None else temperature,
      max_new_tokens=max_new_tokens or rollout.max_new_tokens, top_p=top_p or rollout.top_p,
      eos_ids=rollout.eos_ids or tuple(tokenizer.eos_ids), pad_id=tokenizer.pad_id)


@dataclasses.dataclass
class Scored:
  """n scored completions per prompt of `batch`; row r answers prompt r // n. Every array is whole
  on every process; only the texts (and the batch's text fields) of other processes' prompts are
  None."""
  batch: Mapping[str, np.ndarray]   # the prompt batch (`r1jax.data.pipeline.make_batch`)
  rollout: Rollout                  # host arrays, cut to the used length
  texts: list[str | None]
  rewards: RewardBatch
  reward_wait_s: float
  ref_logprobs: np.ndarray | None = None
  learner_logprobs: np.ndarray | None = None   # pi_old recomputed (`sample_and_score(old_params)`)

  @property
  def num_samples(self) -> int:
    return len(self.texts) // len(self.batch["prompt_tokens"])

  def completion_mask(self) -> np.ndarray:
    return np.arange(self.rollout.tokens.shape[1])[None, :] < self.rollout.lengths[:, None]

  def groups(self) -> Groups:
    """The learner's arrays; needs the reference log-probs (`sample_and_score(ref_params=...)`)."""
    if self.ref_logprobs is None:
      raise ValueError("no reference log-probs: sample with ref_params to train on these samples")
    routes = self.rollout.expert_ids   # [layers, rows, T, k] -> rows first, as the batch splits
    sampler = self.rollout.logprobs.astype(np.float32)
    old, recomputed = sampler, self.learner_logprobs is not None
    if recomputed:   # pi_old is the learner's; the sampler's stays beside it
      old = np.where(self.completion_mask(), self.learner_logprobs, 0.0).astype(np.float32)
    return Groups(prompt_tokens=np.asarray(self.batch["prompt_tokens"]),
                  prompt_mask=np.asarray(self.batch["prompt_mask"]).astype(bool),
                  completion_tokens=self.rollout.tokens, completion_mask=self.completion_mask(),
                  old_logprobs=old, ref_logprobs=self.ref_logprobs,
                  truncated=~self.rollout.finished_eos,
                  expert_ids=None if routes is None else np.moveaxis(routes, 1, 0),
                  sampler_logprobs=sampler if recomputed else None)

  def fill_texts(self, tokenizer: Tokenizer) -> None:
    """Decodes the texts this process did not score (other processes' prompts) from the whole
    rollout, for summaries that read every completion (evaluation)."""
    missing = [i for i, t in enumerate(self.texts) if t is None]
    if missing:
      r = self.rollout
      for i, text in zip(missing, decode_completions(tokenizer, r.tokens[missing],
                                                     r.lengths[missing], r.finished_eos[missing])):
        self.texts[i] = text

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


def _joined_routes(parts, length: int):
  """Chunks' replayed routes [layers, rows, T_i, k] padded to `length` and joined along rows."""
  if parts[0] is None:
    return None
  return np.concatenate([np.pad(p, ((0, 0), (0, 0), (0, length - p.shape[2]), (0, 0)))
                         for p in parts], axis=1)


def examples_of(batch: Mapping[str, np.ndarray], rows: range) -> list[dict[str, Any]]:
  return [{k: (batch[k][i].item() if hasattr(batch[k][i], "item") else batch[k][i])
           for k in FIELDS} for i in rows]


@functools.partial(jax.jit, static_argnames=("model_cfg", "temperature"))
def _reference_logprobs(model_cfg, params, prompt_tokens, prompt_mask, tokens, temperature,
                        expert_ids=None):
  return completion_logprobs(model_cfg, params, prompt_tokens, prompt_mask, tokens,
                             temperature=temperature, expert_ids=expert_ids)


@functools.partial(jax.jit, static_argnames=("model_cfg", "temperature"))
def _learner_logprobs(model_cfg, params, prompt_tokens, prompt_mask, tokens, temperature,
                      expert_ids=None):
  """pi_old as the train step computes it: the forward over the weights' compute-dtype copy."""
  return _reference_logprobs(model_cfg, compute_weights(model_cfg, params), prompt_tokens,
                             prompt_mask, tokens, temperature, expert_ids)


def _used(model_cfg: ModelConfig, out: Rollout, length: int, routes: bool) -> Rollout:
  """The rollout's tokens cut to `length`, and its replayed routes too (in their compact dtype)
  where `routes` (the learner will replay them), else dropped."""
  routes = out.expert_ids if routes else None
  if routes is not None:
    routes = routes[:, :, :length].astype(replay_ids_dtype(model_cfg.moe.num_experts))
  return dataclasses.replace(out, tokens=out.tokens[:, :length], expert_ids=routes)


def _own_rows(batch: Mapping[str, np.ndarray], num_prompts: int | None) -> tuple[dict, range, int]:
  """(this process's rows of the batch, their global indices, the global number of prompts).
  `batch` holds either every prompt or exactly this process's rows of `num_prompts`."""
  held = len(batch["prompt_tokens"])
  total = held if num_prompts is None else num_prompts
  mesh = mesh_lib.current_mesh()
  rows = range(total)
  if mesh is not None:
    rows = rows[distributed.process_rows((total,), mesh, mesh_lib.current_rules())]
  if held == total and len(rows) != total:
    batch = {k: v[rows.start:rows.stop] for k, v in batch.items()}
  elif held != len(rows):
    raise ValueError(f"batch: got {held} prompts; need all {total} or this process's {len(rows)}")
  return dict(batch), rows, total


def _whole_batch(batch, rows: range, total: int, per_prompt: dict[str, np.ndarray]):
  """The prompt batch and `per_prompt` arrays ([len(rows), ...] each) whole on every process: the
  arrays and data types gathered, the other text fields None outside this process's rows."""
  local = {k: np.asarray(v) for k, v in batch.items() if k not in FIELDS or k == "difficulty"}
  local["data_type"] = np.array([DATA_TYPES.index(t) for t in batch["data_type"]], np.int32)
  whole, per_prompt = distributed.gather_rows((local, per_prompt), slice(rows.start, rows.stop),
                                              total)
  whole["data_type"] = np.array([DATA_TYPES[i] for i in whole["data_type"]], object)
  for key in set(FIELDS) - set(whole):
    whole[key] = np.full(total, None, object)
    whole[key][rows.start:rows.stop] = batch[key]
  return whole, per_prompt


def sample_and_score(model_cfg: ModelConfig, params, batch: Mapping[str, np.ndarray], rng,
                     sampling: SamplingConfig, num_samples: int, tokenizer: Tokenizer,
                     rewards: RewardService, *, ref_params=None, old_params=None,
                     num_prompts: int | None = None) -> Scored:
  """Samples `num_samples` completions per prompt of `batch`, scores them with `rewards`, and
  with `ref_params` computes their reference log-probs chunk by chunk (with `old_params`, the
  policy's too: pi_old recomputed by the learner's forward). `batch` holds every prompt,
  or (with `num_prompts`, the global count) this process's rows of them."""
  batch, rows, total = _own_rows(batch, num_prompts)
  n, mesh = num_samples, mesh_lib.current_mesh()
  prompts = {k: np.asarray(batch[k]) for k in ("prompt_tokens", "prompt_mask")}
  if mesh is not None:   # one global array that every process samples together
    prompts = distributed.global_batch(prompts, {k: total for k in prompts}, mesh,
                                       mesh_lib.current_rules())
  ticket, parts, texts, ref_parts, old_parts = None, [], [], [], []
  for part, out in sample_chunks(model_cfg, params, prompts["prompt_tokens"],
                                 prompts["prompt_mask"], rng, sampling, n):
    length = used_length(distributed.fetch(out.lengths), sampling.max_new_tokens)
    used = _used(model_cfg, out, length, routes=ref_params is not None)
    host = distributed.fetch(used)
    lo, hi = max(part.start, rows.start), min(part.stop, rows.stop)
    own = range(lo, hi) if lo < hi else range(part.start, part.start)   # prompts held here
    mine = slice((own.start - part.start) * n, (own.stop - part.start) * n)
    chunk_texts = decode_completions(tokenizer, host.tokens[mine], host.lengths[mine],
                                     host.finished_eos[mine])
    examples = [e for e in examples_of(batch, range(own.start - rows.start, own.stop - rows.start))
                for _ in range(n)]
    ticket = rewards.submit(chunk_texts, examples, ticket)
    if ref_params is not None:   # dispatched now, read after the rewards
      ref_parts.append(_reference_logprobs(model_cfg, ref_params, prompts["prompt_tokens"][part],
                                           prompts["prompt_mask"][part], used.tokens,
                                           sampling.logprob_temperature, used.expert_ids))
    if old_params is not None:
      old_parts.append(_learner_logprobs(model_cfg, old_params, prompts["prompt_tokens"][part],
                                         prompts["prompt_mask"][part], used.tokens,
                                         sampling.logprob_temperature, used.expert_ids))
    parts.append(host)
    texts.extend([None] * mine.start + chunk_texts +
                 [None] * (len(host.lengths) - mine.stop))
  start = time.perf_counter()
  mine = rewards.collect(ticket)   # this process's prompts' rows, in order
  wait = time.perf_counter() - start
  per_prompt = {k: v.reshape(len(rows), n) for k, v in vars(mine).items() if k != "components"}
  per_prompt.update({f"components/{k}": v.reshape(len(rows), n)
                     for k, v in mine.components.items()})
  whole, per_prompt = _whole_batch(batch, rows, total, per_prompt)
  per_row = {k: v.reshape(-1) for k, v in per_prompt.items()}
  reward_batch = RewardBatch(
      reward=per_row.pop("reward"), timed_out=per_row.pop("timed_out"),
      crashed=per_row.pop("crashed"), retried=per_row.pop("retried"),
      components={k.split("/", 1)[1]: v for k, v in per_row.items()})
  length = max(p.tokens.shape[1] for p in parts)
  rollout = Rollout(tokens=np.concatenate([_fit(p.tokens, length, sampling.pad_id) for p in parts]),
                    logprobs=np.concatenate([_fit(p.logprobs, length, 0.0) for p in parts]),
                    lengths=np.concatenate([p.lengths for p in parts]),
                    finished_eos=np.concatenate([p.finished_eos for p in parts]),
                    expert_ids=_joined_routes([p.expert_ids for p in parts], length))
  joined = lambda chunks: (np.concatenate([_fit(r, length, 0.0) for r in distributed.fetch(
      chunks)]).astype(np.float32) if chunks else None)
  return Scored(whole, rollout, texts, reward_batch, wait, joined(ref_parts), joined(old_parts))


def eval_batch(exp, tokenizer: Tokenizer) -> dict[str, np.ndarray]:
  """The prompt batch of the eval section's problems."""
  examples = load_examples(exp.data, exp.eval.split, tokenizer=tokenizer)[:exp.eval.num_problems]
  return make_batch(examples, tokenizer, template=exp.data.template,
                    max_prompt_len=exp.data.max_prompt_len)


def evaluate(model_cfg: ModelConfig, params, batch, rng, sampling: SamplingConfig,
             tokenizer: Tokenizer, rewards: RewardService, cfg: EvalConfig
             ) -> tuple[dict[str, float], list[dict[str, Any]]]:
  """(metrics, per-sample records) of k samples per problem of `batch`, drawn as `sampling` does
  at the eval section's temperature, top-p and length."""
  sampling = sampling_for(sampling, tokenizer, temperature=cfg.temperature,
                          max_new_tokens=cfg.max_new_tokens, top_p=cfg.top_p)
  scored = sample_and_score(model_cfg, params, batch, rng, sampling, cfg.num_samples, tokenizer,
                            rewards)
  scored.fill_texts(tokenizer)   # cons@k and the reflection counts read every completion
  samples = scored.samples()
  return summarize(samples, cfg.num_samples, cfg.pass_at), samples


@contextlib.contextmanager
def scoring(exp, params):
  """Outside the RL loop: the experiment's mesh made current, `params` placed on it, and a reward
  service, closed on exit. Yields (params, rewards)."""
  mesh = mesh_lib.make_mesh(exp.mesh)
  rewards = RewardService(exp.rewards)
  # Processes loaded the model and data at their own pace: start the first programs together
  # (gloo gives a late process only 30 s to join them; see distributed.barrier).
  distributed.barrier("scoring_ready")
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
