"""Tokenizers behind one small protocol: :class:`HFTokenizer` wraps a Hugging Face ``tokenizer.json``
(special tokens read from ``tokenizer_config.json`` / ``generation_config.json`` when present, as
Qwen ships them), :class:`CharTokenizer` needs no files (printable ASCII plus specials), and
:func:`train_bpe` makes a small byte-level BPE with single-digit tokens for the base-model script.
``encode`` never adds special tokens; the pipeline adds BOS itself where the tokenizer has one.
"""

from __future__ import annotations

import json
import os
import string
from collections.abc import Iterable
from typing import Protocol, runtime_checkable

import tokenizers as hf


@runtime_checkable
class Tokenizer(Protocol):
  vocab_size: int
  pad_id: int
  bos_id: int | None
  eos_ids: tuple[int, ...]

  @property
  def eos_id(self) -> int: ...

  def encode(self, text: str) -> list[int]: ...

  def decode(self, ids: Iterable[int]) -> str: ...


class CharTokenizer:
  """One id per printable ASCII character (plus tab and newline); anything else maps to <unk>."""

  SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
  ALPHABET = string.printable[:-2]  # drop \r and \x0b\x0c: keep letters, digits, punct, space, \t\n

  def __init__(self):
    self.pad_id, self.bos_id, self.unk_id = 0, 1, 3
    self.eos_ids = (2,)
    self._ids = {c: i + len(self.SPECIALS) for i, c in enumerate(self.ALPHABET)}
    self.vocab_size = len(self.SPECIALS) + len(self.ALPHABET)

  @property
  def eos_id(self) -> int:
    return self.eos_ids[0]

  def encode(self, text: str) -> list[int]:
    return [self._ids.get(c, self.unk_id) for c in text]

  def decode(self, ids: Iterable[int]) -> str:
    first = len(self.SPECIALS)
    return "".join(self.ALPHABET[i - first] for i in ids if first <= int(i) < self.vocab_size)


# Token strings tried, in order, when no tokenizer_config.json names the specials.
_FALLBACK = {
    "eos": ("<|endoftext|>", "<|im_end|>", "</s>", "<eos>", "<|end_of_text|>"),
    "pad": ("<pad>", "<|endoftext|>", "<|pad|>", "[PAD]"),
    "bos": ("<bos>", "<s>", "<|begin_of_text|>"),
}


def _read_json(path: str) -> dict:
  if not os.path.exists(path):
    return {}
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def _token_text(value) -> str | None:
  """tokenizer_config.json writes specials either as strings or as {"content": ...} dicts."""
  if isinstance(value, dict):
    return value.get("content")
  return value


class HFTokenizer:
  """A Hugging Face fast tokenizer read from ``tokenizer.json`` and its sibling config files."""

  def __init__(self, path: str):
    file = os.path.join(path, "tokenizer.json") if os.path.isdir(path) else path
    if not os.path.isfile(file):
      raise FileNotFoundError(f"no tokenizer file at {file}: expected a tokenizer.json (Hugging Face "
                              "'tokenizers' format) or a directory holding one")
    folder = os.path.dirname(os.path.abspath(file))
    self._tok = hf.Tokenizer.from_file(file)
    self.vocab_size = self._tok.get_vocab_size(with_added_tokens=True)
    config = _read_json(os.path.join(folder, "tokenizer_config.json"))
    generation = _read_json(os.path.join(folder, "generation_config.json"))

    eos = self._id_of(_token_text(config.get("eos_token")), "eos")
    extra = generation.get("eos_token_id")
    extra = [extra] if isinstance(extra, int) else list(extra or [])
    self.eos_ids = tuple(dict.fromkeys(([eos] if eos is not None else []) + extra))
    if not self.eos_ids:
      raise ValueError(f"{file}: found no end-of-sequence token; name one as 'eos_token' in "
                       f"tokenizer_config.json next to it (tried {', '.join(_FALLBACK['eos'])})")
    self.bos_id = self._id_of(_token_text(config.get("bos_token")), "bos",
                              fallback="bos_token" not in config)
    if self.bos_id is None and isinstance(generation.get("bos_token_id"), int):
      self.bos_id = generation["bos_token_id"]
    pad = self._id_of(_token_text(config.get("pad_token")), "pad")
    # Padding is masked everywhere, so any id works; EOS is the usual stand-in.
    self.pad_id = pad if pad is not None else self.eos_ids[0]

  def _id_of(self, token: str | None, role: str, fallback: bool = True) -> int | None:
    if token is not None:
      token_id = self._tok.token_to_id(token)
      if token_id is None:
        raise ValueError(f"special token {token!r} ({role}) is not in the tokenizer's vocabulary")
      return token_id
    if fallback:
      for candidate in _FALLBACK[role]:
        token_id = self._tok.token_to_id(candidate)
        if token_id is not None:
          return token_id
    return None

  @property
  def eos_id(self) -> int:
    return self.eos_ids[0]

  def encode(self, text: str) -> list[int]:
    return self._tok.encode(text, add_special_tokens=False).ids

  def decode(self, ids: Iterable[int]) -> str:
    return self._tok.decode([int(i) for i in ids], skip_special_tokens=True)


def load_tokenizer(spec: str) -> Tokenizer:
  """``"char"`` for :class:`CharTokenizer`, else a tokenizer.json path or a directory holding one."""
  if spec == "char":
    return CharTokenizer()
  return HFTokenizer(spec)


BPE_SPECIALS = ("<pad>", "<bos>", "<eos>")


def train_bpe(texts: Iterable[str], vocab_size: int, path: str) -> HFTokenizer:
  """Trains a byte-level BPE (digits split one per token) and writes it into directory ``path``."""
  tok = hf.Tokenizer(hf.models.BPE())
  tok.pre_tokenizer = hf.pre_tokenizers.Sequence([
      hf.pre_tokenizers.Digits(individual_digits=True),
      hf.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
  ])
  tok.decoder = hf.decoders.ByteLevel()
  trainer = hf.trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(BPE_SPECIALS),
                                   initial_alphabet=hf.pre_tokenizers.ByteLevel.alphabet(),
                                   show_progress=False)
  tok.train_from_iterator(texts, trainer=trainer)
  os.makedirs(path, exist_ok=True)
  tok.save(os.path.join(path, "tokenizer.json"))
  pad, bos, eos = BPE_SPECIALS
  with open(os.path.join(path, "tokenizer_config.json"), "w", encoding="utf-8") as f:
    json.dump({"pad_token": pad, "bos_token": bos, "eos_token": eos}, f, indent=2)
  return HFTokenizer(path)
