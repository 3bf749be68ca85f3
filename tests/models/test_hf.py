"""Hugging Face import/export: golden logits from transformers, sharded files, round trips, errors.

The fixtures under fixtures/ are tiny random checkpoints written by transformers' own PyTorch code
with their logits for fixed tokens (see scripts/make_hf_goldens.py); torch is not needed here.
"""

import dataclasses
import json
import pathlib
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from r1jax.models import ModelConfig, MoEConfig, init, load_hf, logits, save_hf
from r1jax.models import hf_config
from r1jax.models.hf import HFCheckpointError

FIXTURES = pathlib.Path(__file__).parent / "fixtures"


def _copy(name, tmp_path):
  return pathlib.Path(shutil.copytree(FIXTURES / name, tmp_path / name))


def _edit_config(root, **changes):
  cfg = json.loads((root / "config.json").read_text())
  cfg.update(changes)
  (root / "config.json").write_text(json.dumps(cfg))


def _random_params(cfg, seed):
  """Every leaf random (norms and biases too, unlike `init`), so a swapped tensor shows."""
  rng = np.random.default_rng(seed)
  shapes = jax.eval_shape(lambda: init(cfg, jax.random.key(0)))
  params = jax.tree.map(lambda s: jnp.asarray(rng.standard_normal(s.shape), s.dtype), shapes)
  if cfg.num_moe_layers:  # Qwen2-MoE has no selection bias: exportable params keep it zero
    params["moe"]["moe"]["router_bias"] = jnp.zeros_like(params["moe"]["moe"]["router_bias"])
  return params


def _assert_trees_equal(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    assert x.dtype == y.dtype and x.shape == y.shape
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize("name", ["qwen2_bias", "qwen2_tied", "qwen2_moe", "deepseek_v3",
                                  "deepseek_v2", "deepseek_v3_fp8"])
def test_logits_match_transformers(name):
  cfg, params = load_hf(FIXTURES / name)
  tokens = np.load(FIXTURES / name / "tokens.npy")
  golden = np.load(FIXTURES / name / "logits.npy")
  out = logits(cfg, params, tokens)
  assert out.dtype == np.float32 and out.shape == golden.shape
  np.testing.assert_allclose(np.asarray(out), golden, atol=1e-4, rtol=0)


def test_config_mapping_of_fixtures():
  dense, params = load_hf(FIXTURES / "qwen2_bias")
  assert (dense.qkv_bias, dense.tie_embeddings, dense.rope_theta, dense.moe) == (True, False, 1e6, None)
  assert params["dense"]["attn"]["q_bias"].shape == (2, 4, 8)
  tied, params = load_hf(FIXTURES / "qwen2_tied")
  assert tied.tie_embeddings and "lm_head" not in params
  moe, params = load_hf(FIXTURES / "qwen2_moe", dtype="bfloat16")
  assert moe.param_dtype == "bfloat16" and params["moe"]["attn"]["q"].dtype == np.dtype("bfloat16")
  assert (moe.num_dense_layers, moe.num_moe_layers) == (1, 2)
  assert (moe.moe.num_experts, moe.moe.top_k, moe.moe.norm_top_k, moe.moe.shared_gate) == (4, 2, False, True)
  assert params["moe"]["moe"]["experts"]["gate"].shape == (2, 4, 32, 16)
  assert not np.any(np.asarray(params["moe"]["moe"]["router_bias"]))


# The keys of published checkpoints' config.json (Qwen2.5-0.5B, Qwen1.5-MoE-A2.7B), which use the
# classic `rope_theta` / `torch_dtype` keys rather than transformers 5's `rope_parameters` / `dtype`.
QWEN25_05B = {"architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643,
              "eos_token_id": 151643, "hidden_act": "silu", "hidden_size": 896,
              "initializer_range": 0.02, "intermediate_size": 4864, "max_position_embeddings": 32768,
              "max_window_layers": 24, "model_type": "qwen2", "num_attention_heads": 14,
              "num_hidden_layers": 24, "num_key_value_heads": 2, "rms_norm_eps": 1e-06,
              "rope_theta": 1000000.0, "sliding_window": 32768, "tie_word_embeddings": True,
              "torch_dtype": "bfloat16", "use_cache": True, "use_sliding_window": False,
              "vocab_size": 151936}
QWEN15_MOE = {"architectures": ["Qwen2MoeForCausalLM"], "decoder_sparse_step": 1, "hidden_act": "silu",
              "hidden_size": 2048, "intermediate_size": 5632, "max_position_embeddings": 8192,
              "max_window_layers": 21, "model_type": "qwen2_moe", "moe_intermediate_size": 1408,
              "norm_topk_prob": False, "num_attention_heads": 16, "num_experts": 60,
              "num_experts_per_tok": 4, "num_hidden_layers": 24, "num_key_value_heads": 16,
              "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "sliding_window": 32768,
              "shared_expert_intermediate_size": 5632, "tie_word_embeddings": False,
              "torch_dtype": "bfloat16", "use_sliding_window": False, "vocab_size": 151936}


def test_published_config_keys_map_to_our_config():
  dense = hf_config.from_hf(QWEN25_05B)
  assert dense == ModelConfig(vocab_size=151936, dim=896, num_layers=24, num_heads=14,
                              num_kv_heads=2, head_dim=64, ffn_dim=4864, rope_theta=1e6,
                              norm_eps=1e-6, qkv_bias=True, tie_embeddings=True,
                              max_seq_len=32768, param_dtype="bfloat16")
  moe = hf_config.from_hf(QWEN15_MOE, dtype="float32")
  assert moe.param_dtype == "float32" and moe.head_dim == 128 and moe.num_moe_layers == 24
  assert moe.moe == MoEConfig(num_experts=60, top_k=4, expert_ffn_dim=1408, shared_ffn_dim=5632,
                              shared_gate=True, first_dense_layers=0, norm_top_k=False,
                              balance="none")
  # What save_hf writes reads back as the same config.
  assert hf_config.from_hf(hf_config.to_hf(moe, dtype="bfloat16"), dtype="float32") == moe


def test_sharded_index_is_read_and_a_missing_shard_is_named(tmp_path):
  shards = sorted((FIXTURES / "qwen2_moe").glob("model-*-of-*.safetensors"))
  assert len(shards) > 1 and (FIXTURES / "qwen2_moe" / "model.safetensors.index.json").exists()
  root = _copy("qwen2_moe", tmp_path)
  (root / shards[-1].name).unlink()
  with pytest.raises(FileNotFoundError, match=shards[-1].name):
    load_hf(root)


_MOE = ModelConfig(vocab_size=40, dim=16, num_layers=3, num_heads=4, num_kv_heads=2, head_dim=4,
                   ffn_dim=24, qkv_bias=True, rope_theta=5e5, norm_eps=1e-5, max_seq_len=128,
                   moe=MoEConfig(num_experts=4, top_k=2, expert_ffn_dim=8, shared_ffn_dim=12,
                                 shared_gate=True, first_dense_layers=1, norm_top_k=True,
                                 balance="none"))


@pytest.mark.parametrize("cfg", [
    ModelConfig(vocab_size=40, dim=16, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=8,
                ffn_dim=24, qkv_bias=True),
    _MOE,
    dataclasses.replace(_MOE, param_dtype="bfloat16"),
], ids=["dense", "moe", "moe-bf16"])
def test_save_load_round_trip_is_exact(cfg, tmp_path):
  params = _random_params(cfg, 1)
  save_hf(cfg, params, tmp_path, max_shard_bytes=4096, eos_token_id=3)
  index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
  assert len(set(index["weight_map"].values())) > 1
  assert json.loads((tmp_path / "generation_config.json").read_text()) == {
      "eos_token_id": 3, "max_length": cfg.max_seq_len}   # generate's default would stop at 20
  loaded_cfg, loaded = load_hf(tmp_path)
  assert loaded_cfg == cfg
  _assert_trees_equal(loaded, params)


def test_model_without_qkv_bias_exports_zero_biases_and_tokenizer(tmp_path):
  cfg = ModelConfig(vocab_size=40, dim=16, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=4,
                    ffn_dim=24, qkv_bias=False, tie_embeddings=True)
  params = _random_params(cfg, 2)
  tokenizer = tmp_path / "tokenizer"
  tokenizer.mkdir()
  (tokenizer / "tokenizer.json").write_text("{}")
  out = tmp_path / "out"
  save_hf(cfg, params, out, tokenizer_from=tokenizer)
  assert (out / "model.safetensors").exists() and (out / "tokenizer.json").exists()
  loaded_cfg, loaded = load_hf(out)
  assert loaded_cfg == dataclasses.replace(cfg, qkv_bias=True)
  assert not np.any(np.asarray(loaded["dense"]["attn"]["k_bias"]))
  tokens = np.arange(12).reshape(2, 6)
  np.testing.assert_array_equal(logits(loaded_cfg, loaded, tokens), logits(cfg, params, tokens))


def test_export_refuses_what_qwen2_moe_cannot_hold(tmp_path):
  params = _random_params(_MOE, 0)
  params["moe"]["moe"]["router_bias"] = params["moe"]["moe"]["router_bias"].at[0, 1].set(0.5)
  with pytest.raises(HFCheckpointError, match="router_bias"):
    save_hf(_MOE, params, tmp_path)
  sigmoid = dataclasses.replace(_MOE, moe=dataclasses.replace(_MOE.moe, gating="sigmoid"))
  with pytest.raises(HFCheckpointError, match="gating='sigmoid'"):
    save_hf(sigmoid, _random_params(sigmoid, 0), tmp_path)


def test_missing_directory_or_config(tmp_path):
  with pytest.raises(FileNotFoundError, match="not found"):
    load_hf(tmp_path / "nowhere")
  with pytest.raises(FileNotFoundError, match="config.json"):
    load_hf(tmp_path)


def test_missing_tensor_is_named(tmp_path):
  root = _copy("qwen2_bias", tmp_path)
  tensors = load_file(root / "model.safetensors")
  del tensors["model.layers.1.self_attn.k_proj.bias"]
  save_file(tensors, root / "model.safetensors", metadata={"format": "pt"})
  with pytest.raises(HFCheckpointError, match=r"missing tensors .*model\.layers\.1\.self_attn\.k_proj\.bias"):
    load_hf(root)


def test_wrong_shape_is_named(tmp_path):
  root = _copy("qwen2_tied", tmp_path)
  _edit_config(root, intermediate_size=40)
  with pytest.raises(HFCheckpointError, match=r"model\.layers\.0\.mlp\.\w+_proj\.weight.*shape"):
    load_hf(root)


@pytest.mark.parametrize("fixture,changes,message", [
    ("qwen2_tied", {"architectures": ["LlamaForCausalLM"], "model_type": "llama"},
     "unsupported architecture.*LlamaForCausalLM"),
    ("qwen2_tied", {"layer_types": None, "use_sliding_window": True, "sliding_window": 16},
     "sliding-window attention"),
    ("qwen2_tied", {"layer_types": ["full_attention", "sliding_attention"]}, r"layers \[1\]"),
    ("qwen2_tied", {"rope_parameters": {"rope_type": "proportional", "factor": 4.0, "rope_theta": 1e4}},
     "RoPE scaling 'proportional' is not supported"),
    ("qwen2_tied", {"hidden_act": "gelu"}, "hidden_act='gelu'"),
    ("qwen2_moe", {"mlp_only_layers": [], "decoder_sparse_step": 2},
     r"unsupported layer layout: dense layers \[0, 2\]"),
])
def test_unsupported_configs_are_named(tmp_path, fixture, changes, message):
  root = _copy(fixture, tmp_path)
  _edit_config(root, **changes)
  with pytest.raises(HFCheckpointError, match=message) as err:
    load_hf(root)
  assert str(root / "config.json") in str(err.value)
