"""Import and export of Hugging Face checkpoints: `config.json` plus (sharded) `*.safetensors`.

:func:`load_hf` reads a Qwen2 / Qwen2.5 / Qwen2-MoE / DeepSeek-V2 / DeepSeek-V3 directory with
numpy and safetensors (no torch), checks every tensor's presence and shape against the config
before converting it, and stacks the per-layer tensors into our layout (see
:mod:`r1jax.models.hf_names`). FP8 weights stored with block scales (DeepSeek-V3's release:
float8_e4m3 plus a `<name>_scale_inv` per 128x128 block) are dequantised on load. :func:`save_hf`
writes the same format back — config.json, generation_config.json and safetensors, split into
shards with a `model.safetensors.index.json` when large — so a trained policy can be served by
transformers, vLLM or SGLang.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil
import struct
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from safetensors import safe_open
from safetensors.numpy import save_file

from r1jax.config import check_choice
from r1jax.distributed import is_chief
from r1jax.models import hf_config, hf_names, transformer
from r1jax.models.config import DTYPES, ModelConfig
from r1jax.models.hf_config import HFCheckpointError

INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "vocab.json", "merges.txt", "added_tokens.json", "chat_template.jinja")


FP8 = {"F8_E4M3": np.dtype(jnp.float8_e4m3fn), "F8_E5M2": np.dtype(jnp.float8_e5m2)}
SCALE_SUFFIX = "_scale_inv"


def dequantize_fp8(weight: np.ndarray, scale_inv: np.ndarray, block=(128, 128)) -> np.ndarray:
  """float32 weight from an FP8 [out, in] tensor and its per-block scales [ceil(out/b0), ceil(in/b1)]."""
  rows, cols = weight.shape
  want = (-(-rows // block[0]), -(-cols // block[1]))
  if scale_inv.shape != want:
    raise HFCheckpointError(f"FP8 block scales have shape {scale_inv.shape}; a {weight.shape} weight "
                            f"in {tuple(block)} blocks needs {want}")
  scale = np.repeat(np.repeat(scale_inv.astype(np.float32), block[0], 0), block[1], 1)
  return weight.astype(np.float32) * scale[:rows, :cols]


class _Tensors:
  """Name -> file for the checkpoint's safetensors files, opened lazily, read one tensor at a time."""

  def __init__(self, root: pathlib.Path):
    self.root = root
    if (root / INDEX).exists():
      weight_map = json.loads((root / INDEX).read_text())["weight_map"]
      missing = sorted({f for f in weight_map.values() if not (root / f).exists()})
      if missing:
        raise FileNotFoundError(f"{root / INDEX} lists shard files that do not exist: {missing}")
      self.file_of = {name: root / f for name, f in weight_map.items()}
    else:
      files = sorted(root.glob("*.safetensors"))
      if not files:
        raise FileNotFoundError(f"no *.safetensors files (nor {INDEX}) in {root}")
      self.file_of = {}
      for f in files:
        with safe_open(f, framework="np") as handle:
          self.file_of.update(dict.fromkeys(handle.keys(), f))
    self._open: dict[pathlib.Path, Any] = {}

  def shape(self, name: str) -> tuple[int, ...]:
    return tuple(self._handle(name).get_slice(name).get_shape())

  def get(self, name: str, block=(128, 128)) -> np.ndarray:
    """The tensor as stored, or dequantised to float32 when it is FP8 with block scales."""
    if self._handle(name).get_slice(name).get_dtype() not in FP8:
      return self._handle(name).get_tensor(name)
    scale_name = name + SCALE_SUFFIX
    if scale_name not in self.file_of:
      raise HFCheckpointError(f"tensor {name!r} is FP8 but {scale_name!r} (its block scales) is missing")
    return dequantize_fp8(self._raw(name), self.get(scale_name), block)

  def _raw(self, name: str) -> np.ndarray:
    """An FP8 tensor read from the file's bytes (the numpy reader has no float8 types)."""
    f = self.file_of[name]
    with open(f, "rb") as handle:
      header_len = struct.unpack("<Q", handle.read(8))[0]
      info = json.loads(handle.read(header_len))[name]
      start, end = info["data_offsets"]
      handle.seek(8 + header_len + start)
      data = np.frombuffer(handle.read(end - start), np.uint8)
    return data.view(FP8[info["dtype"]]).reshape(info["shape"])

  def _handle(self, name):
    f = self.file_of[name]
    if f not in self._open:
      self._open[f] = safe_open(f, framework="np")
    return self._open[f]


def _read_config(root: pathlib.Path) -> dict[str, Any]:
  if not root.is_dir():
    raise FileNotFoundError(f"Hugging Face checkpoint directory not found: {root}")
  path = root / "config.json"
  if not path.exists():
    raise FileNotFoundError(f"{root} has no config.json (not a Hugging Face model directory)")
  return json.loads(path.read_text())


def _flat(names):
  return [names] if isinstance(names, str) else [n for x in names for n in _flat(x)]


def _check_tensors(cfg: ModelConfig, maps, tensors: _Tensors, root: pathlib.Path) -> None:
  """Every expected tensor is present with the shape the config implies; nothing is left over."""
  shapes = jax.eval_shape(lambda: transformer.init(cfg, jax.random.key(0)))
  expected = set()
  for m in maps:
    leaf = shapes
    for key in m.path:
      leaf = leaf[key]
    inner = leaf.shape[(m.layers is not None) + bool(m.experts):]
    hf_shape = jax.eval_shape(m.to_hf, jax.ShapeDtypeStruct(inner, jnp.float32)).shape
    for name in _flat(m.names()):
      expected.add(name)
      if name not in tensors.file_of:
        continue
      if tensors.shape(name) != hf_shape:
        raise HFCheckpointError(f"tensor {name!r} in {tensors.file_of[name]} has shape "
                                f"{tensors.shape(name)}; config.json implies {hf_shape}")
  missing = sorted(expected - tensors.file_of.keys())
  if missing:
    more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
    raise HFCheckpointError(f"missing tensors in {root}: {missing[:5]}{more}")
  ignorable = {"lm_head.weight"} if cfg.tie_embeddings else set()  # HF ignores it when tied too
  ignorable |= {name for name, _, _ in hf_names.mtp_shared_copies(cfg)}  # copies of main weights
  ignorable |= {name + SCALE_SUFFIX for name in expected}
  extra = sorted(n for n in tensors.file_of.keys() - expected - ignorable
                 if not n.endswith(hf_names.IGNORED_SUFFIXES))
  if extra:
    more = f" (and {len(extra) - 5} more)" if len(extra) > 5 else ""
    raise HFCheckpointError(f"tensors in {root} that r1jax's model has no place for "
                            f"(unsupported layout?): {extra[:5]}{more}")


def _get(tree: dict, path: tuple[str, ...]):
  for key in path:
    tree = tree[key]
  return tree


def _set(tree: dict, path: tuple[str, ...], value) -> None:
  for key in path[:-1]:
    tree = tree.setdefault(key, {})
  tree[path[-1]] = value


def _has_mtp_tensors(cfg: ModelConfig, tensors: _Tensors) -> bool:
  """Whether any tensor of DeepSeek-V3's MTP layers (HF layers num_layers...) is stored."""
  prefixes = tuple(hf_names.LAYER.format(layer=cfg.num_layers + i) for i in range(cfg.mtp_layers))
  return any(name.startswith(prefixes) for name in tensors.file_of)


def load_hf(path: str | os.PathLike, dtype: str | None = None) -> tuple[ModelConfig, dict]:
  """Reads a Hugging Face Qwen2 / Qwen2.5 / Qwen2-MoE / DeepSeek-V2 / V3 directory into
  (ModelConfig, params).

  `dtype` sets the parameter dtype ("float32", "bfloat16", "float16"); by default it is the
  checkpoint's stored dtype. The compute dtype is left at the ModelConfig default (float32);
  choose it with `dataclasses.replace(cfg, compute_dtype=...)`. Parameters are jax arrays on the
  default device; the MoE selection bias `router_bias` is zero (Qwen2-MoE, DeepSeek-V2). A
  DeepSeek-V3 checkpoint without its MTP tensors (as transformers saves one) loads with
  mtp_layers=0, and a log line says so; with some but not all of them it is refused.
  """
  root = pathlib.Path(path)
  hf = _read_config(root)
  cfg = hf_config.from_hf(hf, dtype=dtype, where=str(root / "config.json"))
  tensors = _Tensors(root)
  if cfg.mtp_layers and not _has_mtp_tensors(cfg, tensors):
    logging.warning("%s: config.json declares %d MTP layer(s) (num_nextn_predict_layers) but the "
                    "checkpoint holds no MTP tensors (transformers' save_pretrained drops them): "
                    "loading the main model with MTP off", root, cfg.mtp_layers)
    cfg = dataclasses.replace(cfg, mtp_layers=0)
  maps = hf_names.tensor_maps(cfg, hf_config.rope_interleaved(hf))
  _check_tensors(cfg, maps, tensors, root)
  np_dtype = np.dtype(cfg.weight_dtype)
  block = tuple((hf.get("quantization_config") or {}).get("weight_block_size") or (128, 128))

  def read(names, to_ours):
    if isinstance(names, str):
      return np.ascontiguousarray(to_ours(tensors.get(names, block)).astype(np_dtype))
    return np.stack([read(n, to_ours) for n in names])

  params: dict[str, Any] = {}
  for m in maps:
    _set(params, m.path, jnp.asarray(read(m.names(), m.to_ours)))
  if cfg.num_moe_layers and "router_bias" not in params["moe"]["moe"]:
    _set(params, ("moe", "moe", "router_bias"),
         jnp.zeros((cfg.num_moe_layers, cfg.moe.num_experts), np_dtype))
  return cfg, params


def _host(x) -> np.ndarray:
  """A whole parameter on this host, gathering it first when it spans several processes."""
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    x = multihost_utils.process_allgather(x, tiled=True)
  return np.asarray(x)


def _export_tree(cfg: ModelConfig, params: dict) -> tuple[ModelConfig, dict]:
  """Params in a form Qwen2 can hold: zero q/k/v biases are added when the model has none."""
  hf_config.check_exportable(cfg)
  if cfg.mla is not None and cfg.num_moe_layers and cfg.moe.gating == "sigmoid":
    return cfg, params  # DeepSeek-V3 stores the selection bias (e_score_correction_bias)
  if cfg.num_moe_layers:
    bias = _host(params["moe"]["moe"]["router_bias"])
    if np.any(bias != 0):
      name = "Qwen2-MoE" if cfg.mla is None else "DeepSeek-V2"
      raise HFCheckpointError(
          f"cannot export as {name}: moe.router_bias (aux-loss-free balance bias, used for "
          f"expert selection) is non-zero and {name} has no selection bias; train with "
          "moe.balance='none' (or sigmoid gating, exported as DeepSeek-V3) for exportable policies")
  if cfg.qkv_bias or cfg.mla is not None:
    return cfg, params
  params = jax.tree.map(lambda x: x, params)  # shallow copy of the dict structure
  for stack in transformer.STACKS:
    if stack in params:
      attn = params[stack]["attn"]
      for name, heads in (("q", cfg.num_heads), ("k", cfg.num_kv_heads), ("v", cfg.num_kv_heads)):
        attn[f"{name}_bias"] = np.zeros((attn[name].shape[0], heads, cfg.head_dim), np.float32)
  return dataclasses.replace(cfg, qkv_bias=True), params


def _write_shards(tensors, root: pathlib.Path, max_shard_bytes: int) -> None:
  """Writes (name, array) pairs in order, one shard at a time, starting a new shard when the next
  tensor would overflow; shards get their final `-of-N` names once N is known."""
  metadata = {"format": "pt"}  # transformers refuses safetensors files without it
  written: list[tuple[pathlib.Path, list[str]]] = []
  shard: dict[str, np.ndarray] = {}
  size = total = 0

  def flush():
    tmp = root / f".shard-{len(written):05d}.tmp"
    save_file(shard, tmp, metadata=metadata)
    written.append((tmp, list(shard)))

  for name, array in tensors:
    if shard and size + array.nbytes > max_shard_bytes:
      flush()
      shard, size = {}, 0
    shard[name] = array
    size += array.nbytes
    total += array.nbytes
  flush()
  if len(written) == 1:
    written[0][0].rename(root / SINGLE)
    return
  weight_map = {}
  for i, (tmp, names) in enumerate(written):
    fname = f"model-{i + 1:05d}-of-{len(written):05d}.safetensors"
    tmp.rename(root / fname)
    weight_map |= dict.fromkeys(names, fname)
  (root / INDEX).write_text(json.dumps({"metadata": {"total_size": total},
                                        "weight_map": dict(sorted(weight_map.items()))}, indent=2))


def save_hf(model_cfg: ModelConfig, params: dict, path: str | os.PathLike, *,
            dtype: str | None = None, max_shard_bytes: int = 5 * 2**30,
            bos_token_id: int | None = None, eos_token_id: int | list[int] | None = None,
            pad_token_id: int | None = None,
            tokenizer_from: str | os.PathLike | None = None) -> None:
  """Writes params as a Hugging Face Qwen2 / Qwen2-MoE / DeepSeek-V2 / V3 directory at `path`.

  `dtype` is the stored dtype (default: the config's param dtype). Files larger than
  `max_shard_bytes` in total are split into shards with an index. The token ids go into
  config.json and generation_config.json, which also sets `max_length` to the model's context
  (transformers' generate otherwise stops at 20 tokens). `tokenizer_from` copies the tokenizer
  files found in that directory, so the result can be served as it is. Every process must call
  this (parameters spread over hosts are gathered); only process 0 writes.
  """
  cfg, params = _export_tree(model_cfg, params)
  dtype = dtype or cfg.param_dtype
  check_choice("dtype", dtype, DTYPES)
  np_dtype = np.dtype(jnp.dtype(dtype))
  maps = hf_names.tensor_maps(cfg)
  leaves = {}
  for m in maps:
    leaf = params
    for key in m.path:
      leaf = leaf[key]
    leaves[m.path] = _host(leaf)
  if not is_chief():
    return
  root = pathlib.Path(path)
  root.mkdir(parents=True, exist_ok=True)

  def tensors():
    for m in maps:
      leaf = leaves[m.path]
      names = m.names()
      if isinstance(names, str):
        slices = [(names, leaf)]
      elif not m.experts:
        slices = zip(names, leaf)
      else:
        slices = [(n, x) for layer_names, layer in zip(names, leaf) for n, x in zip(layer_names, layer)]
      for name, x in slices:
        yield name, np.ascontiguousarray(m.to_hf(x).astype(np_dtype))
    for name, path, to_hf in hf_names.mtp_shared_copies(cfg):
      yield name, np.ascontiguousarray(to_hf(_host(_get(params, path))).astype(np_dtype))

  for stale in (SINGLE, INDEX, *(f.name for f in root.glob("model-*-of-*.safetensors"))):
    (root / stale).unlink(missing_ok=True)
  _write_shards(tensors(), root, max_shard_bytes)
  ids = {"bos_token_id": bos_token_id, "eos_token_id": eos_token_id, "pad_token_id": pad_token_id}
  hf = hf_config.to_hf(cfg, dtype=dtype, **ids)
  (root / "config.json").write_text(json.dumps(hf, indent=2) + "\n")
  generation = {k: v for k, v in ids.items() if v is not None} | {"max_length": cfg.max_seq_len}
  (root / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
  if tokenizer_from is not None:
    for name in TOKENIZER_FILES:
      if (pathlib.Path(tokenizer_from) / name).exists():
        shutil.copy(pathlib.Path(tokenizer_from) / name, root / name)
