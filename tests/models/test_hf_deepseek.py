"""DeepSeek-V2 / V3 checkpoints: MTP golden logits, FP8, round trips (main golden logits: test_hf.py).

Fixtures are made by scripts/make_hf_goldens.py (see tests/models/test_hf.py).
"""

import json
import pathlib
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file

from r1jax.models import load_hf, save_hf, trunk
from r1jax.models import hf_config, mtp
from r1jax.models.hf import HFCheckpointError, dequantize_fp8

FIXTURES = pathlib.Path(__file__).parent / "fixtures"


def test_mtp_logits_match_reference():
  cfg, params = load_hf(FIXTURES / "deepseek_v3")
  tokens = np.load(FIXTURES / "deepseek_v3" / "tokens.npy")
  h, _, _ = trunk(cfg, params, tokens)
  (depth1,) = mtp.mtp_logits(cfg, params, tokens, h)
  np.testing.assert_allclose(np.asarray(depth1), np.load(FIXTURES / "deepseek_v3" / "mtp_logits.npy"),
                             atol=1e-4, rtol=0)
  # The loss restated from the reference logits: depth 1 at t predicts tokens[t + 2].
  golden = np.load(FIXTURES / "deepseek_v3" / "mtp_logits.npy")[:, :-1]
  logp = golden - np.log(np.exp(golden).sum(-1, keepdims=True))
  want = -np.take_along_axis(logp, tokens[:, 2:, None], -1).sum()
  np.testing.assert_allclose(float(mtp.mtp_nll(cfg, params, tokens, h)), want, rtol=1e-4)


def test_config_mapping():
  v3, params = load_hf(FIXTURES / "deepseek_v3")
  assert (v3.mla.kv_lora_rank, v3.mla.q_lora_rank, v3.mtp_layers) == (16, 12, 1)
  m = v3.moe
  assert (m.gating, m.n_group, m.topk_group, m.group_score, m.routed_scale, m.norm_top_k,
          m.shared_ffn_dim, m.first_dense_layers) == ("sigmoid", 4, 2, "top2_sum", 2.5, True, 16, 1)
  assert np.any(np.asarray(params["moe"]["moe"]["router_bias"]))   # e_score_correction_bias
  v2, _ = load_hf(FIXTURES / "deepseek_v2")
  assert (v2.mla.q_lora_rank, v2.moe.gating, v2.moe.group_score, v2.moe.norm_top_k,
          v2.moe.shared_ffn_dim) == (0, "softmax", "max", False, 32)


@pytest.mark.parametrize("name", ["deepseek_v3", "deepseek_v2"])
def test_save_load_round_trip_reproduces_the_checkpoint(name, tmp_path):
  cfg, params = load_hf(FIXTURES / name)
  save_hf(cfg, params, tmp_path / "out", max_shard_bytes=50_000)
  cfg2, params2 = load_hf(tmp_path / "out")
  assert cfg2 == cfg
  jax.tree.map(np.testing.assert_array_equal, params2, params)
  # Same tensor names and values as the transformers-written checkpoint (interleaved RoPE too).
  ours = {}
  for f in (tmp_path / "out").glob("*.safetensors"):
    ours |= load_file(f)
  theirs = {}
  for f in (FIXTURES / name).glob("*.safetensors"):
    theirs |= load_file(f)
  assert sorted(ours) == sorted(theirs)
  for k in theirs:
    np.testing.assert_array_equal(ours[k], theirs[k], err_msg=k)
  hf = json.loads((tmp_path / "out" / "config.json").read_text())
  assert hf["model_type"] == name and hf_config.from_hf(hf) == cfg


def test_fp8_dequantisation_by_blocks():
  w = np.arange(6 * 5, dtype=np.float32).reshape(6, 5).astype(jnp.float8_e4m3fn)
  scale = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
  out = dequantize_fp8(w, scale, (4, 3))
  expect = w.astype(np.float32) * np.array([[1, 1, 1, 2, 2]] * 4 + [[3, 3, 3, 4, 4]] * 2)
  np.testing.assert_array_equal(out, expect)
  with pytest.raises(HFCheckpointError, match=r"block scales have shape \(2, 2\).*needs \(3, 2\)"):
    dequantize_fp8(w, scale, (2, 3))


def test_fp8_without_scales_is_named(tmp_path):
  root = pathlib.Path(shutil.copytree(FIXTURES / "deepseek_v3_fp8", tmp_path / "fp8"))
  with safe_open(root / "model.safetensors", framework="np") as f:
    names = list(f.keys())
  gone = "model.layers.0.self_attn.o_proj.weight_scale_inv"
  assert gone in names
  # An index that no longer lists one weight's scales (the numpy reader cannot rewrite FP8 files).
  weight_map = {n: "model.safetensors" for n in names if n != gone}
  (root / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
  with pytest.raises(HFCheckpointError, match=r"o_proj.weight' is FP8 but .*weight_scale_inv"):
    load_hf(root)
