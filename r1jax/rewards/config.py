"""Reward settings: one frozen, validated dataclass that the trainer builds from the experiment config.

The total reward of a completion is ``<type>_weight * accuracy + format_weight * format +
language_weight * language``, where accuracy comes from the verifier for the example's data type.
Time limits bound one verification in CPU time (for code, CPU plus idle time of the program; see
``program_clock``), so verdicts do not depend on how busy the host is. Two wall-clock backstops
catch what those clocks cannot see: the sandbox's (``code_wall_limit_s``, default 10 times the
code limit and at least 10 s) and the service's per-item deadline, which replaces a stuck worker;
an item that reaches either runs once more before it scores 0. The per-batch deadline bounds how
long the trainer waits in ``collect``.
"""

from __future__ import annotations

import dataclasses

from r1jax.config import ConfigError, check_choice, check_range
from r1jax.rewards.code import MODES
from r1jax.rewards.language import SCRIPTS

DATA_TYPES = ("math", "code", "stem", "logic")


@dataclasses.dataclass(frozen=True)
class RewardConfig:
  math_weight: float = 1.0
  code_weight: float = 1.0
  stem_weight: float = 1.0
  logic_weight: float = 1.0
  format_weight: float = 0.1
  language_weight: float = 0.0
  target_language: str = "en"
  code_mode: str = "fraction"
  code_time_limit_s: float = 2.0
  code_memory_limit_mb: int = 512
  code_wall_limit_s: float | None = None
  math_time_limit_s: float = 2.0
  num_workers: int = 2
  item_deadline_s: float = 60.0
  batch_deadline_s: float = 300.0
  queue_bound: int = 4096

  def weight(self, data_type: str) -> float:
    check_choice("data_type", data_type, DATA_TYPES)
    return getattr(self, f"{data_type}_weight")

  def validate(self) -> None:
    for name in (*(f"{t}_weight" for t in DATA_TYPES), "format_weight", "language_weight"):
      check_range(name, getattr(self, name), 0.0, None)
    check_choice("target_language", self.target_language, tuple(SCRIPTS))
    check_choice("code_mode", self.code_mode, MODES)
    check_range("code_time_limit_s", self.code_time_limit_s, 0.0, 600.0, low_open=True)
    check_range("code_memory_limit_mb", self.code_memory_limit_mb, 32, 1 << 16)
    if self.code_wall_limit_s is not None:
      check_range("code_wall_limit_s", self.code_wall_limit_s, self.code_time_limit_s, 3600.0)
    check_range("math_time_limit_s", self.math_time_limit_s, 0.0, 600.0, low_open=True)
    check_range("num_workers", self.num_workers, 0, 1024)
    check_range("queue_bound", self.queue_bound, 1, None)
    slowest = max(self.code_time_limit_s, self.math_time_limit_s)
    if self.item_deadline_s <= slowest:
      raise ConfigError("item_deadline_s", f"got {self.item_deadline_s!r}; must exceed the "
                        f"verifier time limits (largest: {slowest!r}) so that they fire first")
    check_range("batch_deadline_s", self.batch_deadline_s, 0.0, None, low_open=True)
