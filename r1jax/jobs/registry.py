"""The one list of jobs: what each runs, whether it can be a pipeline stage, what it hands on.

`r1jax.experiment` validates `job` and every stage's job against this list, the `pipeline` job
dispatches its stages through it, and :func:`run` (behind ``r1jax.main``) runs the experiment's
job. A job returns a summary dict, written to ``<workdir>/summary.json``. Every job that trains a
policy (rl, sft, dpo, base_model, and the pipeline, which links its last stage's) ends with
``<workdir>/export``, a Hugging Face directory that `transformers` and later stages load.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import shutil
from collections.abc import Callable
from typing import Any

import jax
from absl import logging

from r1jax.distributed import is_chief
from r1jax.jobs import base_model, control, dpo, evaluate, rejection, reward_model, sft, stages
from r1jax.metrics import SUMMARY_FILE, write_json
from r1jax.policy import EXPORT
from r1jax.train import train_and_evaluate


@dataclasses.dataclass(frozen=True)
class Job:
  name: str
  run: Callable[[Any, str], dict[str, Any]]             # (experiment, workdir) -> summary
  hands_on: str | None = EXPORT    # what a stage gives later stages, under its workdir
  stage: bool = True               # may be a stage of a pipeline
  policy: bool = True              # what it hands on is a policy (a pipeline's export is one)
  # Runs on several processes (launch/local.py, SLURM) with the results of one; the others refuse.
  multi_process: bool = True

  def execute(self, exp, workdir: str) -> dict[str, Any]:
    """Runs the job in `workdir` and writes its summary there."""
    os.makedirs(workdir, exist_ok=True)
    summary = self.run(exp, workdir)
    write_json(os.path.join(workdir, SUMMARY_FILE), summary)
    return summary


def _pipeline(exp, workdir: str) -> dict[str, Any]:
  """The stages, then `<workdir>/export`: the last policy a stage exported."""
  done = stages.run(exp, workdir, {job.name: job for job in JOBS if job.stage})
  policies = {job.name for job in JOBS if job.policy and job.hands_on == EXPORT}
  exports = [d["output"] for d in done.values() if d["output"] and d["job"] in policies]
  if exports:
    link_export(exports[-1], os.path.join(workdir, EXPORT))
  return done


def link_export(source: str, target: str) -> None:
  """`target` becomes a relative symbolic link to the export directory `source` (a copy where
  links are not allowed): a 32B export is not written twice."""
  if not is_chief():
    return
  if os.path.islink(target) or os.path.isfile(target):
    os.remove(target)
  elif os.path.isdir(target):
    shutil.rmtree(target)
  try:
    os.symlink(os.path.relpath(source, os.path.dirname(os.path.abspath(target))), target)
  except OSError:
    shutil.copytree(source, target)


JOBS: tuple[Job, ...] = (
    # Every training job ends with <workdir>/export, the Hugging Face directory it hands on.
    Job("rl", functools.partial(train_and_evaluate, export=True)),
    # Their training loops feed host batches to a step sharded over one process's devices only.
    Job("base_model", base_model.run, multi_process=False),
    Job("sft", sft.run, multi_process=False),
    Job("dpo", dpo.run, multi_process=False),
    Job("rejection", rejection.run, hands_on=rejection.TRACES),
    Job("reward_model", reward_model.run, policy=False, multi_process=False),
    Job("evaluate", evaluate.run, hands_on=None),
    # An RL run's lr-0 control: the base evaluated where the run evaluates (jobs/control.py).
    Job("control", control.run, hands_on=None, policy=False),
    Job("pipeline", _pipeline, hands_on=None, stage=False),
)
JOB_NAMES = tuple(job.name for job in JOBS)
STAGE_JOB_NAMES = tuple(job.name for job in JOBS if job.stage)


def check_processes(exp, processes: int) -> None:
  """Refuses, before anything runs, a job (or a pipeline with a stage) that runs on one process
  only when there are several."""
  if processes == 1:
    return
  by_name = {job.name: job for job in JOBS}
  if exp.job == "pipeline":
    single = [f"{name} ({stage['job']})" for name, stage in
              ((n, exp.pipeline.stages[n]) for n in exp.pipeline.order)
              if not by_name[stage["job"]].multi_process]
    if single:
      raise ValueError(f"the pipeline job runs on one process when a stage does; its stages "
                       f"{', '.join(single)} run on one process; got {processes}")
  elif not by_name[exp.job].multi_process:
    raise ValueError(f"the {exp.job} job runs on one process; got {processes} (jobs that run on "
                     f"several: {', '.join(j.name for j in JOBS if j.multi_process)})")


def run(exp, workdir: str) -> dict[str, Any]:
  """Runs the experiment's job in `workdir`; returns its summary."""
  check_processes(exp, jax.process_count())
  summary = next(job for job in JOBS if job.name == exp.job).execute(exp, workdir)
  logging.info("summary: %s", summary)
  return summary
