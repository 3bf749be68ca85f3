"""Composing the verifiers into one reward per completion, by data type and config weights.

``score_one`` never raises: a verifier that raises gives 0 with status ``crashed``, one that runs
out of time gives 0 with status ``timeout``, and both are reported so the service can count them.
Status ``backstop`` means a verifier's wall-clock backstop ended it (a busy host, not a verdict);
the service retries such an item once. ``score_batch`` is the same over a batch, without retries,
packed as the arrays the trainer consumes.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence

import numpy as np

from r1jax.rewards import choice, code, extract, fmt, language
from r1jax.rewards import math as math_verifier
from r1jax.rewards.config import DATA_TYPES, RewardConfig

COMPONENTS = ("accuracy", "format", "language")
TIMEOUT_STATUSES = ("timeout", "backstop")
_NUMBER = re.compile(r"^[-+]?[\d,]*\.?\d+(?:[eE][-+]?\d+)?$")


@dataclasses.dataclass(frozen=True)
class RewardBatch:
  reward: np.ndarray                 # [N] float32
  components: dict[str, np.ndarray]  # name -> [N] float32
  timed_out: np.ndarray              # [N] bool
  crashed: np.ndarray                # [N] bool
  retried: np.ndarray                # [N] bool: hit a wall-clock backstop once and was run again

  @classmethod
  def from_results(cls, results: Sequence[Mapping]) -> "RewardBatch":
    return cls(
        reward=np.array([r["reward"] for r in results], np.float32),
        components={c: np.array([r[c] for r in results], np.float32) for c in COMPONENTS},
        timed_out=np.array([r["status"] in TIMEOUT_STATUSES for r in results], bool),
        crashed=np.array([r["status"] == "crashed" for r in results], bool),
        retried=np.array([r["retried"] for r in results], bool))


def score_one(config: RewardConfig, completion: str, example: Mapping) -> dict:
  """{"reward", "accuracy", "format", "language", "status", "verifier_status", "retried"} for one
  completion (``retried`` is always False here: retrying is the service's business)."""
  try:
    accuracy, status = _accuracy(config, completion, example)
    verifier_status = status
    if status not in TIMEOUT_STATUSES:
      status = "ok"
  except Exception as e:  # noqa: BLE001 - a broken verifier must not stop training
    accuracy, status, verifier_status = 0.0, "crashed", f"{type(e).__name__}: {e}"[:200]
  fmt_value = _guarded(fmt.score, completion)
  lang_value = (_guarded(language.consistency, completion, config.target_language)
                if config.language_weight else 0.0)
  weight = config.weight(example["data_type"]) if example.get("data_type") in DATA_TYPES else 0.0
  total = weight * accuracy + config.format_weight * fmt_value + config.language_weight * lang_value
  return {"reward": total, "accuracy": accuracy, "format": fmt_value, "language": lang_value,
          "status": status, "verifier_status": verifier_status, "retried": False}


def score_batch(config: RewardConfig, completions: Sequence[str],
                examples: Sequence[Mapping]) -> RewardBatch:
  if len(completions) != len(examples):
    raise ValueError(f"{len(completions)} completions but {len(examples)} examples")
  return RewardBatch.from_results([score_one(config, c, e) for c, e in zip(completions, examples)])


def failed_result(status: str) -> dict:
  """The result recorded for an item the service gave up on (``timeout`` or ``crashed``)."""
  return {"reward": 0.0, **{c: 0.0 for c in COMPONENTS}, "status": status,
          "verifier_status": status, "retried": False}


def _accuracy(config: RewardConfig, completion: str, example: Mapping) -> tuple[float, str]:
  data_type, gold = example["data_type"], example["gold"]
  if data_type == "math":
    return math_verifier.judge(completion, gold, time_limit_s=config.math_time_limit_s)
  if data_type == "code":
    return code.judge(completion, gold, mode=config.code_mode,
                      time_limit_s=config.code_time_limit_s,
                      memory_limit_mb=config.code_memory_limit_mb,
                      wall_limit_s=config.code_wall_limit_s)
  if data_type == "stem":
    return choice.score(completion, gold), "ok"
  if data_type == "logic":
    return _logic(config, completion, gold)
  raise ValueError(f"unknown data_type {data_type!r}; expected one of {DATA_TYPES}")


def _logic(config: RewardConfig, completion: str, gold: str) -> tuple[float, str]:
  """Logic golds are an option letter, a number, or a string (compared case- and space-blind)."""
  gold = gold.strip()
  if len(gold.strip("()")) == 1 and gold.strip("()").upper() in choice.OPTIONS:
    return choice.score(completion, gold), "ok"
  if _NUMBER.match(gold):
    return math_verifier.judge(completion, gold, time_limit_s=config.math_time_limit_s)
  answer = extract.final_answer(completion)
  if answer is None:
    return 0.0, "no_answer"
  return float(_canonical(answer) == _canonical(gold)), "ok"


def _canonical(text: str) -> str:
  text = re.sub(r"\\text\{([^{}]*)\}", r"\1", text)
  return " ".join(re.sub(r"[^\w\s]", " ", text.casefold()).split())


def _guarded(fn, *args) -> float:
  try:
    return float(fn(*args))
  except Exception:  # noqa: BLE001 - side rewards fail closed
    return 0.0
