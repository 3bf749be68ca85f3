"""The paper's scale ablation in shape: the same RL recipe on bases of several sizes. R1 saw no
clear RL gain on 7B dense and 16B MoE bases; gains appeared from about 30B up.

``python -m r1jax.main --config=experiments/ablation_scale.py:<variant> --workdir=DIR`` writes
DIR/report.md (base pass@1 and cons@k, after RL, and the gain, per base) and DIR/scale.png.

Variants:
  tiny    two bases pretrained here with the base_model job (smaller than the demo model) plus
          the shipped demo model, each given the same short GRPO run with 3 seeds
  paper   Qwen2.5-7B, DeepSeekMoE-16B and Qwen2.5-32B bases with the R1-Zero recipe
          (experiments/r1_zero.py:7b / 16b_moe / 30b); --config.pipeline.stages.rl_<size>.set.
          base_model=DIR points each at its checkpoint
"""

import dataclasses

from ml_collections import config_dict

from r1jax.experiment import Experiment, sibling



r1_zero = sibling(__file__, "r1_zero")
SEEDS = (0, 1, 2)   # each RL arm is repeated; the report shows mean ± sd (stages <arm>_s<seed>)


def _base(dim, layers, steps):
  """A base_model stage: a decoder `dim` wide and `layers` deep pretrained for `steps` steps."""
  return {"job": "base_model", "set": {
      "model": dict(vocab_size=512, dim=dim, num_layers=layers, num_heads=4, num_kv_heads=2,
                    head_dim=dim // 4, ffn_dim=3 * dim, max_seq_len=512),
      "corpus": dict(num_problems=4000, vocab_size=512),
      "sft": dict(steps=steps, batch_rows=8, row_len=256, log_every=50, save_every=steps),
      "optim": dict(lr=2e-3, warmup_steps=20, schedule="cosine", final_lr_fraction=0.1,
                    total_steps=steps, weight_decay=0.01)}}


def _rl(base, steps, lr, seed=0):
  return {"job": "rl", "set": {"base_model": base, "loop": {"steps": steps, "seed": seed},
                               "optim": {"lr": lr, "total_steps": steps}}}


def get_config(arg: str = "tiny") -> config_dict.ConfigDict:
  variant = arg or "tiny"
  c = config_dict.ConfigDict(dataclasses.asdict(Experiment()))
  if variant == "tiny":
    r1_zero.tiny(c)
    c.rollout.update(dict(max_new_tokens=256, prompts_per_chunk=8))
    c.rl.num_generations = 8
    c.loop.update(dict(eval_every=0, save_every=10))
    c.eval.update(dict(num_problems=32, num_samples=8, pass_at=(1, 8)))
    steps = 15
    bases = {"xs": "stage:base_xs", "s": "stage:base_s", "demo": "builtin:demo"}
    stages = {"base_xs": _base(32, 1, 300), "base_s": _base(64, 2, 600)}
    stages.update({f"rl_{size}_s{seed}": _rl(base, steps, 2e-4, seed)
                   for size, base in bases.items() for seed in SEEDS})
    c.pipeline.stages = stages
    c.pipeline.order = tuple(stages)
  elif variant == "paper":
    r1_zero.scale(c, "qwen2.5-32b", paper=False)
    sizes = ("7b", "16b_moe", "30b")
    c.pipeline.order = tuple(f"rl_{s}" for s in sizes)
    c.pipeline.stages = {f"rl_{s}": _rl(f"/path/to/{r1_zero.SCALE_VARIANTS[s]}", 10_400, 3e-6)
                         for s in sizes}
  else:
    raise ValueError(f"unknown variant {variant!r}; known: tiny, paper")
  c.job = "pipeline"
  c.pipeline.report = "scale"
  return c
