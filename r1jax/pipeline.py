"""Multi-stage runs: the `pipeline` job runs the stages of `pipeline.stages` in `pipeline.order`.

R1 itself is such a run (cold-start SFT -> RL stage 1 -> rejection sampling + SFT -> RL stage 2,
`experiments/r1_pipeline.py`), and so are the ablations. Each stage works in `<workdir>/<name>`,
reads earlier stages' outputs through "stage:NAME" values (models handed on as Hugging Face
directories), and on success writes `<workdir>/<name>/DONE.json` (its job, output and summary). A
re-run skips stages with that marker and resumes an interrupted one from its own checkpoints.
At the end `<workdir>/pipeline.json` collects the summaries and `r1jax.ablations` writes the
report that `pipeline.report` names.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any

import jax
from absl import logging

from r1jax.config import ConfigError, from_dict
from r1jax.pipeline_config import REF, PipelineConfig

MARKER = "DONE.json"


def _resolve(value: Any, outputs: dict[str, str]) -> Any:
  if isinstance(value, str) and value.startswith(REF):
    return outputs[value[len(REF):]]
  if isinstance(value, dict):
    return {k: _resolve(v, outputs) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return type(value)(_resolve(v, outputs) for v in value)
  return value


def _merge(base: dict, changes: dict, key: str = "") -> dict:
  out = dict(base)
  for name, value in changes.items():
    if isinstance(value, dict) and isinstance(out.get(name), dict):
      out[name] = _merge(out[name], value, f"{key}{name}.")
    else:
      out[name] = value
  return out


def stage_experiment(exp, name: str, outputs: dict[str, str]):
  """The Experiment of stage `name`: `exp` with the stage's job and resolved `set` values."""
  from r1jax.experiment import Experiment  # experiment imports this module's config
  stage = exp.pipeline.stages[name]
  values = dataclasses.asdict(exp)
  values["pipeline"] = dataclasses.asdict(PipelineConfig())
  values = _merge(values, {**_resolve(stage.get("set", {}), outputs), "job": stage["job"]})
  try:
    return from_dict(Experiment, values)
  except ConfigError as e:
    raise e.under(f"pipeline.stages.{name}.set") from None


def stage_output(job: str, stage_dir: str) -> str:
  """What a stage hands on: its trace file (rejection) or its exported model directory."""
  return os.path.join(stage_dir, "traces.jsonl" if job == "rejection" else "export")


def _run_rl(exp, workdir: str) -> dict[str, Any]:
  """RL, then the final policy exported for the next stage."""
  from r1jax.export import export_policy
  from r1jax.train import Trainer
  trainer = Trainer(exp, workdir)
  try:
    summary = trainer.run()
    export_policy(trainer.model_cfg, trainer.state.params, exp.base_model,
                  stage_output("rl", workdir))
    if not exp.base_model:
      logging.warning("RL stage from a random init: its export has no tokenizer files")
  finally:
    trainer.close()
  return summary


def run_stage(exp, workdir: str) -> dict[str, Any]:
  """Runs one stage's job in `workdir`; returns its summary."""
  if exp.job == "rl":
    return _run_rl(exp, workdir)
  from r1jax import jobs  # the other jobs' runners
  return jobs.run(exp, workdir)


def run(exp, workdir: str) -> dict[str, Any]:
  """The `pipeline` job; returns {stage name: {"job", "output", "summary"}}."""
  if not exp.pipeline.stages:
    raise ConfigError("pipeline.stages", "is empty; a pipeline needs at least one stage")
  done: dict[str, Any] = {}
  outputs: dict[str, str] = {}
  for name in exp.pipeline.order:
    stage = exp.pipeline.stages[name]
    stage_dir = os.path.join(workdir, name)
    marker = os.path.join(stage_dir, MARKER)
    if os.path.exists(marker):
      with open(marker, encoding="utf-8") as f:
        done[name] = json.load(f)
      logging.info("stage %s: complete, skipped (remove %s to run it again)", name, marker)
    else:
      stage_exp = stage_experiment(exp, name, outputs)
      logging.info("stage %s: job %s in %s", name, stage["job"], stage_dir)
      os.makedirs(stage_dir, exist_ok=True)
      start = time.perf_counter()
      summary = run_stage(stage_exp, stage_dir)
      done[name] = {"job": stage["job"], "output": stage_output(stage["job"], stage_dir),
                    "wall_s": time.perf_counter() - start,
                    "summary": summary if isinstance(summary, dict) else {"result": summary}}
      if jax.process_index() == 0:
        with open(marker, "w", encoding="utf-8") as f:
          json.dump(done[name], f, indent=2)
    outputs[name] = done[name]["output"]
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "pipeline.json"), "w", encoding="utf-8") as f:
      json.dump(done, f, indent=2)
    from r1jax import ablations
    ablations.write_report(exp.pipeline.report, done, workdir)
  return done
