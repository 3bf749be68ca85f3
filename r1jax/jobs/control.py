"""The `control` job: the learning-rate-0 control of an RL run, computed without training it.

With lr = 0 the policy never moves, so the control's curve is the base model evaluated at the
steps the RL loop evaluates at, with the same evaluation keys and the same sampling schedule.
This job computes exactly that, skipping the rollouts and updates that cannot change anything
(tests/jobs/test_control.py checks it against a real lr-0 run). It writes what an RL run's
evaluation writes (`eval.jsonl`, the summary), so the report reads it as a control run.
"""

from __future__ import annotations

import time
from typing import Any

from r1jax.config import ConfigError
from r1jax.train import Trainer, period_due


def evaluation_steps(steps: int, eval_every: int, steps_per_rollout: int) -> list[int]:
  """The optimizer steps after which the RL loop evaluates: 0, each `eval_every` boundary a
  rollout crosses, and the last step."""
  done, step = [0], 0
  while step < steps:
    before, step = step, min(step + steps_per_rollout, steps)
    if period_due(eval_every, before, step) or step >= steps:
      done.append(step)
  return done


def run(exp, workdir: str) -> dict[str, Any]:
  if exp.rl.dynamic_sampling:
    # Dropped groups change how many steps a rollout takes, so the evaluation steps would
    # depend on the rollouts this job skips.
    raise ConfigError("rl.dynamic_sampling", "the control job needs it false (got true): "
                      "without it every rollout takes the same number of optimizer steps")
  trainer = Trainer(exp, workdir)
  try:
    start = time.perf_counter()
    evaluated = {e["step"] for e in trainer.evals}
    for step in evaluation_steps(exp.loop.steps, exp.loop.eval_every,
                                 exp.rl.num_minibatches * exp.rl.inner_epochs):
      if step not in evaluated:
        trainer.step = step
        trainer.evaluate()
    trainer.wall_time_s += time.perf_counter() - start
    return trainer.summary()
  finally:
    trainer.close()
