"""The base model's card: styles, per-class losses and the gate are computed from the model's own
samples and logits, and `make base-model`'s job writes the card through the real command line."""
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from r1jax import experiment
from r1jax.data.tokenizers import CharTokenizer
from r1jax.models import ModelConfig, forward, init
from r1jax.sft import model_card
from r1jax.data.pipeline import prompt_token_ids
from r1jax.data.templates import apply_template

STEPS = " <think> 3 + 8 + 1. 3 + 8 = 11, so 11 + 1. 11 + 1 = 12, so the sum is 12. </think> <answer> 12 </answer>"
REFLECTIVE = (" <think> 3 + 8. 3 + 8 = 12. let me verify: 3 + 8 = 11. wait, that is a mistake, "
              "so the sum is 11. </think> <answer> 11 </answer>")
DIRECT = " <think> I add them all at once. </think> <answer> 10 </answer>"


def _sample(completion, correct, difficulty):
  return {"completion": completion, "correct": correct, "difficulty": difficulty}


def test_style_table_counts_shares_and_accuracies_from_the_samples():
  samples = [_sample(STEPS, True, 1), _sample(STEPS, False, 2), _sample(REFLECTIVE, True, 2),
             _sample(DIRECT, False, 1), _sample(DIRECT, True, 1), _sample(DIRECT, False, 2)]
  table = model_card.style_table(samples)
  assert table["direct"]["samples"] == 3 and table["direct"]["share"] == pytest.approx(0.5)
  assert table["direct"]["accuracy"] == pytest.approx(1 / 3)
  assert table["steps"]["accuracy"] == pytest.approx(0.5)
  assert table["reflective"]["by_difficulty"]["2"] == {"samples": 1, "share": pytest.approx(1 / 3),
                                                      "accuracy": 1.0}
  assert table["reflective"]["by_difficulty"]["1"]["accuracy"] is None


def test_gate_checks_each_bound():
  def table(direct, steps, reflective):
    return {"direct": {"accuracy": direct}, "steps": {"accuracy": steps},
            "reflective": {"accuracy": reflective}}
  assert model_card.gate(table(0.1, 0.8, 0.9), 0.3)["passed"]
  for bad, pass1 in ((table(0.1, 0.6, 0.9), 0.3), (table(0.3, 0.8, 0.9), 0.3),
                     (table(0.1, 0.8, 0.9), 0.45), (table(0.1, 0.8, 0.8), 0.3)):
    result = model_card.gate(bad, pass1)
    assert not result["passed"] and sum(not ok for ok in result["checks"].values()) == 1


def test_char_classes_label_operands_results_copies_and_answer():
  text = "3 + 8 = 11, so 11 + 1. <answer> 12 </answer>"
  labels = dict(zip(range(len(text)), model_card.char_classes(text)))
  at = lambda s, nth=0: [i for i in range(len(text)) if text.startswith(s, i)][nth]
  assert labels[at("3")] == labels[at("8")] == "operand"
  assert labels[at("11")] == labels[at("11") + 1] == "result"
  assert labels[at("11", 1)] == "copied" and labels[at("1.") ] == "copied"
  assert labels[at("12")] == "answer" and labels[at("+")] == "other"


def test_token_class_losses_equal_a_direct_teacher_forced_nll():
  tok = CharTokenizer()
  cfg = ModelConfig(vocab_size=tok.vocab_size, dim=32, num_layers=1, num_heads=2, num_kv_heads=1,
                    head_dim=16, ffn_dim=64, max_seq_len=256)
  params = init(cfg, jax.random.key(0))
  pairs = [("Compute 3 + 8 + 1", STEPS), ("Compute 3 + 8", REFLECTIVE)]
  got = model_card.token_class_losses(cfg, params, tok, "r1_zero", pairs)
  expected: dict[str, list[float]] = {}
  for question, completion in pairs:   # one unpadded sequence at a time, no shared code path
    prompt = prompt_token_ids(apply_template("r1_zero", question), tok)
    ids = tok.encode(completion)
    logits, _, _ = forward(cfg, params, np.asarray([prompt + ids]))
    logp = np.asarray(jax.nn.log_softmax(logits[0].astype(np.float32), axis=-1))
    for j, label in enumerate(model_card.char_classes(completion)):   # char tokenizer: 1:1
      if completion[j].isspace():
        label = "other"
      expected.setdefault(label, []).append(-logp[len(prompt) + j - 1, ids[j]])
  assert set(got) == set(expected)
  for label, values in expected.items():
    assert got[label]["tokens"] == len(values)
    assert got[label]["nats"] == pytest.approx(float(np.mean(values)), rel=1e-4)


def test_base_model_job_writes_a_card_from_its_own_samples(tmp_path):
  workdir = tmp_path / "base"
  overrides = dict(
      **{"model.dim": 32, "model.num_layers": 1, "model.num_heads": 2, "model.num_kv_heads": 1,
         "model.head_dim": 16, "model.ffn_dim": 64, "corpus.num_problems": 60,
         "corpus.drill_documents": 10, "corpus.vocab_size": 300, "sft.steps": 2,
         "sft.batch_rows": 2, "sft.log_every": 1, "sft.save_every": 2, "optim.total_steps": 2,
         "optim.warmup_steps": 1, "eval.num_problems": 3, "eval.num_samples": 2,
         "eval.pass_at": "(1,)", "rollout.max_new_tokens": 24, "data.max_prompt_len": 256})
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="", TFDS_DATA_DIR=str(tmp_path / "tfds"))
  cmd = [sys.executable, "-m", "r1jax.main", "--config=experiments/base_pretrain.py",
         f"--workdir={workdir}", f"--config.data.data_dir={tmp_path / 'tfds'}"]
  cmd += [f"--config.{k}={v}" for k, v in overrides.items()]
  result = subprocess.run(cmd, capture_output=True, text=True, timeout=900,
                          cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
  assert result.returncode == 0, result.stderr[-3000:]
  card = json.loads((workdir / "export" / "card.json").read_text())
  assert sum(row["samples"] for row in card["styles"].values()) == 3 * 2
  assert [step for step, _ in card["pretraining_curve"]] == [1, 2]
  assert set(card["gate"]["checks"]) and isinstance(card["gate"]["passed"], bool)
  assert (workdir / "export" / "card.md").read_text().startswith("# Demo base model card")
  # The checker command reads the card and exits by its gate.
  check = subprocess.run([sys.executable, "-m", "r1jax.sft.model_card", str(workdir / "export")],
                         capture_output=True, text=True)
  assert check.returncode == (0 if card["gate"]["passed"] else 1) and "Gate:" in check.stdout
