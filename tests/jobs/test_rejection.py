"""Rejection sampling keeps exactly the samples the verifier accepts (and, with the readability
filters on, only the readable ones), and its statistics count what was kept and why not."""
import pytest

from r1jax.config import ConfigError
from r1jax.jobs.rejection import RejectionConfig, repetition, select
from r1jax.rewards.compose import score_one
from r1jax.rewards.config import RewardConfig

EXAMPLES = [
    {"prompt": "Compute 3 + 4", "data_type": "math", "gold": "7", "difficulty": 1, "source_id": "a"},
    {"prompt": "Compute 10 + 5 + 2", "data_type": "math", "gold": "17", "difficulty": 2,
     "source_id": "b"},
]
COMPLETIONS = [
    " <think> 3 + 4 = 7. </think> <answer> 7 </answer>",            # right, readable
    " <think> 3 + 4 = 8. </think> <answer> 8 </answer>",            # wrong
    " 3 + 4 is 7 <answer> 7 </answer>",                              # right, no <think>: format
    " <think> 3 + 4 = 7. </think> <answer> 7 </answer>",            # right, duplicate of the 1st
    " <think> 10 + 5 = 15. 15 + 2 = 17. </think> <answer> 17 </answer>",        # right
    " <think> 10 加上 5 等于 15 然后 加上 2 得到 17 </think> <answer> 17 </answer>",  # right, zh CoT
    " <think> " + "ten plus five " * 20 + "</think> <answer> 17 </answer>",     # right, a loop
    " <think> 10 + 5 = 15. 15 + 2 = 16. </think> <answer> 16 </answer>",        # wrong
]


def _accuracy():
  config = RewardConfig(num_workers=0)
  examples = [e for e in EXAMPLES for _ in range(4)]
  return [score_one(config, c, e)["accuracy"] for c, e in zip(COMPLETIONS, examples)]


def test_without_filters_keeps_exactly_the_verified_samples():
  accuracy = _accuracy()
  assert accuracy == [1, 0, 1, 1, 1, 1, 1, 0]
  cfg = RejectionConfig(require_format=False)
  kept, stats = select(cfg, EXAMPLES, COMPLETIONS, accuracy, "en")
  verified = [c for c, a in zip(COMPLETIONS, accuracy) if a == 1.0]
  # The duplicate answer of prompt "a" is the only verified sample dropped.
  assert [r["completion"] for r in kept] == [verified[0], *verified[1:2], *verified[3:]]
  assert [r["source_id"] for r in kept] == ["a", "a", "b", "b", "b"]
  assert all(r["gold"] == {"a": "7", "b": "17"}[r["source_id"]] for r in kept)
  assert stats["kept"] == 5 and stats["total"] == 8 and stats["acceptance"] == 5 / 8
  assert stats["rejected"]["unverified"] == 2 and stats["rejected"]["duplicate"] == 1
  assert stats["by_difficulty"] == {"1": {"kept": 2, "total": 4, "acceptance": 0.5},
                                    "2": {"kept": 3, "total": 4, "acceptance": 0.75}}


def test_readability_filters_drop_format_language_and_repetition():
  cfg = RejectionConfig(require_format=True, min_language=0.9, max_repetition=0.3,
                        max_per_prompt=1)
  kept, stats = select(cfg, EXAMPLES, COMPLETIONS, _accuracy(), "en")
  assert [r["completion"] for r in kept] == [COMPLETIONS[0], COMPLETIONS[4]]
  assert {k: v for k, v in stats["rejected"].items() if v} == {
      "unverified": 2, "format": 1, "duplicate": 1, "language": 1, "repetition": 1}
  assert stats["prompts_with_a_kept_sample"] == 2


def test_language_filter_passes_a_cot_without_words():
  cfg = RejectionConfig(require_format=True, min_language=1.0)
  kept, _ = select(cfg, EXAMPLES[:1], [COMPLETIONS[0]], [1.0], "en")
  assert len(kept) == 1


def test_repetition_measure_and_mismatched_inputs():
  assert repetition("a b a b a b a b a b a b a b a b") == pytest.approx(0.5, abs=0.05)
  assert repetition("the quick brown fox jumps over the lazy dog and runs far away") == pytest.approx(1 / 10)  # all distinct
  with pytest.raises(ValueError, match="same k"):
    select(RejectionConfig(), EXAMPLES, COMPLETIONS[:7], [1.0] * 7, "en")
  with pytest.raises(ConfigError, match="max_repetition"):
    RejectionConfig(max_repetition=0.0).validate()
