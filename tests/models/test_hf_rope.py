"""RoPE scaling of Hugging Face checkpoints (linear, dynamic, yarn, llama3, longrope; YaRN in
DeepSeek's MLA) against transformers' logits, within and past the original context, and the
DeepSeek-V3 checkpoints transformers saves without their MTP tensors.

Fixtures are made by scripts/make_hf_goldens.py (see tests/models/test_hf.py): tokens [2, 48] run
past the original context (32), `short_logits.npy` are the goldens of the first 12 tokens.
"""

import json
import logging
import math
import pathlib
import shutil

import jax
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from r1jax import experiment
from r1jax.config import ConfigError
from r1jax.models import load_hf, logits, save_hf
from r1jax.models import hf_config, rope_scaling
from r1jax.models.hf import HFCheckpointError
from r1jax.rollout import sample

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
ROPE_FIXTURES = ["qwen2_rope_linear", "qwen2_rope_dynamic", "qwen2_rope_yarn", "qwen2_rope_llama3",
                 "qwen2_rope_longrope", "deepseek_v3_yarn"]


@pytest.mark.parametrize("name", ROPE_FIXTURES)
def test_scaled_rope_logits_match_transformers(name):
  cfg, params = load_hf(FIXTURES / name)
  assert cfg.rope_scaling.kind == name.rsplit("_", 1)[1]
  tokens = np.load(FIXTURES / name / "tokens.npy")
  short = np.load(FIXTURES / name / "short_logits.npy")
  np.testing.assert_allclose(np.asarray(logits(cfg, params, tokens)),
                             np.load(FIXTURES / name / "logits.npy"), atol=1e-4, rtol=0)
  np.testing.assert_allclose(np.asarray(logits(cfg, params, tokens[:, :short.shape[1]])), short,
                             atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", ["qwen2_rope_longrope", "deepseek_v3_yarn"])
def test_scaled_rope_round_trips_through_save_hf(name, tmp_path):
  cfg, params = load_hf(FIXTURES / name)
  save_hf(cfg, params, tmp_path)
  again, params2 = load_hf(tmp_path)
  assert again == cfg
  jax.tree.map(np.testing.assert_array_equal, params2, params)
  written = json.loads((tmp_path / "config.json").read_text())["rope_scaling"]
  theirs = json.loads((FIXTURES / name / "config.json").read_text())["rope_parameters"]
  implicit = {"factor": 128 / 32} if name == "qwen2_rope_longrope" else {}   # written out
  assert {k: v for k, v in written.items() if k not in ("rope_type", "type")} == implicit | {
      k: v for k, v in theirs.items() if k not in ("rope_type", "type", "rope_theta")}


# rope_scaling of DeepSeek-V3's published config.json (V3, V3-Base, R1 share it).
DEEPSEEK_V3_YARN = {"beta_fast": 32, "beta_slow": 1, "factor": 40, "mscale": 1.0,
                    "mscale_all_dim": 1.0, "original_max_position_embeddings": 4096, "type": "yarn"}


def test_published_yarn_config_and_its_scales():
  hf = json.loads((FIXTURES / "deepseek_v3_yarn" / "config.json").read_text())
  hf.pop("rope_parameters")
  hf |= {"rope_theta": 10000.0, "rope_scaling": DEEPSEEK_V3_YARN, "max_position_embeddings": 163840}
  cfg = hf_config.from_hf(hf)
  s = cfg.rope_scaling
  assert (s.kind, s.factor, s.original_max_len, s.beta_fast, s.beta_slow, s.mscale,
          s.mscale_all_dim, s.truncate) == ("yarn", 40.0, 4096, 32.0, 1.0, 1.0, 1.0, True)
  # DeepSeek's MLA multiplies every score by mscale^2; with mscale == mscale_all_dim, cos/sin by 1.
  assert rope_scaling.softmax_factor(cfg.rope) == pytest.approx((0.1 * math.log(40) + 1) ** 2)
  _, cos_sin = rope_scaling.frequencies(cfg.rope, 8, np.zeros((1, 1), np.int32))
  assert cos_sin == pytest.approx(1.0)
  assert hf_config.from_hf(hf_config.to_hf(cfg, dtype=cfg.param_dtype)) == cfg


def _yarn_reference(theta, dim, factor, original, beta_fast, beta_slow):
  """YaRN's inverse frequencies restated in float64 NumPy from the paper's definitions."""
  inv = theta ** -(np.arange(0, dim, 2) / dim)
  dim_of = lambda rot: dim * np.log(original / (rot * 2 * np.pi)) / (2 * np.log(theta))
  low, high = max(np.floor(dim_of(beta_fast)), 0), min(np.ceil(dim_of(beta_slow)), dim - 1)
  ramp = np.clip((np.arange(dim // 2) - low) / (high - low), 0, 1)   # 0: keep, 1: interpolate
  return inv * (1 - ramp) + inv / factor * ramp


def test_yarn_frequencies_at_deepseek_v3_scale():
  """Real sizes (64 rotary dims, 40x over 4096 positions), where the tiny fixtures cannot go."""
  s = rope_scaling.RopeScaling(kind="yarn", factor=40.0, original_max_len=4096)
  inv, _ = rope_scaling.frequencies(rope_scaling.Rope(10000.0, s, 163840), 64,
                                    np.zeros((1, 1), np.int32))
  want = _yarn_reference(10000.0, 64, 40.0, 4096, 32.0, 1.0)
  np.testing.assert_allclose(np.asarray(inv), want, rtol=1e-5)
  assert np.asarray(inv)[0] == pytest.approx(1.0) and want[-1] < inv[0] / 40   # both ends reached


@pytest.mark.parametrize("scaling,message", [
    ({"rope_type": "proportional", "factor": 2.0}, "RoPE scaling 'proportional' is not supported"),
    ({"rope_type": "llama3", "factor": 2.0}, r"needs rope_scaling keys \['low_freq_factor'"),
    ({"rope_type": "yarn", "factor": 2.0, "partial_rotary_factor": 0.5}, "partial_rotary_factor=0.5"),
    ({"rope_type": "longrope", "short_factor": [1.0], "long_factor": [2.0],
      "original_max_position_embeddings": 32}, "rope_scaling.short_factor: got 1 values; longrope needs one per"),
])
def test_unsupported_rope_scaling_is_named(tmp_path, scaling, message):
  root = pathlib.Path(shutil.copytree(FIXTURES / "qwen2_rope_yarn", tmp_path / "m"))
  hf = json.loads((root / "config.json").read_text())
  hf["rope_parameters"] = scaling | {"rope_theta": 100.0}
  (root / "config.json").write_text(json.dumps(hf))
  with pytest.raises(HFCheckpointError, match=message) as err:
    load_hf(root)
  assert str(root / "config.json") in str(err.value)


def test_rope_keys_a_kind_does_not_use_are_ignored_with_a_warning(tmp_path, caplog):
  """As transformers does (e.g. an original_max_position_embeddings next to 'dynamic')."""
  root = pathlib.Path(shutil.copytree(FIXTURES / "qwen2_rope_dynamic", tmp_path / "m"))
  hf = json.loads((root / "config.json").read_text())
  hf["rope_parameters"]["original_max_position_embeddings"] = 8
  (root / "config.json").write_text(json.dumps(hf))
  with caplog.at_level(logging.WARNING):
    cfg, _ = load_hf(root)
  assert cfg == load_hf(FIXTURES / "qwen2_rope_dynamic")[0]
  assert [r for r in caplog.records if "['original_max_position_embeddings'] are not used by "
          "'dynamic'" in r.getMessage()]


def test_transformers_saved_v3_loads_without_mtp(caplog):
  """save_pretrained keeps num_nextn_predict_layers=1 but writes no MTP tensors."""
  declared = json.loads((FIXTURES / "deepseek_v3_yarn" / "config.json").read_text())
  assert declared["num_nextn_predict_layers"] == 1
  with caplog.at_level(logging.WARNING):
    cfg, params = load_hf(FIXTURES / "deepseek_v3_yarn")
  assert cfg.mtp_layers == 0 and "mtp" not in params
  assert [r for r in caplog.records if "no MTP tensors" in r.getMessage()]


def _without(tmp_path, names):
  root = pathlib.Path(shutil.copytree(FIXTURES / "deepseek_v3", tmp_path / "v3"))
  tensors = load_file(root / "model.safetensors")
  save_file({k: v for k, v in tensors.items() if not names(k)}, root / "model.safetensors",
            metadata={"format": "pt"})
  return root


def test_mtp_tensors_dropped_from_a_checkpoint_leave_its_logits(tmp_path):
  root = _without(tmp_path, lambda name: name.startswith("model.layers.3."))   # the MTP layer
  cfg, params = load_hf(root)
  assert cfg.mtp_layers == 0
  tokens = np.load(root / "tokens.npy")
  np.testing.assert_allclose(np.asarray(logits(cfg, params, tokens)), np.load(root / "logits.npy"),
                             atol=1e-4, rtol=0)


def test_partial_mtp_tensors_are_named(tmp_path):
  root = _without(tmp_path, lambda name: name == "model.layers.3.eh_proj.weight")
  with pytest.raises(HFCheckpointError, match=r"missing tensors .*model\.layers\.3\.eh_proj\.weight"):
    load_hf(root)


def test_decoding_under_yarn_matches_the_full_forward():
  """The sampler's decode steps (MLA's absorbed attention over the latent cache, past the original
  context) read the same YaRN scales as the full forward."""
  cfg, params = load_hf(FIXTURES / "deepseek_v3_yarn")
  prompt = np.load(FIXTURES / "deepseek_v3_yarn" / "tokens.npy")[:, :40]
  run = sample(cfg, params, prompt, np.ones_like(prompt, bool), jax.random.key(0), num_samples=1,
               max_new_tokens=6, temperature=0.0)
  full = np.asarray(logits(cfg, params, np.concatenate([prompt, np.asarray(run.tokens)], 1)))
  steps = full[:, prompt.shape[1] - 1:-1]
  np.testing.assert_array_equal(np.asarray(run.tokens), steps.argmax(-1))
  logp = steps - np.log(np.exp(steps).sum(-1, keepdims=True))
  np.testing.assert_allclose(np.asarray(run.logprobs),
                             np.take_along_axis(logp, np.asarray(run.tokens)[..., None], -1)[..., 0],
                             atol=1e-4)


def test_rope_scaling_is_a_validated_config_section():
  """`--config.model.rope_scaling.<key>=...` reaches ModelConfig, checked once at load."""
  experiments = pathlib.Path(__file__).parents[2] / "experiments"
  c = experiment.sibling(str(experiments / "r1_zero.py"), "r1_zero").get_config("smoke")
  c.model.rope_scaling.kind = "yarn"
  with pytest.raises(ConfigError, match=r"model\.rope_scaling\.original_max_len.*got 0"):
    experiment.load(c)
  c.model.rope_scaling.kind = "yarnn"
  with pytest.raises(ConfigError, match=r"model\.rope_scaling\.kind.*'yarn'"):
    experiment.load(c)
  c.model.rope_scaling.update(kind="yarn", original_max_len=512, factor=4)
  loaded = experiment.load(c).model
  assert loaded.rope == rope_scaling.Rope(
      loaded.rope_theta, rope_scaling.RopeScaling(kind="yarn", factor=4.0, original_max_len=512),
      loaded.max_seq_len)
