"""SFT data: generated cold-start traces are correct and readable, trace files are validated, and
prompts are templated and tokenized as the RL pipeline feeds them."""
import json

import pytest

from r1jax.data.tokenizers import CharTokenizer
from r1jax.rewards import fmt, language
from r1jax.rewards import math as math_verifier
from r1jax.sft.data import cold_start_traces, read_traces, token_pairs
from r1jax.sft.train import SFTConfig
from r1jax.config import ConfigError


def _examples():
  return [{"prompt": f"Compute {a} + {b} + {c}", "gold": str(a + b + c), "source_id": f"x{i}"}
          for i, (a, b, c) in enumerate([(3, 4, 5), (17, 9, 20), (1, 1, 1), (12, 19, 8)])]


@pytest.mark.parametrize("style", ["steps", "reflective"])
def test_cold_start_traces_are_correct_formatted_and_english(style):
  rows = cold_start_traces(_examples(), style, seed=0)
  for example, row in zip(_examples(), rows):
    assert math_verifier.score(row["completion"], example["gold"]) == 1.0
    assert fmt.score(row["completion"]) == 1.0
    assert language.consistency(row["completion"], "en") == 1.0 or style == "steps"


def test_cold_start_rejects_other_tasks_with_a_clear_error():
  with pytest.raises(ValueError, match="chained sums only"):
    cold_start_traces([{"prompt": "What is 2 * 3?", "source_id": "m1"}], "steps", 0)


def test_trace_files_are_read_and_checked(tmp_path):
  good = tmp_path / "good.jsonl"
  good.write_text(json.dumps({"prompt": "Compute 1 + 2", "completion": " <answer> 3 </answer>"})
                  + "\n\n")
  assert read_traces(str(good)) == [{"prompt": "Compute 1 + 2", "completion": " <answer> 3 </answer>"}]
  bad = tmp_path / "bad.jsonl"
  bad.write_text(json.dumps({"prompt": "Compute 1 + 2"}) + "\n")
  with pytest.raises(ValueError, match="bad.jsonl:1"):
    read_traces(str(bad))


def test_token_pairs_template_bos_and_eos():
  tok = CharTokenizer()
  [(prompt, completion)] = token_pairs([{"prompt": "Compute 1 + 2", "completion": " 3"}], tok,
                                       "r1_zero")
  assert prompt[0] == tok.bos_id and tok.decode(prompt).endswith("User: Compute 1 + 2. Assistant:")
  assert completion == tok.encode(" 3") + [tok.eos_id]


def test_sft_config_validation_names_the_key():
  with pytest.raises(ConfigError, match="cold_start_style"):
    SFTConfig(cold_start_style="terse").validate()
  with pytest.raises(ConfigError, match="data"):
    SFTConfig(data=()).validate()
