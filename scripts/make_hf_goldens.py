"""Makes the tiny Hugging Face checkpoints and golden logits that tests/models/test_hf.py checks.

Each fixture is a random Qwen2 / Qwen2-MoE model built with the `transformers` PyTorch code,
saved with `save_pretrained` (safetensors; one of them sharded through `max_shard_size`) next to
`tokens.npy` (fixed int32 token ids [2, 8]) and `logits.npy` (the model's float32 logits for them).
Every weight, norm scale and bias is drawn at random (not the HF init, which leaves norms at one and
biases at zero) so a mis-mapped tensor cannot hide. torch is not needed for `make test`; only for
regenerating, in a separate ignored venv:

    python3 -m venv .venv-golden
    .venv-golden/bin/pip install torch==2.13.0 transformers safetensors numpy
    .venv-golden/bin/python scripts/make_hf_goldens.py            # rewrites tests/models/fixtures/

`--verify-export DIR --fixture NAME` loads DIR (e.g. written by `r1jax.models.save_hf`) with
transformers and checks its logits on that fixture's tokens against the fixture's goldens, to
confirm our exports are read back by the reference code.
"""

from __future__ import annotations

import argparse
import pathlib
import shutil

import numpy as np
import torch
import transformers

FIXTURES = pathlib.Path(__file__).resolve().parent.parent / "tests" / "models" / "fixtures"
TOKENS_SHAPE = (2, 8)

_SMALL = dict(vocab_size=96, hidden_size=32, num_attention_heads=4, num_key_value_heads=2,
              intermediate_size=48, max_position_embeddings=64, rms_norm_eps=1e-6,
              rope_theta=10000.0)

# name -> (config class, model class, config kwargs, max_shard_size or None)
SPECS = {
    "qwen2_bias": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM,
                   dict(_SMALL, num_hidden_layers=2, rope_theta=1e6, tie_word_embeddings=False), None),
    "qwen2_tied": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM,
                   dict(_SMALL, num_hidden_layers=2, tie_word_embeddings=True), None),
    # Layer 0 dense (mlp_only_layers), layers 1-2 sparse: our first_dense_layers = 1.
    "qwen2_moe": (transformers.Qwen2MoeConfig, transformers.Qwen2MoeForCausalLM,
                  dict(_SMALL, num_hidden_layers=3, tie_word_embeddings=False, num_experts=4,
                       num_experts_per_tok=2, moe_intermediate_size=16,
                       shared_expert_intermediate_size=24, norm_topk_prob=False,
                       decoder_sparse_step=1, mlp_only_layers=[0]), "40KB"),
}


def _randomize(model: torch.nn.Module, generator: torch.Generator) -> None:
  """Draws every parameter at random with O(1)-sized activations (norms around 1)."""
  with torch.no_grad():
    for name, p in model.named_parameters():
      noise = torch.randn(p.shape, generator=generator, dtype=torch.float32)
      if name.endswith("norm.weight"):
        p.copy_(1.0 + 0.2 * noise)
      elif name.endswith(".bias"):
        p.copy_(0.2 * noise)
      elif p.ndim == 1 or name.endswith("embed_tokens.weight"):
        p.copy_(noise)
      else:
        # nn.Linear weights are [out, in] (fused experts [E, out, in]): scale by the fan-in.
        p.copy_(noise / p.shape[-1] ** 0.5)


def make(name: str, out_root: pathlib.Path) -> None:
  config_cls, model_cls, kwargs, shard = SPECS[name]
  torch.manual_seed(0)
  config = config_cls(**kwargs)
  model = model_cls(config).to(torch.float32).eval()
  _randomize(model, torch.Generator().manual_seed(sum(map(ord, name))))
  model.tie_weights()
  tokens = np.random.RandomState(0).randint(0, config.vocab_size, TOKENS_SHAPE).astype(np.int32)
  with torch.no_grad():
    logits = model(torch.from_numpy(tokens).long()).logits.float().numpy()
  out = out_root / name
  shutil.rmtree(out, ignore_errors=True)
  save_kwargs = {"max_shard_size": shard} if shard else {}
  model.save_pretrained(out, safe_serialization=True, **save_kwargs)
  np.save(out / "tokens.npy", tokens)
  np.save(out / "logits.npy", logits)
  size = sum(f.stat().st_size for f in out.iterdir())
  print(f"{name}: {sorted(f.name for f in out.iterdir())}, {size / 1024:.0f} KiB, "
        f"|logits| max {np.abs(logits).max():.2f}")


def verify_export(export_dir: pathlib.Path, fixture: str) -> None:
  model = transformers.AutoModelForCausalLM.from_pretrained(export_dir, dtype=torch.float32).eval()
  tokens = np.load(FIXTURES / fixture / "tokens.npy")
  golden = np.load(FIXTURES / fixture / "logits.npy")
  with torch.no_grad():
    logits = model(torch.from_numpy(tokens).long()).logits.float().numpy()
  err = float(np.abs(logits - golden).max())
  print(f"{export_dir} vs fixture {fixture}: max |logits - golden| = {err:.2e}")
  if err > 1e-4:
    raise SystemExit(f"export of {fixture} does not reproduce the goldens (max error {err:.2e})")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--out", type=pathlib.Path, default=FIXTURES)
  parser.add_argument("--only", choices=sorted(SPECS), action="append")
  parser.add_argument("--verify-export", type=pathlib.Path)
  parser.add_argument("--fixture", choices=sorted(SPECS))
  args = parser.parse_args()
  if args.verify_export:
    if not args.fixture:
      parser.error("--verify-export needs --fixture")
    verify_export(args.verify_export, args.fixture)
    return
  torch.use_deterministic_algorithms(True)
  for name in args.only or SPECS:
    make(name, args.out)


if __name__ == "__main__":
  main()
