"""An export's tokenizer files: the default encoding is the trainer's prompt ids, with or without a
<bos> (the demo tokenizer's case, with transformers itself, is in tests/test_policy.py)."""
import json

import pytest
import tokenizers

from r1jax.data.pipeline import prompt_token_ids
from r1jax.data.tokenizer_export import chat_template, finish_tokenizer_files
from r1jax.data.tokenizers import load_tokenizer

VOCAB = {"<s>": 0, "</s>": 1, "<pad>": 2, "a": 3, "b": 4, "?": 5}


def _tokenizer_dir(path, post_processor, config):
  tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(VOCAB, unk_token="?"))
  tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
  tok.add_special_tokens(["<s>", "</s>", "<pad>"])
  tok.post_processor = post_processor
  path.mkdir()
  tok.save(str(path / "tokenizer.json"))
  (path / "tokenizer_config.json").write_text(json.dumps(config))
  return path


@pytest.mark.parametrize("bos_token,adds", [(None, True), ("<s>", False)],
                         ids=["no-bos-but-the-file-adds-one", "bos-the-file-does-not-add"])
def test_default_encoding_becomes_the_trainers(tmp_path, bos_token, adds):
  adding = tokenizers.processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
  src = _tokenizer_dir(tmp_path / "src", adding if adds else None,
                       {"bos_token": bos_token, "eos_token": "</s>", "pad_token": "<pad>"})
  (src / "chat_template.jinja").write_text("{{ 'the base model's own template' }}")
  trainer = load_tokenizer(str(src))
  text = "a b a"
  assert tokenizers.Tokenizer.from_file(str(src / "tokenizer.json")).encode(text).ids != \
      prompt_token_ids(text, trainer)
  finish_tokenizer_files(str(src), trainer, "r1_zero")
  assert tokenizers.Tokenizer.from_file(str(src / "tokenizer.json")).encode(text).ids == \
      prompt_token_ids(text, trainer) == ([0] if bos_token else []) + [3, 4, 3]
  config = json.loads((src / "tokenizer_config.json").read_text())
  assert (config["bos_token"], config["eos_token"], config["pad_token"]) == (bos_token, "</s>", "<pad>")
  assert (config["add_bos_token"], config["add_eos_token"]) == (bos_token is not None, False)
  assert config["chat_template"] == chat_template("r1_zero", with_bos=bos_token is not None)
  assert (src / "chat_template.jinja").read_text() == config["chat_template"]


def test_chat_template_holds_the_prompt_template_around_the_question():
  text = chat_template("chat", with_bos=False)
  assert "bos_token" not in text and "{{ messages[0]['content'] }}" in text
  assert json.dumps("<|im_start|>system\n", ensure_ascii=False)[:-1] in text  # escaped literal
  assert "{{ bos_token }}" in chat_template("r1_zero", with_bos=True)
