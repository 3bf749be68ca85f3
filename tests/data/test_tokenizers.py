import json

import pytest
import tokenizers as hf

from r1jax.data.tokenizers import CharTokenizer, HFTokenizer, Tokenizer, load_tokenizer, train_bpe

TEXTS = ["Compute 12 + 345.", "Solve for x: 3x + 5 = 2x - 7.", "What is the next number?"] * 20


def test_char_tokenizer_round_trips_ascii_and_maps_the_rest_to_unk():
  tok = load_tokenizer("char")
  assert isinstance(tok, CharTokenizer) and isinstance(tok, Tokenizer)
  text = "def f(x):\n\treturn x * 2  # ok"
  assert tok.decode(tok.encode(text)) == text
  assert tok.encode("é") == [tok.unk_id]
  assert {tok.pad_id, tok.bos_id, tok.eos_id} == {0, 1, 2}
  assert max(tok.encode(text)) < tok.vocab_size


def test_train_bpe_splits_digits_and_writes_specials(tmp_path):
  tok = train_bpe(TEXTS, 300, str(tmp_path / "tok"))
  assert (tmp_path / "tok" / "tokenizer.json").exists()
  assert tok.decode(tok.encode("x = 2024 + 7")) == "x = 2024 + 7"
  digits = [tok.decode([i]) for i in tok.encode("2024")]
  assert digits == ["2", "0", "2", "4"]
  assert (tok.pad_id, tok.bos_id, tok.eos_ids) == (0, 1, (2,))
  reloaded = load_tokenizer(str(tmp_path / "tok" / "tokenizer.json"))
  assert reloaded.encode("Solve 3x") == tok.encode("Solve 3x")


def _qwen_style(folder, generation_eos):
  """A tiny word-level tokenizer with Qwen's special tokens and config files."""
  vocab = {"<|endoftext|>": 0, "<|im_start|>": 1, "<|im_end|>": 2, "hello": 3, "world": 4, "[UNK]": 5}
  tok = hf.Tokenizer(hf.models.WordLevel(vocab, unk_token="[UNK]"))
  tok.pre_tokenizer = hf.pre_tokenizers.Whitespace()
  tok.add_special_tokens(["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
  folder.mkdir()
  tok.save(str(folder / "tokenizer.json"))
  (folder / "tokenizer_config.json").write_text(json.dumps(
      {"eos_token": {"content": "<|im_end|>"}, "pad_token": "<|endoftext|>", "bos_token": None}))
  if generation_eos is not None:
    (folder / "generation_config.json").write_text(json.dumps({"eos_token_id": generation_eos}))


def test_hf_tokenizer_reads_qwen_style_special_tokens(tmp_path):
  _qwen_style(tmp_path / "qwen", [2, 0])
  tok = load_tokenizer(str(tmp_path / "qwen"))
  assert isinstance(tok, HFTokenizer)
  assert tok.eos_ids == (2, 0) and tok.eos_id == 2
  assert tok.pad_id == 0 and tok.bos_id is None
  assert tok.encode("hello world") == [3, 4]
  assert tok.decode([3, 2, 4]) == "hello world"  # specials are dropped when decoding
  assert tok.vocab_size == 6


def test_bare_tokenizer_json_falls_back_to_known_special_names(tmp_path):
  _qwen_style(tmp_path / "bare", None)
  (tmp_path / "bare" / "tokenizer_config.json").unlink()
  tok = HFTokenizer(str(tmp_path / "bare" / "tokenizer.json"))
  assert tok.eos_ids == (0,) and tok.pad_id == 0


def test_missing_tokenizer_file_is_a_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match="tokenizer.json"):
    load_tokenizer(str(tmp_path / "nowhere"))
