"""Rejection sampling: k samples per prompt from a checkpoint, keep the verified and readable ones.

The `rejection` job samples `rejection.num_samples` completions for each prompt of a split with
the rollout engine, scores them with the reward service (the same verifiers as RL), and keeps a
sample only if its verifier accepted it (accuracy 1) and it passes the readability filters that
are switched on: the exact R1 format, language consistency of the CoT at or above a threshold, and
no degenerate repetition. Exact duplicates of a prompt's kept answers are dropped, and at most
`max_per_prompt` are kept. The kept samples go to `<workdir>/traces.jsonl` (the rows the SFT
trainer reads); with `write_failed`, the samples the verifier rejected go to
`<workdir>/failed.jsonl` too (the rejected side of DPO pairs, `r1jax/jobs/dpo.py`). The
acceptance statistics (kept/total overall, per type, per difficulty, and why samples were
rejected) are the job's summary.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import jax
from absl import logging

from r1jax.config import check_choice, check_range
from r1jax.data.pipeline import load_examples, make_batch
from r1jax.data.schema import FIELDS, SPLITS
from r1jax.distributed import is_chief
from r1jax.experience import sample_and_score, sampling_for, scoring
from r1jax.policy import load_policy
from r1jax.rewards import fmt, language

TRACES = "traces.jsonl"
FAILED = "failed.jsonl"
REASONS = ("unverified", "format", "language", "repetition", "duplicate", "over_quota")


@dataclasses.dataclass(frozen=True)
class RejectionConfig:
  split: str = "train"
  num_problems: int = 0           # 0 = the whole split
  num_samples: int = 16           # k per prompt
  temperature: float = 1.0
  max_new_tokens: int = 0         # 0 = the rollout section's
  prompts_per_batch: int = 32     # prompts sampled per call (memory, not results)
  require_format: bool = True
  min_language: float = 0.0       # language consistency of the CoT (rewards.target_language); 0 = off
  max_repetition: float = 1.0     # largest share of one repeated word 4-gram; 1 = off
  max_per_prompt: int = 0         # 0 = keep all accepted samples (after de-duplication)
  write_failed: bool = False      # also write the unverified samples (DPO's rejected answers)
  seed: int = 0

  def validate(self):
    check_choice("split", self.split, SPLITS)
    for key in ("num_problems", "max_new_tokens", "max_per_prompt"):
      check_range(key, getattr(self, key), 0)
    check_range("num_samples", self.num_samples, 1)
    check_range("prompts_per_batch", self.prompts_per_batch, 1)
    check_range("temperature", self.temperature, 0.0)
    check_range("min_language", self.min_language, 0.0, 1.0)
    check_range("max_repetition", self.max_repetition, 0.0, 1.0, low_open=True)


def repetition(text: str, n: int = 4) -> float:
  """Share of the text's word n-grams taken by its most frequent one (0 for short texts)."""
  words = text.split()
  grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
  if len(grams) < 2 * n:  # too short to call anything a loop
    return 0.0
  return max(collections.Counter(grams).values()) / len(grams)


def _has_words(completion: str) -> bool:
  """Whether the CoT has any letters: one of only numbers and symbols has no language to mix."""
  start, end = completion.find("<think>"), completion.find("</think>")
  cot = completion[start + len("<think>"):end] if 0 <= start < end else completion
  return any(ch.isalpha() for ch in cot)


def rejection_reason(cfg: RejectionConfig, completion: str, accuracy: float,
                     target_language: str) -> str | None:
  """Why one sample is rejected on its own (None = kept): verifier first, then readability."""
  if accuracy < 1.0:
    return "unverified"
  if cfg.require_format and fmt.score(completion) < 1.0:
    return "format"
  if (cfg.min_language and _has_words(completion)
      and language.consistency(completion, target_language) < cfg.min_language):
    return "language"
  if cfg.max_repetition < 1.0 and repetition(completion) > cfg.max_repetition:
    return "repetition"
  return None


def select(cfg: RejectionConfig, examples: Sequence[Mapping], completions: Sequence[str],
           accuracy: Sequence[float], target_language: str) -> tuple[list[dict], dict[str, Any]]:
  """(kept rows, acceptance stats) from k completions per example (rows i*k..i*k+k-1)."""
  k = len(completions) // max(len(examples), 1)
  if k * len(examples) != len(completions) or len(accuracy) != len(completions):
    raise ValueError(f"{len(completions)} completions and {len(accuracy)} scores for "
                     f"{len(examples)} examples: need the same k for every example")
  kept, reasons = [], collections.Counter()
  tally = {"type": collections.defaultdict(lambda: [0, 0]),
           "difficulty": collections.defaultdict(lambda: [0, 0])}
  for e, example in enumerate(examples):
    answers: set[str] = set()
    for i in range(e * k, e * k + k):
      reason = rejection_reason(cfg, completions[i], float(accuracy[i]), target_language)
      if reason is None and completions[i] in answers:
        reason = "duplicate"
      if reason is None and cfg.max_per_prompt and len(answers) >= cfg.max_per_prompt:
        reason = "over_quota"
      for key, value in (("type", example["data_type"]), ("difficulty", example["difficulty"])):
        tally[key][value][1] += 1
        tally[key][value][0] += reason is None
      if reason is not None:
        reasons[reason] += 1
        continue
      answers.add(completions[i])
      kept.append({**{f: example[f] for f in FIELDS}, "completion": completions[i]})
  total = len(completions)
  stats = {"kept": len(kept), "total": total, "acceptance": len(kept) / total if total else 0.0,
           "prompts": len(examples),
           "prompts_with_a_kept_sample": len({r["source_id"] for r in kept}),
           "rejected": {r: reasons[r] for r in REASONS},
           **{f"by_{key}": {str(v): {"kept": a, "total": n, "acceptance": a / n}
                            for v, (a, n) in sorted(t.items())} for key, t in tally.items()}}
  return kept, stats


def run(exp, workdir: str) -> dict[str, Any]:
  """The `rejection` job: writes the kept traces; returns the acceptance statistics."""
  cfg = exp.rejection
  model_cfg, params, tokenizer = load_policy(exp.base_model, exp.model, exp.tokenizer, cfg.seed)
  examples = load_examples(exp.data, cfg.split, tokenizer=tokenizer)
  examples = examples[:cfg.num_problems] if cfg.num_problems else examples
  sampling = sampling_for(exp.rollout, tokenizer, temperature=cfg.temperature,
                          max_new_tokens=cfg.max_new_tokens)
  texts, accuracy = [], []
  with scoring(exp, params) as (params, rewards):
    for b, start in enumerate(range(0, len(examples), cfg.prompts_per_batch)):
      batch = make_batch(examples[start:start + cfg.prompts_per_batch], tokenizer,
                         template=exp.data.template, max_prompt_len=exp.data.max_prompt_len)
      rng = jax.random.fold_in(jax.random.key(cfg.seed), b)
      scored = sample_and_score(model_cfg, params, batch, rng, sampling, cfg.num_samples,
                                tokenizer, rewards)
      scored.fill_texts(tokenizer)   # on several processes, the others' prompts' samples too
      texts += scored.texts
      accuracy += scored.rewards.components["accuracy"].tolist()
  kept, stats = select(cfg, examples, texts, accuracy, exp.rewards.target_language)
  if is_chief():
    with open(os.path.join(workdir, TRACES), "w", encoding="utf-8") as f:
      f.writelines(json.dumps(row) + "\n" for row in kept)
    if cfg.write_failed:
      k = cfg.num_samples
      with open(os.path.join(workdir, FAILED), "w", encoding="utf-8") as f:
        f.writelines(json.dumps({**{n: examples[i // k][n] for n in FIELDS}, "completion": text})
                     + "\n" for i, (text, acc) in enumerate(zip(texts, accuracy)) if acc < 1.0)
  logging.info("rejection sampling kept %d of %d samples (%.1f%%)", stats["kept"], stats["total"],
               100 * stats["acceptance"])
  return stats
