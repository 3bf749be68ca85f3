"""Makes the tiny Hugging Face checkpoints and golden logits that tests/models/test_hf*.py check.

Each fixture is a random Qwen2 / Qwen2-MoE / DeepSeek-V2 / DeepSeek-V3 model built with the
`transformers` PyTorch code,
saved with `save_pretrained` (safetensors; one of them sharded through `max_shard_size`) next to
`tokens.npy` (fixed int32 token ids [2, 8]) and `logits.npy` (the model's float32 logits for them).
The RoPE-scaling fixtures (ROPE_SPECS: linear, dynamic, yarn, llama3, longrope for Qwen2, YaRN for
a DeepSeek-V3 saved as transformers saves it, without MTP tensors) take tokens [2, 48] that run
past the original context, with `short_logits.npy` for a prefix inside it.
Every weight, norm scale and bias is drawn at random (not the HF init, which leaves norms at one and
biases at zero) so a mis-mapped tensor cannot hide. DeepSeek-V3 fixtures also hold one
multi-token-prediction layer (transformers builds none, so it is assembled here from its
`DeepseekV3DecoderLayer`, with `mtp_logits.npy` computed the same way), and `deepseek_v3_fp8` is
the same model with its projection weights stored as FP8 with per-block scales (its goldens are
the logits of the dequantised weights). torch is not needed for `make test`; only for
regenerating, in the ignored venv of the benchmarks (r1jax, torch and transformers):

    make bench-venv
    .venv-bench/bin/python scripts/make_hf_goldens.py     # rewrites tests/models/fixtures/ and
                                                          # tests/fixtures/transformers_export.json
    .venv-bench/bin/python scripts/make_hf_goldens.py --only qwen2_rope_yarn   # one of them

`transformers_export.json` (in tests/fixtures) records what a transformers user gets from an r1jax
export with default arguments only: r1jax.policy.export_policy writes the shipped demo model's
export, which is loaded with AutoTokenizer + AutoModelForCausalLM; for a few R1-Zero prompts it
keeps `tokenizer(text)`'s ids, `apply_chat_template`'s ids and greedy `generate`'s new tokens,
which tests/test_policy.py compares with the trainer's prompt ids and r1jax's greedy tokens
(regenerate it with `--only export` when the export or the demo model changes).

`--verify-export DIR --fixture NAME` loads DIR (e.g. written by `r1jax.models.save_hf`) with
transformers and checks its logits on that fixture's tokens against the fixture's goldens, to
confirm our exports are read back by the reference code.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import random
import re
import shutil
import tempfile

import numpy as np
import torch
import transformers

FIXTURES = pathlib.Path(__file__).resolve().parent.parent / "tests" / "models" / "fixtures"
EXPORT_GOLDEN = FIXTURES.parent.parent / "fixtures" / "transformers_export.json"
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

# RoPE scalings, on token ids [2, 48] that run past the original context (32; dynamic NTK starts
# past max_position_embeddings), with `short_logits.npy` for the first SHORT tokens (inside it:
# dynamic and longrope then use their unscaled frequencies). Two heads of 16 dims and base 100
# put rotary pairs on both sides of each scaling's thresholds (YaRN's ramp, llama3's bands).
ROPE_TOKENS_SHAPE, SHORT = (2, 48), 12
_ROPE_QWEN = dict(_SMALL, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                  rope_theta=100.0, tie_word_embeddings=True)
_Q2 = (transformers.Qwen2Config, transformers.Qwen2ForCausalLM)
ROPE_SPECS = {
    "qwen2_rope_linear": (*_Q2, dict(_ROPE_QWEN, rope_scaling={"rope_type": "linear", "factor": 2.0})),
    "qwen2_rope_dynamic": (*_Q2, dict(_ROPE_QWEN, max_position_embeddings=32,
                                      rope_scaling={"rope_type": "dynamic", "factor": 2.0})),
    "qwen2_rope_yarn": (*_Q2, dict(_ROPE_QWEN, max_position_embeddings=128, rope_scaling={
        "rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32})),
    "qwen2_rope_llama3": (*_Q2, dict(_ROPE_QWEN, max_position_embeddings=128, rope_scaling={
        "rope_type": "llama3", "factor": 4.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 32})),
    "qwen2_rope_longrope": (*_Q2, dict(_ROPE_QWEN, max_position_embeddings=128, rope_scaling={
        "rope_type": "longrope", "original_max_position_embeddings": 32,
        "short_factor": [1.0, 1.1, 1.3, 1.6, 2.0, 2.5, 3.1, 3.8],
        "long_factor": [1.0, 1.5, 2.2, 3.0, 4.0, 5.2, 6.6, 8.0]})),
    # DeepSeek-V3 as transformers saves a YaRN fine-tune: num_nextn_predict_layers=1 in config.json
    # but no MTP tensors; mscale != mscale_all_dim so both YaRN factors (cos/sin and MLA's softmax
    # scale) differ from 1, and an untruncated ramp.
    "deepseek_v3_yarn": (transformers.DeepseekV3Config, transformers.DeepseekV3ForCausalLM, dict(
        _SMALL, num_hidden_layers=2, num_key_value_heads=4, moe_intermediate_size=16,
        n_shared_experts=1, n_routed_experts=4, routed_scaling_factor=2.5, kv_lora_rank=16,
        q_lora_rank=12, qk_rope_head_dim=8, v_head_dim=6, qk_nope_head_dim=8, n_group=2,
        topk_group=1, num_experts_per_tok=2, first_k_dense_replace=1, norm_topk_prob=True,
        rope_interleave=True, num_nextn_predict_layers=1, tie_word_embeddings=False,
        rope_theta=100.0, max_position_embeddings=128, rope_scaling={
            "type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32,
            "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 0.8,
            "truncate": False})),
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
  rope = name in ROPE_SPECS
  config_cls, model_cls, kwargs, shard = SPECS[name] if not rope else (*ROPE_SPECS[name], None)
  torch.manual_seed(0)
  config = config_cls(**kwargs)
  config._attn_implementation = "eager"  # pylint: disable=protected-access
  model = model_cls(config).to(torch.float32).eval()
  generator = torch.Generator().manual_seed(sum(map(ord, name)))
  _randomize(model, generator)
  model.tie_weights()
  shape = ROPE_TOKENS_SHAPE if rope else TOKENS_SHAPE
  tokens = np.random.RandomState(0).randint(0, config.vocab_size, shape).astype(np.int32)
  with torch.no_grad():
    # Short first: transformers' dynamic RoPE keeps the longest length it has seen.
    short = model(torch.from_numpy(tokens[:, :SHORT]).long()).logits.float().numpy() if rope else None
    logits = model(torch.from_numpy(tokens).long()).logits.float().numpy()
  out = out_root / name
  shutil.rmtree(out, ignore_errors=True)
  save_kwargs = {"max_shard_size": shard} if shard else {}
  model.save_pretrained(out, safe_serialization=True, **save_kwargs)
  if short is not None:
    np.save(out / "short_logits.npy", short)
  if getattr(config, "num_nextn_predict_layers", 0) and not rope:
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


def make_export_golden(out_file: pathlib.Path) -> None:
  """What transformers' Auto classes, with default arguments, make of the demo model's export."""
  import os  # pylint: disable=g-import-not-at-top
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  from r1jax.data.tasks.sums import chain_sum  # pylint: disable=g-import-not-at-top
  from r1jax.data.templates import apply_template  # pylint: disable=g-import-not-at-top
  from r1jax.models import ModelConfig  # pylint: disable=g-import-not-at-top
  from r1jax.policy import export_policy, load_policy  # pylint: disable=g-import-not-at-top
  base, template = "builtin:demo", "r1_zero"
  cfg, params, _ = load_policy(base, ModelConfig(), "", 0)
  rng = random.Random(0)
  questions = [chain_sum(rng, d)[0] for d in (1, 1, 2, 3)]
  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    export_policy(cfg, params, base, tmp, template=template)
    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp)
    model = transformers.AutoModelForCausalLM.from_pretrained(tmp).eval()
    chat = json.loads((pathlib.Path(tmp) / "tokenizer_config.json").read_text())["chat_template"]
    for q in questions:
      inputs = tokenizer(apply_template(template, q), return_tensors="pt")
      chat_ids = tokenizer.apply_chat_template([{"role": "user", "content": q}],
                                               add_generation_prompt=True, tokenize=True)
      chat_ids = chat_ids["input_ids"] if hasattr(chat_ids, "keys") else chat_ids
      with torch.no_grad():
        out = model.generate(**inputs)
      rows.append({"question": q, "input_ids": inputs.input_ids[0].tolist(),
                   "chat_ids": list(chat_ids),
                   "generated": out[0, inputs.input_ids.shape[1]:].tolist()})
  out_file.parent.mkdir(parents=True, exist_ok=True)
  text = json.dumps({"base_model": base, "template": template,
                     "transformers": transformers.__version__,
                     "tokenizer_class": type(tokenizer).__name__, "chat_template": chat,
                     "rows": rows}, indent=1)
  # Token id lists on one line each.
  text = re.sub(r"\[\s+([\d,\s]+?)\s+\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", text)
  out_file.write_text(text + "\n")
  print(f"{out_file}: {len(rows)} prompts, generated lengths {[len(r['generated']) for r in rows]}")


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
  parser.add_argument("--only", choices=sorted(SPECS | ROPE_SPECS) + ["export"], action="append")
  parser.add_argument("--verify-export", type=pathlib.Path)
  parser.add_argument("--fixture", choices=sorted(SPECS | ROPE_SPECS))
  args = parser.parse_args()
  if args.verify_export:
    if not args.fixture:
      parser.error("--verify-export needs --fixture")
    verify_export(args.verify_export, args.fixture)
    return
  torch.use_deterministic_algorithms(True)
  for name in args.only or [*SPECS, *ROPE_SPECS, "export"]:
    if name == "export":
      make_export_golden(EXPORT_GOLDEN)
      continue
    make(name, args.out)
    if name == "deepseek_v3":
      make_fp8(args.out / name, args.out / "deepseek_v3_fp8", np.load(args.out / name / "tokens.npy"))


if __name__ == "__main__":
  main()
