"""Learner throughput on CPU: one GRPO minibatch step in r1jax against the same step in PyTorch.

One step is forward + backward + clipped AdamW update of a minibatch of Bp prompts x G sampled
completions, with the R1 loss: clipped ratio to pi_old, k3 KL to pi_ref, sequence-mean of token
means. The peer is that step written plainly in PyTorch on Hugging Face `transformers`' Qwen2 (the
same weights, exported by `save_hf`, and the same batch). Before timing, both sides' loss and
gradient norm on the first step are printed and must agree, so the two time the same computation.
r1jax runs each prompt once per group (its completions read the prompt's cache); the peer runs
the prompt with every completion, as a plain implementation does; tokens/s counts completion
tokens, the same work for both.

Set-up and run from the repository root:
  make bench-venv
  .venv-bench/bin/python -m benchmarks.learner [--shapes demo,100m] [--repeats 5]
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import machine
from r1jax.mesh import MeshConfig, make_mesh
from r1jax.models import ModelConfig, init, save_hf
from r1jax.models.presets import PRESETS
from r1jax.rl.batch import LearnerBatch
from r1jax.rl.config import GRPOConfig, OptimConfig
from r1jax.rl.step import init_train_state, make_train_step


@dataclasses.dataclass(frozen=True)
class Shape:
  model: ModelConfig
  prompts: int       # Bp of one minibatch
  group: int         # G
  prompt_len: int
  completion_len: int


SHAPES = {
    # The demo's minibatch: 8 questions x 16 outputs per step, 2 minibatches; its base model.
    "demo": Shape(ModelConfig(vocab_size=440, dim=128, num_layers=4, num_heads=4, num_kv_heads=2,
                              head_dim=32, ffn_dim=384, qkv_bias=True, max_seq_len=512),
                  prompts=4, group=16, prompt_len=112, completion_len=256),
    "100m": Shape(ModelConfig(**PRESETS["qwen2-100m"]), prompts=2, group=8, prompt_len=64,
                  completion_len=128),
}
GRPO = GRPOConfig(num_generations=0, num_minibatches=1, eps_low=0.2, eps_high=0.2, kl_coef=0.001)
OPTIM = OptimConfig(lr=1e-5, weight_decay=0.01, grad_clip=1.0)
TEMPERATURE = 1.0


def make_batch(shape: Shape) -> LearnerBatch:
  """A full-length batch (no padding, every completion ends at the budget) with spread rewards."""
  rng = np.random.default_rng(0)
  n, t, v = shape.prompts * shape.group, shape.completion_len, shape.model.vocab_size
  old = -rng.uniform(0.5, 6.0, (n, t)).astype(np.float32)
  return LearnerBatch(
      prompt_tokens=rng.integers(1, v, (shape.prompts, shape.prompt_len), dtype=np.int32),
      prompt_mask=np.ones((shape.prompts, shape.prompt_len), bool),
      completion_tokens=rng.integers(1, v, (n, t), dtype=np.int32),
      completion_mask=np.ones((n, t), bool),
      old_logprobs=old, ref_logprobs=old + rng.normal(0, 0.1, (n, t)).astype(np.float32),
      truncated=np.zeros(n, bool),
      advantages=rng.standard_normal(n).astype(np.float32))


def useful_flops(shape: Shape) -> float:
  """Forward + backward matmul FLOPs (6 per weight per token, lm head included) over the prompt
  once per group and every completion token, plus causal attention; the same count for both."""
  cfg = shape.model
  q, kv = cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim
  weights = cfg.num_layers * (cfg.dim * (2 * q + 2 * kv) + 3 * cfg.dim * cfg.ffn_dim) \
      + cfg.dim * cfg.vocab_size
  p, t, n = shape.prompt_len, shape.completion_len, shape.prompts * shape.group
  tokens = shape.prompts * p + n * t
  attention = 3 * 4 * cfg.num_layers * q * (shape.prompts * p * p / 2 + n * t * (p + t / 2))
  return 6 * weights * tokens + attention


class R1jaxStep:
  def __init__(self, shape: Shape, params):
    grpo = dataclasses.replace(GRPO, num_generations=shape.group)
    mesh = make_mesh(MeshConfig(ici=(1, 1, 1, 1)), devices=jax.devices()[:1])
    self.step = make_train_step(shape.model, grpo, OPTIM, mesh, temperature=TEMPERATURE)
    self.state = init_train_state(shape.model, OPTIM, params, mesh)
    self.batch = jax.tree.map(jnp.asarray, make_batch(shape))

  def __call__(self) -> dict[str, float]:
    self.state, metrics = self.step(self.state, self.batch)
    return {k: float(metrics[k]) for k in ("loss", "grad_norm")}


class TorchStep:
  """The same step, plainly: each row is prompt + completion through the HF model."""

  def __init__(self, torch, shape: Shape, params):
    import transformers
    self.torch, self.shape = torch, shape
    with tempfile.TemporaryDirectory() as path:
      save_hf(shape.model, params, path)
      self.model = transformers.AutoModelForCausalLM.from_pretrained(
          path, dtype=torch.float32).train()
    self.opt = torch.optim.AdamW(self.model.parameters(), lr=OPTIM.lr, betas=(OPTIM.b1, OPTIM.b2),
                                 eps=OPTIM.eps, weight_decay=OPTIM.weight_decay)
    b = make_batch(shape)
    prompts = np.repeat(b.prompt_tokens, shape.group, axis=0)
    self.ids = torch.from_numpy(np.concatenate([prompts, b.completion_tokens], 1).astype(np.int64))
    self.targets = torch.from_numpy(b.completion_tokens.astype(np.int64))
    self.old, self.ref = torch.from_numpy(b.old_logprobs), torch.from_numpy(b.ref_logprobs)
    self.adv = torch.from_numpy(b.advantages)[:, None]

  def loss(self):
    torch, p = self.torch, self.shape.prompt_len
    logits = self.model(self.ids).logits[:, p - 1:-1].float() / TEMPERATURE
    logp = torch.log_softmax(logits, -1).gather(-1, self.targets[..., None])[..., 0]
    ratio = torch.exp(logp - self.old)
    surrogate = torch.minimum(ratio * self.adv,
                              torch.clamp(ratio, 1 - GRPO.eps_low, 1 + GRPO.eps_high) * self.adv)
    log_ref_ratio = self.ref - logp
    k3 = torch.exp(log_ref_ratio) - log_ref_ratio - 1
    per_token = -surrogate + GRPO.kl_coef * k3
    return per_token.mean(dim=1).mean()   # no padding: token mean per sequence, then over them

  def __call__(self) -> dict[str, float]:
    self.opt.zero_grad(set_to_none=True)
    loss = self.loss()
    loss.backward()
    norm = self.torch.nn.utils.clip_grad_norm_(self.model.parameters(), OPTIM.grad_clip)
    self.opt.step()
    return {"loss": float(loss.detach()), "grad_norm": float(norm)}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--shapes", default="demo,100m", help="comma-separated: " + ",".join(SHAPES))
  machine.add_flags(parser)
  args = parser.parse_args()
  try:
    import torch
  except ImportError:
    raise SystemExit("torch/transformers are not installed in this interpreter: run "
                     "`make bench-venv`, then .venv-bench/bin/python -m benchmarks.learner") from None
  with machine.Session(args, torch) as session:
    peaks = machine.matmul_flops_per_s(args.repeats, torch)
    peak = max(peaks.values())
    print("matmul 2048^3 GFLOP/s: " + ", ".join(f"{k} {v / 1e9:.0f}" for k, v in peaks.items()))
    for name in args.shapes.split(","):
      shape = SHAPES[name]
      params = jax.device_get(init(shape.model, jax.random.key(0)))
      ours, theirs = R1jaxStep(shape, params), TorchStep(torch, shape, params)
      first_ours, first_theirs = ours(), theirs()
      print(f"[{name}] first step: loss {first_ours['loss']:.6f} vs {first_theirs['loss']:.6f}, "
            f"grad norm {first_ours['grad_norm']:.6f} vs {first_theirs['grad_norm']:.6f}")
      if not np.allclose([first_ours["loss"], first_ours["grad_norm"]],
                         [first_theirs["loss"], first_theirs["grad_norm"]], rtol=1e-3, atol=1e-5):
        raise SystemExit(f"[{name}] the two steps disagree; not timing different computations")
      work = shape.prompts * shape.group * shape.completion_len
      flops = useful_flops(shape)
      t_ours = machine.timings(ours, args.repeats)
      t_theirs = machine.timings(theirs, args.repeats)
      mark = session.mark()
      print(f"[{name}: Bp={shape.prompts} G={shape.group} P={shape.prompt_len} "
            f"T={shape.completion_len}] completion tokens/s median (range): r1jax "
            f"{t_ours.rate(work)} ({flops / t_ours.median / peak:.0%} of matmul peak), PyTorch "
            f"{t_theirs.rate(work)} ({flops / t_theirs.median / peak:.0%}); r1jax / PyTorch = "
            f"{machine.ratio(t_ours, t_theirs)}{mark}", flush=True)


if __name__ == "__main__":
  main()
