"""The tokenizer files of an export, made to act as the trainer does under transformers' defaults.

The trainer feeds `[bos] + encode(template(question))` (`r1jax.data.pipeline.prompt_token_ids`).
:func:`finish_tokenizer_files` rewrites the tokenizer files already copied into an export so that

  * `tokenizer(text)` gives those ids: tokenizer.json's post-processor adds the trainer's `<bos>`
    (and nothing else), checked on a probe text before anything is written;
  * tokenizer_config.json names the trainer's bos / eos / pad tokens;
  * its `chat_template` (and chat_template.jinja, when the base model has one) is the run's prompt
    template, so `apply_chat_template([{"role": "user", "content": question}],
    add_generation_prompt=True)` rebuilds the trainer's prompt (one user turn; the template
    itself ends where the answer starts).

transformers 5 loads a `qwen2` model's tokenizer as its own Qwen2Tokenizer, which keeps the
post-processor but rebuilds the pre-tokenizer with Qwen's split rule: for a tokenizer trained with
another rule (the demo's) ids can then differ on unusual text; tests/test_policy.py checks R1
prompts through transformers.
"""

from __future__ import annotations

import json
import os

import tokenizers as hf

from r1jax.data.templates import apply_template
from r1jax.data.tokenizers import Tokenizer

TOKENIZER_JSON = "tokenizer.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
CHAT_TEMPLATE_FILE = "chat_template.jinja"   # newer transformers keep the template here
_PROBE = "A probe: 12 + 3 = 15. <think> x </think>"
_QUESTION = "\x00question\x00"   # stands for the question while the template is split around it


def _literal(text: str) -> str:
  """Template text as a Jinja string expression (no Jinja syntax in it can take effect)."""
  return "{{ " + json.dumps(text, ensure_ascii=False) + " }}"


def chat_template(template: str, with_bos: bool) -> str:
  """A Jinja chat template rendering one user message through prompt template `template`."""
  before, after = apply_template(template, _QUESTION).split(_QUESTION)
  return ("{% if messages | length != 1 or messages[0]['role'] != 'user' %}"
          "{{ raise_exception('this model was trained on single-turn prompts: pass exactly one "
          "user message') }}{% endif %}"
          + ("{{ bos_token }}" if with_bos else "")
          + _literal(before) + "{{ messages[0]['content'] }}" + _literal(after))


def _with_trainer_specials(tok: hf.Tokenizer, tokenizer: Tokenizer, where: str) -> hf.Tokenizer:
  """`tok` whose default encoding (add_special_tokens=True) is the trainer's prompt ids."""
  def trainer_ids(text):
    ids = tok.encode(text, add_special_tokens=False).ids
    return ids if tokenizer.bos_id is None else [tokenizer.bos_id] + ids
  if tok.encode(_PROBE).ids == trainer_ids(_PROBE):
    return tok
  if tokenizer.bos_id is None:
    tok.post_processor = None
  else:
    bos = tok.id_to_token(tokenizer.bos_id)
    tok.post_processor = hf.processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B:1", special_tokens=[(bos, tokenizer.bos_id)])
  if tok.encode(_PROBE).ids != trainer_ids(_PROBE):
    raise ValueError(f"{where}: cannot make the tokenizer's default encoding match the trainer's "
                     "prompt ids ([bos] + text)")
  return tok


def finish_tokenizer_files(out_dir: str, tokenizer: Tokenizer, template: str) -> None:
  """Rewrites `out_dir`'s tokenizer.json and tokenizer_config.json (copied from the base model)
  for the trainer's specials and prompt `template`; does nothing without a tokenizer.json."""
  path = os.path.join(out_dir, TOKENIZER_JSON)
  if not os.path.exists(path):
    return
  tok = _with_trainer_specials(hf.Tokenizer.from_file(path), tokenizer, path)
  config_path = os.path.join(out_dir, TOKENIZER_CONFIG)
  config = {}
  if os.path.exists(config_path):
    with open(config_path, encoding="utf-8") as f:
      config = json.load(f)
  text = lambda i: None if i is None else tok.id_to_token(i)
  chat = chat_template(template, tokenizer.bos_id is not None)
  config |= {"bos_token": text(tokenizer.bos_id), "eos_token": text(tokenizer.eos_id),
             "pad_token": text(tokenizer.pad_id), "chat_template": chat}
  # The generic fast tokenizer reads tokenizer.json as it is; a model-specific class may rebuild
  # the pre-tokenizer or the post-processor from its own defaults.
  config.setdefault("tokenizer_class", "PreTrainedTokenizerFast")
  # transformers rebuilds the post-processor from these flags when they are set: say the same.
  config |= {"add_bos_token": tokenizer.bos_id is not None, "add_eos_token": False}
  tok.save(path)
  with open(config_path, "w", encoding="utf-8") as f:
    json.dump(config, f, indent=2, ensure_ascii=False)
  if os.path.exists(os.path.join(out_dir, CHAT_TEMPLATE_FILE)):   # the base model's would win
    with open(os.path.join(out_dir, CHAT_TEMPLATE_FILE), "w", encoding="utf-8") as f:
      f.write(chat)
