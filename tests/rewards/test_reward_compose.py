"""Composition by data type and config weights; config validation."""
import dataclasses

import numpy as np
import pytest

from r1jax import config as rconfig
from r1jax.rewards import compose
from r1jax.rewards.config import RewardConfig

FMT_OK = "<think>{}</think><answer>{}</answer>"


def example(data_type, gold):
  return {"prompt": "q", "data_type": data_type, "gold": gold, "difficulty": 1, "source_id": "s"}


@pytest.mark.parametrize("data_type,gold,answer,accuracy", [
    ("math", "\\frac{1}{2}", "0.5", 1.0), ("math", "\\frac{1}{2}", "0.25", 0.0),
    ("stem", "B", "(B)", 1.0), ("stem", "B", "(A) or (B)", 0.0),
    ("logic", "C", "The answer is C", 1.0), ("logic", "42", "42.0", 1.0),
    ("logic", "Knight, Knave", "\\text{knight,  knave}", 1.0), ("logic", "Knight", "knave", 0.0),
    ("code", "assert f() == 1", "```python\ndef f():\n    return 1\n```", 1.0),
])
def test_accuracy_by_data_type(data_type, gold, answer, accuracy, scaled):
  cfg = RewardConfig(format_weight=0.25, code_time_limit_s=1.0, code_wall_limit_s=scaled(10))
  result = compose.score_one(cfg, FMT_OK.format("work", answer), example(data_type, gold))
  assert result["accuracy"] == accuracy and result["format"] == 1.0
  assert result["reward"] == pytest.approx(accuracy + 0.25)


def test_weights_and_language_component():
  cfg = RewardConfig(math_weight=2.0, format_weight=0.0, language_weight=0.5, target_language="zh")
  result = compose.score_one(cfg, FMT_OK.format("计算 half", "0.5"), example("math", "1/2"))
  assert result["language"] == pytest.approx(2 / 3)
  assert result["reward"] == pytest.approx(2.0 + 0.5 * 2 / 3)


def test_verifier_failures_score_zero_and_are_reported(monkeypatch):
  cfg = RewardConfig()
  crashed = compose.score_one(cfg, FMT_OK.format("x", "B"), example("stem", "not a letter"))
  assert crashed["status"] == "crashed" and crashed["accuracy"] == 0.0
  unknown = compose.score_one(cfg, FMT_OK.format("x", "1"), example("poetry", "1"))
  assert unknown["status"] == "crashed" and unknown["reward"] == pytest.approx(cfg.format_weight)
  monkeypatch.setattr(compose.math_verifier, "judge", lambda *a, **k: (0.0, "timeout"))
  timed_out = compose.score_one(cfg, FMT_OK.format("x", "1"), example("math", "1"))
  assert timed_out["status"] == "timeout"
  batch = compose.RewardBatch.from_results([crashed, timed_out])
  assert batch.crashed.tolist() == [True, False] and batch.timed_out.tolist() == [False, True]


def test_score_batch_packs_arrays_in_order():
  cfg = RewardConfig(format_weight=0.0)
  batch = compose.score_batch(cfg, [FMT_OK.format("", "1"), FMT_OK.format("", "2")],
                              [example("math", "2"), example("math", "2")])
  assert batch.reward.dtype == np.float32 and batch.reward.tolist() == [0.0, 1.0]
  assert set(batch.components) == set(compose.COMPONENTS)
  with pytest.raises(ValueError, match="2 completions but 1 examples"):
    compose.score_batch(cfg, ["a", "b"], [example("math", "1")])


@pytest.mark.parametrize("overrides,key", [
    ({"code_mode": "most"}, "code_mode"), ({"target_language": "xx"}, "target_language"),
    ({"format_weight": -0.1}, "format_weight"), ({"num_workers": -1}, "num_workers"),
    ({"item_deadline_s": 1.0}, "item_deadline_s"), ({"queue_bound": 0}, "queue_bound"),
    ({"code_wall_limit_s": 1.0}, "code_wall_limit_s"),
])
def test_config_validation_names_the_key(overrides, key):
  with pytest.raises(rconfig.ConfigError) as err:
    rconfig.from_dict(RewardConfig, overrides, "rewards")
  assert err.value.key == f"rewards.{key}"


def test_config_defaults_are_valid_and_frozen():
  cfg = rconfig.from_dict(RewardConfig, {"math_weight": 2})
  assert cfg.math_weight == 2.0 and cfg.format_weight < cfg.math_weight
  with pytest.raises(dataclasses.FrozenInstanceError):
    cfg.math_weight = 3.0
