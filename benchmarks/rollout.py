"""Rollout throughput on CPU: `r1jax.rollout.sample` against Hugging Face `generate()`.

For each model shape (a tiny one and a ~100M Qwen2-shaped one) it samples 8 prompts x 16 samples
x 128 new tokens (no EOS, so every row generates the full budget) with our sampler and with
transformers `generate()` on the same weights (exported by `save_hf`), in the same process, and
prints generated tokens/s, their ratio, and each one's model FLOP/s as a fraction of a large
matmul's FLOP/s measured in the same run (the physical limit of this CPU). It then compares our
sampler with prefix sharing on and off for 512-token prompts. Each side is timed `--repeats` times
after a warm-up and reported as median (range); the run refuses a busy machine (benchmarks/machine.py).

Set-up and run from the repository root (torch and transformers stay out of the main venv):
  make bench-venv
  .venv-bench/bin/python -m benchmarks.rollout [--shapes tiny,100m] [--repeats 3]
"""

from __future__ import annotations

import argparse
import tempfile

import jax
import numpy as np

from benchmarks import machine
from benchmarks.machine import timings
from r1jax.models import ModelConfig, init, logits, save_hf
from r1jax.models.presets import PRESETS
from r1jax.rollout import sample

SHAPES = {
    "tiny": ModelConfig(vocab_size=512, dim=128, num_layers=4, num_heads=4, num_kv_heads=2,
                        head_dim=32, ffn_dim=384, qkv_bias=True),
    "100m": ModelConfig(**PRESETS["qwen2-100m"]),
}
PROMPTS, SAMPLES, NEW_TOKENS = 8, 16, 128

INSTALL_HINT = ("torch/transformers are not installed in this interpreter. They live in a separate "
                "venv: run `make bench-venv`, then .venv-bench/bin/python -m benchmarks.rollout "
                "(or pass --skip-hf).")


def model_flops(cfg: ModelConfig, prompt_len: int) -> float:
  """Useful forward FLOPs of one rollout: each prompt prefilled once, then every decode step.

  Matmul FLOPs are 2 per weight (lm head included, embedding lookup not); attention adds
  4 * layers * heads * head_dim per visible position. Identical for both samplers.
  """
  attn_q = cfg.num_heads * cfg.head_dim
  per_layer = (cfg.dim * attn_q * 2 + cfg.dim * cfg.num_kv_heads * cfg.head_dim * 2
               + 3 * cfg.dim * cfg.ffn_dim)
  matmul = 2 * (cfg.num_layers * per_layer + cfg.dim * cfg.vocab_size)
  attention = lambda context: 4 * cfg.num_layers * attn_q * context
  prefill = PROMPTS * sum(matmul + attention(i + 1) for i in range(prompt_len))
  decode = PROMPTS * SAMPLES * sum(matmul + attention(prompt_len + t + 1)
                                   for t in range(NEW_TOKENS - 1))
  return prefill + decode


def make_prompts(cfg: ModelConfig, prompt_len: int):
  rng = np.random.default_rng(1)
  tokens = rng.integers(1, cfg.vocab_size, (PROMPTS, prompt_len), dtype=np.int32)
  return tokens, np.ones_like(tokens, bool)


def ours(cfg, params, prompt_len: int, repeats: int, share_prefix: bool = True) -> machine.Timing:
  tokens, mask = make_prompts(cfg, prompt_len)
  calls = iter(range(10**6))
  def run():
    out = sample(cfg, params, tokens, mask, jax.random.key(next(calls)), num_samples=SAMPLES,
                 max_new_tokens=NEW_TOKENS, share_prefix=share_prefix)
    assert int(np.asarray(out.lengths).min()) == NEW_TOKENS
  return timings(run, repeats)


def hf(torch, cfg, params, prompt_len: int, repeats: int) -> tuple[machine.Timing, float]:
  """(generate() timings, max |logit difference| against r1jax on one prompt)."""
  import transformers
  tokens, mask = make_prompts(cfg, prompt_len)
  with tempfile.TemporaryDirectory() as path:
    save_hf(cfg, params, path)
    model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
  ids, attn = torch.from_numpy(tokens.astype(np.int64)), torch.from_numpy(mask.astype(np.int64))
  with torch.inference_mode():
    theirs = model(ids[:1]).logits.numpy()
  diff = float(np.abs(theirs - np.asarray(logits(cfg, params, tokens[:1]))).max())
  def run():
    with torch.inference_mode():
      out = model.generate(ids, attention_mask=attn, do_sample=True, temperature=1.0, top_k=0,
                           top_p=1.0, num_return_sequences=SAMPLES, max_new_tokens=NEW_TOKENS,
                           min_new_tokens=NEW_TOKENS, eos_token_id=None, pad_token_id=0)
    assert out.shape == (PROMPTS * SAMPLES, prompt_len + NEW_TOKENS)
  return timings(run, repeats), diff


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--shapes", default="tiny,100m", help="comma-separated: " + ",".join(SHAPES))
  parser.add_argument("--prompt-len", type=int, default=64)
  parser.add_argument("--long-prompt-len", type=int, default=512,
                      help="prompt length of the prefix-sharing comparison (0 = skip it)")
  parser.add_argument("--skip-hf", action="store_true", help="only our sampler")
  machine.add_flags(parser, repeats=3)
  args = parser.parse_args()
  torch = None
  if not args.skip_hf:
    try:
      import torch
    except ImportError:
      raise SystemExit(INSTALL_HINT) from None
  generated = PROMPTS * SAMPLES * NEW_TOKENS
  print(f"{PROMPTS} prompts x {SAMPLES} samples x {NEW_TOKENS} new tokens, float32, "
        f"jax {jax.__version__}; tokens/s are medians (range) of {args.repeats} calls")
  with machine.Session(args, torch) as session:
    peaks = machine.matmul_flops_per_s(args.repeats + 3, torch)
    peak = max(peaks.values())
    print("matmul 2048^3 GFLOP/s: " + ", ".join(f"{k} {v / 1e9:.0f}" for k, v in peaks.items()))
    for name in args.shapes.split(","):
      cfg = SHAPES[name]
      params = init(cfg, jax.random.key(0))
      count = sum(x.size for x in jax.tree.leaves(params))
      flops = model_flops(cfg, args.prompt_len)
      mine = ours(cfg, params, args.prompt_len, args.repeats)
      print(f"[{name}: {count / 1e6:.1f}M params, prompts of {args.prompt_len}] r1jax "
            f"{mine.rate(generated)} tok/s ({flops / mine.median / peak:.0%} of matmul peak)"
            f"{session.mark()}", flush=True)
      if torch is not None:
        theirs, diff = hf(torch, cfg, params, args.prompt_len, args.repeats)
        print(f"[{name}] transformers {theirs.rate(generated)} tok/s ({flops / theirs.median / peak:.0%}"
              f" of peak; logits max diff {diff:.1e}); r1jax / transformers = "
              f"{machine.ratio(mine, theirs)}{session.mark()}", flush=True)
      if args.long_prompt_len:
        shared = ours(cfg, params, args.long_prompt_len, 1)
        separate = ours(cfg, params, args.long_prompt_len, 1, share_prefix=False)
        print(f"[{name}, prompts of {args.long_prompt_len}] share_prefix on "
              f"{shared.rate(generated)} tok/s, off {separate.rate(generated)} tok/s: sharing = "
              f"{machine.ratio(shared, separate)}{session.mark()}", flush=True)


if __name__ == "__main__":
  main()
