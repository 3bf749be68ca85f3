"""Multi-stage runs: the `pipeline` job runs the stages of `pipeline.stages` in `pipeline.order`.

    stages = {"cold_start": {"job": "sft", "set": {"sft": {"steps": 200}, "optim": {"lr": 1e-4}}},
              "rl1": {"job": "rl", "set": {"base_model": "stage:cold_start", ...}}, ...}

R1 itself is such a run (cold-start SFT -> RL stage 1 -> rejection sampling + SFT -> RL stage 2,
`experiments/r1_pipeline.py`), and so are the ablations. A stage's experiment is the whole
experiment with its `set` values merged in (so every section is validated as usual), and any
string "stage:NAME" in them stands for what the earlier stage NAME hands on: its exported model
directory, or the trace file of a rejection stage. Each stage works in `<workdir>/<name>` and on
success writes `<workdir>/<name>/DONE.json` (its job, output and summary); a re-run skips stages
with that marker and resumes an interrupted one from its own checkpoints. The job's summary is
every stage's, and `r1jax.jobs.stages_report` writes the report that `pipeline.report` names.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Mapping
from typing import Any

from absl import logging

from r1jax.config import ConfigError, check_choice, from_dict
from r1jax.jobs import stages_report
from r1jax.metrics import write_json

MARKER = "DONE.json"
REF = "stage:"


def stage_refs(value: Any) -> list[str]:
  """Names of the stages a (nested) value refers to with "stage:NAME"."""
  if isinstance(value, str):
    return [value[len(REF):]] if value.startswith(REF) else []
  if isinstance(value, dict):
    return [r for v in value.values() for r in stage_refs(v)]
  if isinstance(value, (list, tuple)):
    return [r for v in value for r in stage_refs(v)]
  return []


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
  """Stages run in the order `order` lists them (config dicts do not keep insertion order); which
  jobs may be stages is checked by the experiment against the job registry."""
  stages: dict[str, Any] = dataclasses.field(default_factory=dict)
  order: tuple[str, ...] = ()
  report: str = "stages"

  def validate(self):
    check_choice("report", self.report, stages_report.REPORTS)
    if sorted(self.order) != sorted(self.stages):
      raise ConfigError("order", f"got {self.order}; must list each stage once "
                        f"(stages: {', '.join(sorted(self.stages)) or 'none'})")
    seen: list[str] = []
    for name in self.order:
      stage = self.stages[name]
      key = f"stages.{name}"
      if not isinstance(stage, dict) or set(stage) - {"job", "set"} or "job" not in stage:
        raise ConfigError(key, "must be {'job': ..., 'set': {section: {key: value}}}")
      if not isinstance(stage.get("set", {}), dict):
        raise ConfigError(f"{key}.set", "must map config sections to the values this stage changes")
      for ref in stage_refs(stage.get("set", {})):
        if ref not in seen:
          raise ConfigError(f"{key}.set", f"refers to stage {ref!r}, which does not run before it "
                            f"(earlier stages: {', '.join(seen) or 'none'})")
      seen.append(name)


def _resolve(value: Any, outputs: Mapping[str, str | None], key: str) -> Any:
  if isinstance(value, str) and value.startswith(REF):
    if outputs[value[len(REF):]] is None:
      raise ConfigError(key, f"refers to {value!r}, whose job hands nothing on")
    return outputs[value[len(REF):]]
  if isinstance(value, dict):
    return {k: _resolve(v, outputs, f"{key}.{k}") for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return type(value)(_resolve(v, outputs, key) for v in value)
  return value


def _merge(base: dict, changes: dict) -> dict:
  out = dict(base)
  for name, value in changes.items():
    if isinstance(value, dict) and isinstance(out.get(name), dict):
      out[name] = _merge(out[name], value)
    else:
      out[name] = value
  return out


def stage_experiment(exp, name: str, outputs: Mapping[str, str | None]):
  """The experiment of stage `name`: `exp` with the stage's job and resolved `set` values."""
  stage = exp.pipeline.stages[name]
  where = f"pipeline.stages.{name}.set"
  values = dataclasses.asdict(exp)
  values["pipeline"] = dataclasses.asdict(PipelineConfig())
  values = _merge(values, {**_resolve(stage.get("set", {}), outputs, where), "job": stage["job"]})
  try:
    return from_dict(type(exp), values)
  except ConfigError as e:
    raise e.under(where) from None


def run(exp, workdir: str, jobs: Mapping[str, Any]) -> dict[str, Any]:
  """Runs the stages with `jobs` (name -> `r1jax.jobs.registry.Job`); returns
  {stage name: {"job", "output", "wall_s", "summary"}}."""
  if not exp.pipeline.stages:
    raise ConfigError("pipeline.stages", "is empty; a pipeline needs at least one stage")
  done: dict[str, Any] = {}
  outputs: dict[str, str | None] = {}
  for name in exp.pipeline.order:
    job = jobs[exp.pipeline.stages[name]["job"]]
    stage_dir = os.path.join(workdir, name)
    marker = os.path.join(stage_dir, MARKER)
    if os.path.exists(marker):
      with open(marker, encoding="utf-8") as f:
        done[name] = json.load(f)
      logging.info("stage %s: complete, skipped (remove %s to run it again)", name, marker)
    else:
      stage_exp = stage_experiment(exp, name, outputs)
      logging.info("stage %s: job %s in %s", name, job.name, stage_dir)
      start = time.perf_counter()
      summary = job.execute(stage_exp, stage_dir)
      done[name] = {"job": job.name,
                    "output": job.hands_on and os.path.join(stage_dir, job.hands_on),
                    "wall_s": time.perf_counter() - start, "summary": summary}
      write_json(marker, done[name])
    outputs[name] = done[name]["output"]
  stages_report.write_stages_report(exp.pipeline.report, done, workdir)
  return done
