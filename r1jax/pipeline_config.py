"""The `pipeline` config section: named stages, each a job plus the config values it changes.

    stages = {"cold_start": {"job": "sft", "set": {"sft": {"steps": 200}, "optim": {"lr": 1e-4}}},
              "rl1": {"job": "rl", "set": {"base_model": "stage:cold_start", ...}}, ...}

Stages run in the order `order` lists them (config dicts do not keep insertion order). A stage's experiment is the whole experiment with its `set` values
merged in (so every section is validated as usual), and any string "stage:NAME" in them stands for
the output of the earlier stage NAME: its exported model directory, or the trace file of a
rejection stage. `report` picks the summary written at the end (`r1jax.ablations`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from r1jax.config import ConfigError, check_choice

STAGE_JOBS = ("base_model", "sft", "rl", "rejection", "reward_model", "evaluate")
REPORTS = ("stages", "distill_vs_rl", "scale")
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
  stages: dict[str, Any] = dataclasses.field(default_factory=dict)
  order: tuple[str, ...] = ()
  report: str = "stages"

  def validate(self):
    check_choice("report", self.report, REPORTS)
    if sorted(self.order) != sorted(self.stages):
      raise ConfigError("order", f"got {self.order}; must list each stage once "
                        f"(stages: {', '.join(sorted(self.stages)) or 'none'})")
    seen: list[str] = []
    for name in self.order:
      stage = self.stages[name]
      key = f"stages.{name}"
      if not isinstance(stage, dict) or set(stage) - {"job", "set"} or "job" not in stage:
        raise ConfigError(key, "must be {'job': ..., 'set': {section: {key: value}}}")
      check_choice(f"{key}.job", stage["job"], STAGE_JOBS)
      if not isinstance(stage.get("set", {}), dict):
        raise ConfigError(f"{key}.set", "must map config sections to the values this stage changes")
      for ref in stage_refs(stage.get("set", {})):
        if ref not in seen:
          raise ConfigError(f"{key}.set", f"refers to stage {ref!r}, which does not run before it "
                            f"(earlier stages: {', '.join(seen) or 'none'})")
      seen.append(name)
