"""The paper's distillation ablation: RL directly on a small base vs SFT of that base on a stronger
teacher's rejection-sampled traces (R1: Qwen2.5-32B-Zero lost to R1-Distill-Qwen-32B).

``python -m r1jax.main --config=experiments/ablation_distill_vs_rl.py:<variant> --workdir=DIR``
runs the stages below as a pipeline and writes DIR/report.md (the table in the paper's layout:
pass@1 and cons@k per task, here per difficulty level) and DIR/distill_vs_rl.png.

Variants:
  tiny       the teacher is the shipped demo model after the demo's RL recipe (made here), the
             student a smaller base pretrained here with the base_model job; each student arm
             (RL, distillation, and the base's own evaluation) runs with 3 seeds
  qwen-1.5b, qwen-7b, qwen-14b, qwen-32b, llama-8b, llama-70b
             the real scale: the teacher is DeepSeek-R1 (--config.pipeline.stages.
             teacher_rejection.set.base_model=DIR), the student the named base
             (--config.base_model=DIR); distillation with the paper's learning rates, 2 epochs of
             800K samples, cosine to 1/10, 32,768 context, batch 64. The student-RL arm is the
             R1-Zero recipe (experiments/r1_zero.py:30b) on the same base.
"""

import dataclasses

from ml_collections import config_dict

from r1jax.experiment import Experiment, sibling

# R1_REFERENCE.md, "Distillation" (recalled values): initial learning rate per student.
DISTILL_LR = {"qwen-1.5b": 1e-4, "qwen-7b": 8e-5, "qwen-14b": 7e-5, "qwen-32b": 6e-5,
              "llama-8b": 5e-5, "llama-70b": 2e-5}
PRESET = {"qwen-1.5b": "qwen2.5-1.5b", "qwen-7b": "qwen2.5-7b", "qwen-32b": "qwen2.5-32b"}
DISTILL_SAMPLES, DISTILL_EPOCHS, DISTILL_BATCH = 800_000, 2, 64



r1_zero = sibling(__file__, "r1_zero")
SEEDS = (0, 1, 2)   # each student arm is repeated; the report shows mean ± sd (<arm>_s<seed>)

# A student well below the demo model (128 wide, 4 layers) that the base_model job can make fast.
TINY_STUDENT = dict(model=dict(vocab_size=512, dim=64, num_layers=2, num_heads=4, num_kv_heads=2,
                               head_dim=16, ffn_dim=192, max_seq_len=512),
                    corpus=dict(num_problems=8000, vocab_size=512),
                    sft=dict(steps=600, batch_rows=8, row_len=256, log_every=50, save_every=600),
                    optim=dict(lr=2e-3, warmup_steps=20, schedule="cosine", final_lr_fraction=0.1,
                               total_steps=600, weight_decay=0.01))


def _rl(base, steps, lr, seed=0):
  return {"job": "rl", "set": {"base_model": base, "loop": {"steps": steps, "seed": seed},
                               "optim": {"lr": lr, "total_steps": steps}}}


def _sft(base, data, steps, lr, seed=0, **sft):
  return {"job": "sft", "set": {
      "base_model": base, "sft": {"steps": steps, "data": data, "seed": seed, **sft},
      "optim": {"lr": lr, "schedule": "cosine", "final_lr_fraction": 0.1, "total_steps": steps,
                "warmup_steps": max(1, steps // 20)}}}


def _eval(base, seed=0):
  return {"job": "evaluate", "set": {"base_model": base, "loop": {"seed": seed}}}


def tiny(c: config_dict.ConfigDict) -> None:
  r1_zero.tiny(c)
  c.rollout.update(dict(max_new_tokens=256, prompts_per_chunk=8))
  c.rl.num_generations = 8
  c.loop.update(dict(eval_every=0, save_every=10))
  c.eval.update(dict(num_problems=32, num_samples=8, pass_at=(1, 8)))
  c.rejection.update(dict(num_samples=8, num_problems=160, prompts_per_batch=8,
                          require_format=True, max_repetition=0.3))
  c.sft.update(dict(batch_rows=8, row_len=256, log_every=20, save_every=100))
  steps = 20  # RL optimizer steps on the student; the distillation arm gets a similar wall time
  stages = {
      # The teacher is the demo base after the R1-Zero recipe (the paper's teacher was R1).
      "teacher_rl": _rl("builtin:demo", steps, 2e-4),
      "teacher_rejection": {"job": "rejection", "set": {"base_model": "stage:teacher_rl"}},
      "student_base": {"job": "base_model", "set": TINY_STUDENT},
      "eval_teacher_rl": _eval("stage:teacher_rl"),
  }
  for seed in SEEDS:
    stages.update({
        f"student_rl_s{seed}": _rl("stage:student_base", steps, 2e-4, seed),
        f"student_distill_s{seed}": _sft("stage:student_base", ("stage:teacher_rejection",), 120,
                                         1e-3, seed),
        f"eval_student_base_s{seed}": _eval("stage:student_base", seed),
        f"eval_student_rl_s{seed}": _eval(f"stage:student_rl_s{seed}", seed),
        f"eval_student_distill_s{seed}": _eval(f"stage:student_distill_s{seed}", seed)})
  c.pipeline.stages = stages
  c.pipeline.order = tuple(stages)


def real(c: config_dict.ConfigDict, student: str) -> None:
  r1_zero.scale(c, PRESET.get(student, "qwen2.5-32b"), paper=False)
  c.base_model = f"/path/to/{student}"         # the student base; override on the command line
  c.rejection.update(dict(num_samples=4, prompts_per_batch=512, require_format=True,
                          min_language=0.95, max_repetition=0.3, max_per_prompt=1))
  c.sft.update(dict(batch_rows=DISTILL_BATCH, row_len=32_768, save_every=1000))
  sft_steps = DISTILL_EPOCHS * DISTILL_SAMPLES // DISTILL_BATCH   # an upper bound: packing helps
  c.pipeline.order = ("teacher_rejection", "student_rl", "student_distill", "eval_student_base",
                      "eval_student_rl", "eval_student_distill")
  c.pipeline.stages = {
      "teacher_rejection": {"job": "rejection", "set": {"base_model": "/path/to/DeepSeek-R1"}},
      "student_rl": _rl(c.base_model, 10_400, 3e-6),
      "student_distill": _sft(c.base_model, ("stage:teacher_rejection",), sft_steps,
                              DISTILL_LR[student]),
      "eval_student_base": _eval(c.base_model),
      "eval_student_rl": _eval("stage:student_rl"),
      "eval_student_distill": _eval("stage:student_distill"),
  }


def get_config(arg: str = "tiny") -> config_dict.ConfigDict:
  variant = arg or "tiny"
  c = config_dict.ConfigDict(dataclasses.asdict(Experiment()))
  if variant == "tiny":
    tiny(c)
  elif variant in DISTILL_LR:
    real(c, variant)
  else:
    raise ValueError(f"unknown variant {variant!r}; known: tiny, {', '.join(DISTILL_LR)}")
  c.job = "pipeline"
  c.pipeline.report = "distill_vs_rl"
  return c
