"""RoPE context-extension scalings of Hugging Face checkpoints, exact against transformers'
`ROPE_INIT_FUNCTIONS` (linear, dynamic, yarn, llama3, longrope).

A scaling changes the inverse frequency of each rotary pair and, for some kinds, multiplies cos
and sin by an attention factor:

  linear    frequencies / factor (positions interpolated by the factor);
  dynamic   NTK-aware: once a forward's longest position passes the model's max_seq_len the base
            grows with that length (transformers recomputes it per forward the same way; a decode
            step's new keys use the base of their own length, earlier cached keys keep theirs);
  yarn      each pair blends its original and interpolated frequency by a ramp between beta_fast
            and beta_slow rotations over the original context, and cos/sin are scaled by the
            attention factor; MLA (DeepSeek) also scales its softmax by mscale(factor,
            mscale_all_dim)^2 (:func:`softmax_factor`);
  llama3    long wavelengths / factor, short ones kept, a smooth blend between;
  longrope  per-pair factors: `long_factor` once a forward's longest position passes the original
            context, else `short_factor`; cos/sin scaled by the attention factor.

:class:`RopeScaling` is the `model.rope_scaling` config section; :class:`Rope` bundles it with the
base and the model's context for the rotary embedding (`layers.rope`).
"""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp

from r1jax.config import ConfigError, check_choice, check_range

KINDS = ("default", "linear", "dynamic", "yarn", "llama3", "longrope")
# Kinds whose frequencies depend on the original (pretraining) context length.
NEEDS_ORIGINAL = ("yarn", "llama3", "longrope")


@dataclasses.dataclass(frozen=True)
class RopeScaling:
  """HF `rope_scaling`; the fields a kind does not use are ignored."""
  kind: str = "default"
  factor: float = 1.0
  original_max_len: int = 0        # original_max_position_embeddings (yarn, llama3, longrope)
  attention_factor: float = 0.0    # cos/sin scale of yarn / longrope; 0 = derived from the factor
  beta_fast: float = 32.0          # yarn: rotations where frequencies stay original ...
  beta_slow: float = 1.0           # ... and where they are fully interpolated
  mscale: float = 0.0              # yarn: attention factor mscale(factor, mscale) /
  mscale_all_dim: float = 0.0      #   mscale(factor, mscale_all_dim); MLA softmax scale
  truncate: bool = True            # yarn: round the ramp's ends to whole dims
  low_freq_factor: float = 1.0     # llama3
  high_freq_factor: float = 4.0
  short_factor: tuple[float, ...] = ()   # longrope, one per rotary pair
  long_factor: tuple[float, ...] = ()

  def validate(self):
    check_choice("kind", self.kind, KINDS)
    if self.kind == "default":
      return
    check_range("factor", self.factor, 0.0, low_open=True)
    if self.kind in NEEDS_ORIGINAL:
      if self.original_max_len < 1:
        raise ConfigError("original_max_len", f"got {self.original_max_len}; {self.kind!r} needs "
                          "the pretraining context length (original_max_position_embeddings)")
    check_range("attention_factor", self.attention_factor, 0.0)
    if self.kind == "yarn":
      check_range("beta_slow", self.beta_slow, 0.0, low_open=True)
      check_range("beta_fast", self.beta_fast, self.beta_slow)
    if self.kind == "llama3":
      check_range("low_freq_factor", self.low_freq_factor, 0.0, low_open=True)
      check_range("high_freq_factor", self.high_freq_factor, self.low_freq_factor, low_open=True)

  def validate_dim(self, rope_dim: int) -> None:
    """Checks that depend on the rotary dimension (head_dim, or MLA's qk_rope_head_dim)."""
    if self.kind == "longrope":
      for key in ("short_factor", "long_factor"):
        if len(getattr(self, key)) != rope_dim // 2:
          raise ConfigError(key, f"got {len(getattr(self, key))} values; longrope needs one per "
                            f"rotary pair ({rope_dim // 2} for a rotary dim of {rope_dim})")
    if self.kind == "dynamic" and rope_dim < 4:
      raise ConfigError("kind", f"'dynamic' needs a rotary dim of at least 4, got {rope_dim}")


@dataclasses.dataclass(frozen=True)
class Rope:
  """Everything a rotary embedding reads: the base, the scaling and the model's context."""
  theta: float
  scaling: RopeScaling = RopeScaling()
  max_len: int = 0                 # the model's max_seq_len: where dynamic NTK starts


def mscale(factor: float, scale: float = 1.0) -> float:
  """YaRN's magnitude correction 0.1 * scale * ln(factor) + 1 (1 without extension)."""
  return 1.0 if factor <= 1 else 0.1 * scale * math.log(factor) + 1.0


def _yarn(s: RopeScaling, theta: float, dim: int):
  def correction_dim(rotations):   # the pair index that turns `rotations` times over the context
    return dim * math.log(s.original_max_len / (rotations * 2 * math.pi)) / (2 * math.log(theta))
  low, high = correction_dim(s.beta_fast), correction_dim(s.beta_slow)
  if s.truncate:
    low, high = math.floor(low), math.ceil(high)
  low, high = max(low, 0), min(high, dim - 1)
  if low == high:
    high += 0.001    # a zero-width ramp would divide by zero
  # 0: the pair keeps its frequency (it turns often over the context), 1: interpolated by factor.
  ramp = jnp.clip((jnp.arange(dim // 2, dtype=jnp.float32) - low) / (high - low), 0, 1)
  original = 1.0 / theta ** (jnp.arange(0, dim, 2, dtype=jnp.float32) / dim)
  inv_freq = original * (1 - ramp) + original / s.factor * ramp
  if s.attention_factor:
    factor = s.attention_factor
  elif s.mscale and s.mscale_all_dim:
    factor = mscale(s.factor, s.mscale) / mscale(s.factor, s.mscale_all_dim)
  else:
    factor = mscale(s.factor)
  return inv_freq, factor


def _llama3(s: RopeScaling, inv_freq):
  low_wavelen = s.original_max_len / s.low_freq_factor
  high_wavelen = s.original_max_len / s.high_freq_factor
  wavelen = 2 * math.pi / inv_freq
  scaled = jnp.where(wavelen > low_wavelen, inv_freq / s.factor, inv_freq)
  band = s.high_freq_factor - s.low_freq_factor
  smooth = (s.original_max_len / wavelen - s.low_freq_factor) / band
  blended = (1 - smooth) * scaled / s.factor + smooth * scaled
  medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
  return jnp.where(medium, blended, scaled)


def frequencies(rope: Rope | float, dim: int, positions):
  """(inverse frequencies float32 [dim // 2], cos/sin factor) for rotary dim `dim`; `rope` is a
  :class:`Rope` or a bare base (plain RoPE). `positions` [B, T]: the forward's positions, which the
  length-dependent kinds (dynamic, longrope) read."""
  if not isinstance(rope, Rope):
    rope = Rope(float(rope))
  s, theta = rope.scaling, rope.theta
  exponent = jnp.arange(0, dim, 2, dtype=jnp.float32) / dim
  inv_freq = 1.0 / theta ** exponent
  if s.kind == "default":
    return inv_freq, 1.0
  if s.kind == "linear":
    return inv_freq / s.factor, 1.0
  if s.kind == "dynamic":
    length = jnp.maximum(jnp.max(positions) + 1, rope.max_len).astype(jnp.float32)
    base = theta * (s.factor * length / rope.max_len - (s.factor - 1)) ** (dim / (dim - 2))
    return 1.0 / base ** exponent, 1.0
  if s.kind == "yarn":
    return _yarn(s, theta, dim)
  if s.kind == "llama3":
    return _llama3(s, inv_freq), 1.0
  if s.kind == "longrope":
    long = jnp.max(positions) + 1 > s.original_max_len
    ext = jnp.where(long, jnp.asarray(s.long_factor, jnp.float32),
                    jnp.asarray(s.short_factor, jnp.float32))
    factor = s.attention_factor or (
        1.0 if s.factor <= 1 else math.sqrt(1 + math.log(s.factor) / math.log(s.original_max_len)))
    return inv_freq / ext, factor
  raise ValueError(f"unknown RoPE scaling kind {s.kind!r}; known: {', '.join(KINDS)}")


def softmax_factor(rope: Rope | float) -> float:
  """The extra attention-score scale of MLA (DeepSeek) under a scaled RoPE: mscale(factor,
  mscale_all_dim)^2 when mscale_all_dim is set, else 1."""
  if (not isinstance(rope, Rope) or rope.scaling.kind == "default"
      or not rope.scaling.mscale_all_dim):
    return 1.0
  return mscale(rope.scaling.factor, rope.scaling.mscale_all_dim) ** 2
