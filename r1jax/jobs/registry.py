"""The one list of jobs: what each runs, whether it can be a pipeline stage, what it hands on.

`r1jax.experiment` validates `job` and every stage's job against this list, the `pipeline` job
dispatches its stages through it, and :func:`run` (behind ``r1jax.main``) runs the experiment's
job. A job returns a summary dict, written to ``<workdir>/summary.json``.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable
from typing import Any

from absl import logging

from r1jax.jobs import base_model, evaluate, rejection, reward_model, sft, stages
from r1jax.metrics import SUMMARY_FILE, write_json
from r1jax.policy import EXPORT
from r1jax.train import train_and_evaluate


@dataclasses.dataclass(frozen=True)
class Job:
  name: str
  run: Callable[[Any, str], dict[str, Any]]             # (experiment, workdir) -> summary
  hands_on: str | None = EXPORT    # what a stage gives later stages, under its workdir
  stage: bool = True               # may be a stage of a pipeline
  run_stage: Callable[[Any, str], dict[str, Any]] | None = None   # as a stage, if not `run`

  def execute(self, exp, workdir: str, *, as_stage: bool = False) -> dict[str, Any]:
    """Runs the job in `workdir` and writes its summary there."""
    os.makedirs(workdir, exist_ok=True)
    summary = (self.run_stage if as_stage and self.run_stage else self.run)(exp, workdir)
    write_json(os.path.join(workdir, SUMMARY_FILE), summary)
    return summary


def _pipeline(exp, workdir: str) -> dict[str, Any]:
  return stages.run(exp, workdir, {job.name: job for job in JOBS if job.stage})


JOBS: tuple[Job, ...] = (
    # As a stage, RL also exports its final policy for the stages after it.
    Job("rl", train_and_evaluate, run_stage=functools.partial(train_and_evaluate, export=True)),
    Job("base_model", base_model.run),
    Job("sft", sft.run),
    Job("rejection", rejection.run, hands_on=rejection.TRACES),
    Job("reward_model", reward_model.run),
    Job("evaluate", evaluate.run, hands_on=None),
    Job("pipeline", _pipeline, hands_on=None, stage=False),
)
JOB_NAMES = tuple(job.name for job in JOBS)
STAGE_JOB_NAMES = tuple(job.name for job in JOBS if job.stage)


def run(exp, workdir: str) -> dict[str, Any]:
  """Runs the experiment's job in `workdir`; returns its summary."""
  summary = next(job for job in JOBS if job.name == exp.job).execute(exp, workdir)
  logging.info("summary: %s", summary)
  return summary
