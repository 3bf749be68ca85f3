"""DeepSeek-R1's multi-stage recipe: cold-start SFT -> RL stage 1 (+ language reward) ->
rejection sampling + SFT -> RL stage 2 (+ a preference reward model for its last N steps).

``python -m r1jax.main --config=experiments/r1_pipeline.py:<variant> --workdir=DIR`` runs the
stages in DIR/<stage>; a re-run skips finished ones. Any stage value can be overridden, e.g.
``--config.pipeline.stages.rl1.set.loop.steps=80``.

Variants:
  tiny    the shipped tiny base model on chained sums, CPU, about 15-20 minutes
  smoke   every stage for a step or two, for the tests (~2 minutes)
  paper   the paper's stage settings (R1_REFERENCE.md) on a Qwen2.5-32B-shaped base; point
          --config.base_model at a checkpoint directory (the paper used DeepSeek-V3-Base)
"""

import dataclasses

from ml_collections import config_dict

from r1jax.experiment import Experiment, sibling



r1_zero = sibling(__file__, "r1_zero")
PAPER_RL, scale, tiny = r1_zero.PAPER_RL, r1_zero.scale, r1_zero.tiny


def stages(*, cold_start_steps, cold_start_lr, rl1_steps, rl2_steps, preference_steps,
           sft_steps, sft_lr, rl_lr, k, rejection_problems, rm_steps, rm_lr, rl2_temperature,
           language_weight):
  """The four R1 stages plus the reward model they need, with the values that differ by stage."""
  sft = lambda steps, lr, data, evaluate: {
      "sft": {"steps": steps, "data": data, "evaluate": evaluate},
      "optim": {"lr": lr, "schedule": "cosine", "final_lr_fraction": 0.1, "total_steps": steps,
                "warmup_steps": max(1, steps // 20)}}
  rl = lambda steps, base: {"base_model": base, "loop": {"steps": steps},
                            "optim": {"lr": rl_lr, "total_steps": steps},
                            "rewards": {"language_weight": language_weight}}
  rl2 = rl(rl2_steps, "stage:sft")
  rl2.update(rollout={"temperature": rl2_temperature},
             preference={"model": "stage:reward_model", "weight": 1.0,
                         "start_step": max(0, rl2_steps - preference_steps)})
  return ("cold_start", "rl1", "rejection", "reward_model", "sft", "rl2"), {
      "cold_start": {"job": "sft", "set": sft(cold_start_steps, cold_start_lr, ("cold_start",),
                                              True)},
      "rl1": {"job": "rl", "set": rl(rl1_steps, "stage:cold_start")},
      "rejection": {"job": "rejection", "set": {
          "base_model": "stage:rl1",
          "rejection": {"num_samples": k, "num_problems": rejection_problems,
                        "require_format": True, "min_language": 0.9, "max_repetition": 0.3}}},
      "reward_model": {"job": "reward_model", "set": {
          "reward_model": {"steps": rm_steps},
          "optim": {"lr": rm_lr, "schedule": "constant", "total_steps": rm_steps}}},
      # R1 fine-tunes the *base* model on the rejection-sampled (plus other) data, then RL again.
      "sft": {"job": "sft", "set": sft(sft_steps, sft_lr, ("stage:rejection", "cold_start"), True)},
      "rl2": {"job": "rl", "set": rl2},
  }


def get_config(arg: str = "tiny") -> config_dict.ConfigDict:
  variant = arg or "tiny"
  c = config_dict.ConfigDict(dataclasses.asdict(Experiment()))
  c.job = "pipeline"
  if variant in ("tiny", "smoke"):
    tiny(c)
    c.sft.update(dict(batch_rows=8, row_len=384, log_every=10, save_every=50))
    c.rejection.prompts_per_batch = 8
    c.reward_model.update(dict(num_pairs=384, batch_pairs=16, max_len=384))
    if variant == "tiny":
      c.pipeline.order, c.pipeline.stages = stages(
          cold_start_steps=100, cold_start_lr=1e-4, rl1_steps=40, rl2_steps=40,
          preference_steps=10, sft_steps=100, sft_lr=1e-4, rl_lr=2e-4, k=8,
          rejection_problems=120, rm_steps=60, rm_lr=1e-4, rl2_temperature=0.7,
          language_weight=0.1)
    else:
      c.data.procedural_sizes = (60, 8, 8)
      c.data.questions_per_step = 2
      c.rl.num_minibatches = 1            # one optimizer step per rollout keeps step counts exact
      c.rollout.num_samples = c.rl.num_generations = 4
      c.rollout.max_new_tokens = 40
      c.rollout.prompts_per_chunk = 2
      c.loop.eval_every = 0
      c.eval.update(dict(num_problems=4, num_samples=2, pass_at=(1, 2)))
      c.rejection.update(dict(prompts_per_batch=8))
      c.reward_model.update(dict(num_pairs=48, batch_pairs=8, log_every=5))
      c.pipeline.order, c.pipeline.stages = stages(
          cold_start_steps=4, cold_start_lr=1e-4, rl1_steps=2, rl2_steps=2, preference_steps=1,
          sft_steps=4, sft_lr=1e-4, rl_lr=2e-4, k=4, rejection_problems=8, rm_steps=10,
          rm_lr=1e-4, rl2_temperature=0.7, language_weight=0.1)
      for name in ("cold_start", "sft"):  # the RL stages' evals already show each hand-over
        c.pipeline.stages[name]["set"]["sft"]["evaluate"] = False
  elif variant == "paper":
    scale(c, "qwen2.5-32b", paper=False)
    c.job = "pipeline"
    c.rl.update(PAPER_RL)
    c.rl.eps_low = c.rl.eps_high = 10.0           # R1 stage-1 clip ratio
    c.sft.update(dict(batch_rows=128, row_len=32_768, save_every=1000))
    c.rejection.update(dict(num_samples=16, prompts_per_batch=512))
    c.reward_model.update(dict(batch_pairs=256, max_len=8192))
    c.pipeline.order, c.pipeline.stages = stages(
        cold_start_steps=500, cold_start_lr=5e-5, rl1_steps=10_400, rl2_steps=1_700,
        preference_steps=400, sft_steps=2 * 804_745 // 128, sft_lr=5e-5, rl_lr=3e-6, k=16,
        rejection_problems=0, rm_steps=2_000, rm_lr=1e-5, rl2_temperature=0.7,
        language_weight=0.1)
  else:
    raise ValueError(f"unknown variant {variant!r}; known: tiny, smoke, paper")
  return c
