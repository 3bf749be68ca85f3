"""Multi-host start-up: the one place that calls ``jax.distributed.initialize``.

It detects SLURM (``SLURM_NTASKS`` > 1) and Open MPI (``OMPI_COMM_WORLD_SIZE`` > 1) and lets JAX
read their coordinator and ranks; explicit settings come from ``R1JAX_COORDINATOR``,
``R1JAX_NUM_PROCESSES`` and ``R1JAX_PROCESS_ID`` (what ``launch/local.py`` sets). A heartbeat
timeout bounds how long the survivors wait when a process dies: they fail with an error instead of
hanging. A single process needs none of this and calls nothing.
"""

from __future__ import annotations

import logging
import os

import jax

HEARTBEAT_TIMEOUT_S = int(os.environ.get("R1JAX_HEARTBEAT_TIMEOUT_S", "60"))
_initialized = False


def cluster_kind(env=os.environ) -> str | None:
  """'explicit', 'slurm', 'ompi', or None when this is a single-process run."""
  if env.get("R1JAX_COORDINATOR"):
    return "explicit"
  if int(env.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in env:
    return "slurm"
  if int(env.get("OMPI_COMM_WORLD_SIZE", "1")) > 1:
    return "ompi"
  return None


def initialize(env=os.environ) -> None:
  """Initialises jax.distributed once if the environment describes several processes."""
  global _initialized
  kind = cluster_kind(env)
  if _initialized or kind is None:
    return
  if kind == "explicit":
    missing = [k for k in ("R1JAX_NUM_PROCESSES", "R1JAX_PROCESS_ID") if k not in env]
    if missing:
      raise ValueError(f"R1JAX_COORDINATOR is set but {', '.join(missing)} is not; set all three "
                       "(see launch/local.py)")
    jax.distributed.initialize(env["R1JAX_COORDINATOR"], int(env["R1JAX_NUM_PROCESSES"]),
                               int(env["R1JAX_PROCESS_ID"]),
                               heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT_S,
                               initialization_timeout=HEARTBEAT_TIMEOUT_S * 2)
  else:
    # JAX's own cluster detection reads the SLURM / Open MPI coordinator and ranks.
    jax.distributed.initialize(heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT_S)
  _initialized = True
  logging.info("jax.distributed: process %d of %d (%s)", jax.process_index(), jax.process_count(), kind)


def is_chief() -> bool:
  """Process 0: the only one that writes logs, metrics and reports."""
  return jax.process_index() == 0
