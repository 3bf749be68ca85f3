"""Makes the tiny Hugging Face checkpoints and golden logits that tests/models/test_hf.py checks.

Each fixture is a random Qwen2 / Qwen2-MoE / DeepSeek-V2 / DeepSeek-V3 model built with the
`transformers` PyTorch code,
saved with `save_pretrained` (safetensors; one of them sharded through `max_shard_size`) next to
`tokens.npy` (fixed int32 token ids [2, 8]) and `logits.npy` (the model's float32 logits for them).
Every weight, norm scale and bias is drawn at random (not the HF init, which leaves norms at one and
biases at zero) so a mis-mapped tensor cannot hide. DeepSeek-V3 fixtures also hold one
multi-token-prediction layer (transformers builds none, so it is assembled here from its
`DeepseekV3DecoderLayer`, with `mtp_logits.npy` computed the same way), and `deepseek_v3_fp8` is
the same model with its projection weights stored as FP8 with per-block scales (its goldens are
the logits of the dequantised weights). torch is not needed for `make test`; only for
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
import json
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
    # DeepSeek-V3: MLA with a low-rank query, 1 dense layer then 8 experts in 4 groups (top-2
    # groups, top-2 experts), sigmoid routing with a selection bias, 1 shared expert, one MTP layer.
    "deepseek_v3": (transformers.DeepseekV3Config, transformers.DeepseekV3ForCausalLM,
                    dict(_SMALL, num_hidden_layers=3, num_key_value_heads=4, moe_intermediate_size=16,
                         n_shared_experts=1, n_routed_experts=8, routed_scaling_factor=2.5,
                         kv_lora_rank=16, q_lora_rank=12, qk_rope_head_dim=4, v_head_dim=6,
                         qk_nope_head_dim=8, n_group=4, topk_group=2, num_experts_per_tok=2,
                         first_k_dense_replace=1, norm_topk_prob=True, rope_interleave=True,
                         num_nextn_predict_layers=1, tie_word_embeddings=False), None),
    # DeepSeek-V2(-Lite-like): no query compression, softmax group-limited greedy routing.
    "deepseek_v2": (transformers.DeepseekV2Config, transformers.DeepseekV2ForCausalLM,
                    dict(_SMALL, num_hidden_layers=3, num_key_value_heads=4, moe_intermediate_size=16,
                         n_shared_experts=2, n_routed_experts=8, routed_scaling_factor=1.5,
                         kv_lora_rank=16, q_lora_rank=None, qk_rope_head_dim=4, v_head_dim=6,
                         qk_nope_head_dim=8, topk_method="group_limited_greedy", n_group=4,
                         topk_group=2, num_experts_per_tok=3, first_k_dense_replace=1,
                         tie_word_embeddings=False), "40KB"),
}
FP8_BLOCK = [8, 8]  # small blocks so the tiny weights have several, some of them partial


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
    for name, b in model.named_buffers():
      if name.endswith("e_score_correction_bias"):  # DeepSeek-V3's selection bias (a buffer)
        b.copy_(0.05 * torch.randn(b.shape, generator=generator))


def _causal_mask(length: int) -> torch.Tensor:
  return torch.triu(torch.full((length, length), float("-inf")), diagonal=1)[None, None]


def _mtp_layer(model, config, generator, tokens):
  """One DeepSeek-V3 MTP module as HF-named tensors, and its logits for `tokens`.

  Module i combines the main model's final hidden state at t with the embedding of token t+1:
  h' = layer(eh_proj([enorm(embed(x[t+1])), hnorm(h[t])])), logits = head(shared_head.norm(h')).
  """
  index = config.num_hidden_layers
  layer = transformers.models.deepseek_v3.modeling_deepseek_v3.DeepseekV3DecoderLayer(config, index)
  layer = layer.to(torch.float32).eval()
  _randomize(layer, generator)
  d = config.hidden_size
  norms = {n: 1.0 + 0.2 * torch.randn(d, generator=generator) for n in ("enorm", "hnorm", "norm")}
  eh_proj = torch.randn(d, 2 * d, generator=generator) / (2 * d) ** 0.5
  rms = lambda x, w: w * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + config.rms_norm_eps)
  with torch.no_grad():
    ids = torch.from_numpy(tokens).long()
    h = model.model(ids).last_hidden_state[:, :-1]
    e = model.model.embed_tokens(ids[:, 1:])
    x = torch.cat([rms(e, norms["enorm"]), rms(h, norms["hnorm"])], -1) @ eh_proj.T
    positions = torch.arange(x.shape[1])[None].expand(x.shape[0], -1)
    out = layer(x, attention_mask=_causal_mask(x.shape[1]), position_ids=positions,
                position_embeddings=model.model.rotary_emb(x, positions))
    logits = model.lm_head(rms(out, norms["norm"])).float().numpy()
  prefix = f"model.layers.{index}."
  tensors = {prefix + k: v.detach().clone().contiguous() for k, v in layer.state_dict().items()}
  tensors |= {prefix + "enorm.weight": norms["enorm"], prefix + "hnorm.weight": norms["hnorm"],
              prefix + "eh_proj.weight": eh_proj, prefix + "shared_head.norm.weight": norms["norm"],
              prefix + "embed_tokens.weight": model.model.embed_tokens.weight.detach().clone(),
              prefix + "shared_head.head.weight": model.lm_head.weight.detach().clone()}
  return tensors, logits


def _per_expert(tensors: dict) -> dict:
  """Fused expert tensors (transformers' in-memory layout) as the per-expert names checkpoints use."""
  out = {}
  for name, t in tensors.items():
    if name.endswith("mlp.experts.gate_up_proj"):
      base = name.removesuffix("gate_up_proj")
      for e, w in enumerate(t):
        gate, up = w.chunk(2, dim=0)
        out[f"{base}{e}.gate_proj.weight"], out[f"{base}{e}.up_proj.weight"] = gate, up
    elif name.endswith("mlp.experts.down_proj"):
      base = name.removesuffix("down_proj")
      for e, w in enumerate(t):
        out[f"{base}{e}.down_proj.weight"] = w
    else:
      out[name] = t
  return {k: v.contiguous() for k, v in out.items()}


def _quantize_fp8(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
  """Block-scaled FP8 (e4m3) of a 2-D weight: (fp8 weight, float32 scale_inv per block)."""
  rows, cols = w.shape
  b0, b1 = FP8_BLOCK
  gr, gc = -(-rows // b0), -(-cols // b1)
  padded = torch.zeros(gr * b0, gc * b1)
  padded[:rows, :cols] = w
  blocks = padded.reshape(gr, b0, gc, b1)
  scale = blocks.abs().amax(dim=(1, 3)).clamp(min=1e-12) / 448.0
  q = (blocks / scale[:, None, :, None]).reshape(gr * b0, gc * b1)[:rows, :cols]
  return q.to(torch.float8_e4m3fn), scale.float()


def make_fp8(source: pathlib.Path, out: pathlib.Path, tokens: np.ndarray) -> None:
  """`source` re-stored with every projection weight in block-scaled FP8, goldens from the
  dequantised weights (what a loader must reproduce)."""
  from safetensors.torch import load_file, save_file  # pylint: disable=g-import-not-at-top
  shutil.rmtree(out, ignore_errors=True)
  out.mkdir(parents=True)
  tensors = load_file(source / "model.safetensors")
  stored, exact = {}, {}
  for name, t in tensors.items():
    if t.ndim == 2 and "_proj." in name:
      q, scale = _quantize_fp8(t.float())
      stored[name], stored[name + "_scale_inv"] = q, scale
      rows, cols = t.shape
      exact[name] = q.float() * scale.repeat_interleave(FP8_BLOCK[0], 0).repeat_interleave(
          FP8_BLOCK[1], 1)[:rows, :cols]
    else:
      stored[name] = exact[name] = t
  save_file(stored, out / "model.safetensors", metadata={"format": "pt"})
  config = json.loads((source / "config.json").read_text())
  config["quantization_config"] = {"quant_method": "fp8", "fmt": "e4m3",
                                   "activation_scheme": "dynamic", "weight_block_size": FP8_BLOCK}
  (out / "config.json").write_text(json.dumps(config, indent=2))
  hf_config = transformers.AutoConfig.from_pretrained(source)
  model = transformers.DeepseekV3ForCausalLM(hf_config).to(torch.float32).eval()
  main = {k: v for k, v in exact.items() if not k.startswith(f"model.layers.{hf_config.num_hidden_layers}.")}
  model.load_state_dict(_fused(model, main), strict=True)
  with torch.no_grad():
    logits = model(torch.from_numpy(tokens).long()).logits.float().numpy()
  np.save(out / "tokens.npy", tokens)
  np.save(out / "logits.npy", logits)
  print(f"{out.name}: fp8 blocks {FP8_BLOCK}, |logits| max {np.abs(logits).max():.2f}")


def _fused(model, per_expert: dict) -> dict:
  """Per-expert checkpoint names -> the model's fused in-memory expert tensors."""
  state = {}
  for key, value in model.state_dict().items():
    if key.endswith("mlp.experts.gate_up_proj"):
      base = key.removesuffix("gate_up_proj")
      state[key] = torch.stack([torch.cat([per_expert[f"{base}{e}.gate_proj.weight"],
                                           per_expert[f"{base}{e}.up_proj.weight"]])
                                for e in range(value.shape[0])])
    elif key.endswith("mlp.experts.down_proj"):
      base = key.removesuffix("down_proj")
      state[key] = torch.stack([per_expert[f"{base}{e}.down_proj.weight"] for e in range(value.shape[0])])
    else:
      state[key] = per_expert[key]
  return state


def make(name: str, out_root: pathlib.Path) -> None:
  config_cls, model_cls, kwargs, shard = SPECS[name]
  torch.manual_seed(0)
  config = config_cls(**kwargs)
  config._attn_implementation = "eager"  # pylint: disable=protected-access
  model = model_cls(config).to(torch.float32).eval()
  generator = torch.Generator().manual_seed(sum(map(ord, name)))
  _randomize(model, generator)
  model.tie_weights()
  tokens = np.random.RandomState(0).randint(0, config.vocab_size, TOKENS_SHAPE).astype(np.int32)
  with torch.no_grad():
    logits = model(torch.from_numpy(tokens).long()).logits.float().numpy()
  out = out_root / name
  shutil.rmtree(out, ignore_errors=True)
  save_kwargs = {"max_shard_size": shard} if shard else {}
  model.save_pretrained(out, safe_serialization=True, **save_kwargs)
  if getattr(config, "num_nextn_predict_layers", 0):
    from safetensors.torch import load_file, save_file  # pylint: disable=g-import-not-at-top
    mtp, mtp_logits = _mtp_layer(model, config, generator, tokens)
    tensors = load_file(out / "model.safetensors") | _per_expert(mtp)
    save_file(tensors, out / "model.safetensors", metadata={"format": "pt"})
    np.save(out / "mtp_logits.npy", mtp_logits)
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
    if name == "deepseek_v3":
      make_fp8(args.out / name, args.out / "deepseek_v3_fp8", np.load(args.out / name / "tokens.npy"))


if __name__ == "__main__":
  main()
