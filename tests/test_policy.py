"""Where a policy comes from and what its export gives a downstream user.

The export test checks r1jax's export of the shipped demo model against what transformers made of
the same export with default arguments only (AutoTokenizer + AutoModelForCausalLM, recorded in
tests/fixtures/transformers_export.json by scripts/make_hf_goldens.py, as torch is not in this
venv): `tokenizer(prompt)` and `apply_chat_template` gave the trainer's prompt ids, and greedy
`generate` stopped at `<eos>` with r1jax's greedy tokens.
"""
import dataclasses
import json
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tokenizers

from r1jax.data.pipeline import prompt_token_ids
from r1jax.data.templates import apply_template
from r1jax.models import ModelConfig, load_hf
from r1jax.policy import export_policy, load_policy
from r1jax.rollout import sample

GOLDEN = pathlib.Path(__file__).parent / "fixtures" / "transformers_export.json"
V3_WITHOUT_MTP = str(pathlib.Path(__file__).parent / "models" / "fixtures" / "deepseek_v3_yarn")
REGENERATE = ("regenerate the golden with scripts/make_hf_goldens.py --only export if the demo "
              "model or the export format changed on purpose")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  golden = json.loads(GOLDEN.read_text())
  cfg, params, tokenizer = load_policy(golden["base_model"], ModelConfig(), "", 0)
  out = pathlib.Path(export_policy(cfg, params, golden["base_model"],
                                   str(tmp_path_factory.mktemp("run") / "export"),
                                   template=golden["template"]))
  return golden, cfg, tokenizer, out


def test_export_tokenizer_gives_the_trainers_prompt_ids(exported):
  golden, _, tokenizer, out = exported
  config = json.loads((out / "tokenizer_config.json").read_text())
  assert config["chat_template"] == golden["chat_template"], REGENERATE
  assert (config["bos_token"], config["eos_token"], config["pad_token"]) == ("<bos>", "<eos>", "<pad>")
  backend = tokenizers.Tokenizer.from_file(str(out / "tokenizer.json"))  # what transformers runs
  for row in golden["rows"]:
    text = apply_template(golden["template"], row["question"])
    trainer = prompt_token_ids(text, tokenizer)
    assert trainer[0] == tokenizer.bos_id
    assert backend.encode(text).ids == trainer          # tokenizers' defaults add the <bos>
    assert row["input_ids"] == trainer, REGENERATE       # transformers' tokenizer(text)
    assert row["chat_ids"] == trainer, REGENERATE        # and its apply_chat_template


def test_export_configs_carry_the_special_ids(exported):
  _, cfg, tokenizer, out = exported
  ids = {"bos_token_id": tokenizer.bos_id, "eos_token_id": tokenizer.eos_id,
         "pad_token_id": tokenizer.pad_id}
  assert json.loads((out / "generation_config.json").read_text()) == ids | {
      "max_length": cfg.max_seq_len}
  config = json.loads((out / "config.json").read_text())
  assert {k: config[k] for k in ids} == ids


def test_greedy_generation_of_the_export_equals_transformers(exported):
  golden, _, tokenizer, out = exported
  cfg, params = load_hf(out)
  prompts = [row["input_ids"] for row in golden["rows"]]
  width = max(map(len, prompts))
  tokens = np.full((len(prompts), width), tokenizer.pad_id, np.int32)
  for i, p in enumerate(prompts):
    tokens[i, width - len(p):] = p                       # left-padded, as the sampler takes them
  wanted = [row["generated"] for row in golden["rows"]]
  assert all(w[-1] == tokenizer.eos_id for w in wanted)   # transformers stopped at <eos>
  run = sample(cfg, params, jnp.asarray(tokens), jnp.asarray(tokens != tokenizer.pad_id),
               jax.random.key(0), num_samples=1, max_new_tokens=max(map(len, wanted)) + 8,
               temperature=0.0, eos_ids=(tokenizer.eos_id,), pad_id=tokenizer.pad_id)
  ours = [np.asarray(run.tokens)[i, :int(run.lengths[i])].tolist() for i in range(len(prompts))]
  assert ours == wanted, REGENERATE


def test_an_mtp_loss_needs_a_checkpoint_with_mtp_tensors(tmp_path):
  vocab = {"<pad>": 0, "<bos>": 1, "<eos>": 2, "a": 3}   # the fixture's vocabulary is 96 ids
  tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="a")).save(
      str(tmp_path / "tokenizer.json"))
  spec = str(tmp_path / "tokenizer.json")
  asks = ModelConfig(mtp_layers=1, mtp_loss_weight=0.1)
  with pytest.raises(ValueError, match=r"model\.mtp_loss_weight=0\.1 .*holds 0 .*"
                                       r"--config\.model\.mtp_loss_weight=0"):
    load_policy(V3_WITHOUT_MTP, asks, spec, 0, mtp_loss=True)
  # Without the loss (RL, evaluation), or with its weight at 0, the trunk loads with MTP off.
  for model, mtp_loss in ((asks, False), (dataclasses.replace(asks, mtp_loss_weight=0.0), True)):
    cfg, params, _ = load_policy(V3_WITHOUT_MTP, model, spec, 0, mtp_loss=mtp_loss)
    assert cfg.mtp_layers == 0 and "mtp" not in params
    assert cfg.mtp_loss_weight == model.mtp_loss_weight   # the experiment's weight is kept


def test_sft_from_a_checkpoint_without_mtp_asks_for_one_through_the_command_line(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")
  env.pop("R1JAX_VERBOSE", None)
  proc = subprocess.run(
      [sys.executable, "-m", "r1jax.main", "--config=experiments/r1_zero.py:smoke",
       f"--workdir={tmp_path}", "--config.job=sft", f"--config.base_model={V3_WITHOUT_MTP}",
       "--config.model.mtp_layers=1", "--config.model.mtp_loss_weight=0.1"],
      cwd=pathlib.Path(__file__).parents[1], env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode != 0 and "Traceback" not in proc.stderr
  assert "error: model.mtp_loss_weight=0.1 with model.mtp_layers=1 trains MTP modules" in proc.stderr
