"""The demo's tiny base model, made from generated text: corpus, tokenizer, pretraining, export.

The corpus is chained-sum problems from the train split only (eval and test problems are never
seen) under the R1-Zero template, each followed by one solution trace drawn from
:class:`~r1jax.sft.traces.TraceMix`, plus arithmetic drill documents (lists of correct two-number
sums, as a real pretraining corpus has), so the model can add even though most traces in the
corpus are sloppy. A byte-level BPE tokenizer is trained on it, a small decoder
is pretrained on it with the SFT trainer, and the result is written as a Hugging Face directory
(config.json, model.safetensors, tokenizer.json) that ships in the repository and loads with
:func:`r1jax.models.load_hf`.
"""

from __future__ import annotations

import dataclasses
import os
import random

import jax

from r1jax.config import check_range
from r1jax.data import templates
from r1jax.data.tasks import sums
from r1jax.data.pipeline import prompt_token_ids
from r1jax.data.tokenizer_export import finish_tokenizer_files
from r1jax.data.tasks.splits import split_of
from r1jax.data.tokenizers import load_tokenizer, train_bpe
from r1jax.models import ModelConfig, init
from r1jax.rl.config import OptimConfig
from r1jax.sft.traces import TraceMix, sample_trace
from r1jax.sft.train import SFTConfig, train_sft


@dataclasses.dataclass(frozen=True)
class CorpusConfig:
  num_problems: int = 20000
  max_difficulty: int = 3
  vocab_size: int = 512
  template: str = "r1_zero"
  drill_documents: int = 10_000   # lists of correct sums "a + b = c." (loss on every token)
  drill_facts: int = 16           # sums per drill document
  seed: int = 0
  mix: TraceMix = TraceMix()

  def validate(self):
    check_range("num_problems", self.num_problems, 1)
    check_range("max_difficulty", self.max_difficulty, 1, 5)
    check_range("vocab_size", self.vocab_size, 260)
    check_range("drill_documents", self.drill_documents, 0)
    check_range("drill_facts", self.drill_facts, 1)
    self.mix.validate()


def corpus(cfg: CorpusConfig) -> list[tuple[str, str]]:
  """(templated prompt, completion) pairs from train-split chained sums."""
  rng = random.Random(f"r1jax/base-corpus/{cfg.seed}")
  out = []
  while len(out) < cfg.num_problems:
    prompt, _ = sums.chain_sum(rng, rng.randint(1, cfg.max_difficulty))
    if split_of(prompt) != "train":
      continue
    _, completion = sample_trace(rng, sums.terms_of(prompt), cfg.mix)
    out.append((templates.apply_template(cfg.template, prompt), completion))
  return out


def drill(cfg: CorpusConfig) -> list[str]:
  """Drill documents: correct sums over the ranges that step-by-step solutions meet."""
  rng = random.Random(f"r1jax/base-drill/{cfg.seed}")
  high = sums.TERM_MAX * (cfg.max_difficulty + sums.EXTRA_TERMS - 1)
  return [" ".join(f"{a} + {b} = {a + b}." for a, b in
                   ((rng.randint(1, high), rng.randint(1, sums.TERM_MAX))
                    for _ in range(cfg.drill_facts))) for _ in range(cfg.drill_documents)]


def build(model_cfg: ModelConfig, corpus_cfg: CorpusConfig, sft_cfg: SFTConfig,
          optim_cfg: OptimConfig, workdir: str, out_dir: str) -> str:
  """Makes the corpus and tokenizer, pretrains, and exports to `out_dir`; returns out_dir."""
  from r1jax.models.hf import save_hf  # the exporter; imported late to keep start-up light
  texts = corpus(corpus_cfg)
  drills = drill(corpus_cfg)
  tokenizer_dir = os.path.join(workdir, "tokenizer")
  # A resumed run keeps the tokenizer its checkpoints were trained with.
  tokenizer = (load_tokenizer(tokenizer_dir) if os.path.exists(tokenizer_dir) else
               train_bpe([p + c for p, c in texts] + drills, corpus_cfg.vocab_size, tokenizer_dir))
  model_cfg = dataclasses.replace(model_cfg, vocab_size=tokenizer.vocab_size)
  # Prompts are tokenized exactly as the RL pipeline will feed them (BOS included).
  pairs = [(prompt_token_ids(p, tokenizer), tokenizer.encode(c) + [tokenizer.eos_id])
           for p, c in texts]
  # A drill document is all target: its "prompt" is just the BOS (if the tokenizer has one).
  pairs += [(prompt_token_ids("", tokenizer), tokenizer.encode(d) + [tokenizer.eos_id])
            for d in drills]
  params = init(model_cfg, jax.random.key(sft_cfg.seed))
  params = train_sft(model_cfg, sft_cfg, optim_cfg, pairs, workdir, init_params=params)
  # The export's defaults are the trainer's (see r1jax.data.tokenizer_export).
  save_hf(model_cfg, jax.device_get(params), out_dir, tokenizer_from=tokenizer_dir,
          bos_token_id=tokenizer.bos_id, eos_token_id=tokenizer.eos_id, pad_token_id=tokenizer.pad_id)
  finish_tokenizer_files(out_dir, tokenizer, corpus_cfg.template)
  return out_dir
