"""Multi-host start-up and per-process data: the one place that calls ``jax.distributed.initialize``.

It detects SLURM (``SLURM_NTASKS`` > 1) and Open MPI (``OMPI_COMM_WORLD_SIZE`` > 1) and lets JAX
read their coordinator and ranks; explicit settings come from ``R1JAX_COORDINATOR``,
``R1JAX_NUM_PROCESSES`` and ``R1JAX_PROCESS_ID`` (what ``launch/local.py`` and
``launch/slurm.py`` set). On CPU the cross-process collectives are gloo's. Two timeouts keep
slow and dead processes apart. The heartbeat timeout (``R1JAX_HEARTBEAT_TIMEOUT_S``) bounds how
long the survivors wait when a process dies: JAX's coordination service then stops them with an
error instead of letting them hang. The straggler timeout (``R1JAX_STRAGGLER_TIMEOUT_S``) is how
long a live process waits for slower ones at the start-up and shutdown barriers: processes drift
apart by minutes on a busy host or when only the chief writes reports, and a barrier that gives
up first aborts every process of a run that had succeeded. A run ends with :func:`shutdown` (the
barrier, while everything is still alive); a run that fails calls :func:`abandon` instead and
exits at once, so the others see a dead process through the heartbeat rather than wait at a
barrier; :func:`barrier` lines processes up before the first run of a compiled program. Each
process loads only the rows of a batch that its own devices hold (:func:`process_rows`) and
assembles the global array from them (:func:`global_batch`). Host code never reads an array it does
not hold: :func:`fetch` copies device arrays to the host, gathering across processes where they
span several, and :func:`gather_rows` assembles a whole host batch from each process's rows (the
rewards each process scored for its own prompts). Only process 0 writes logs (:func:`is_chief`);
Orbax checkpoints are written by every process, each its own shards. In a single process all of
this reduces to plain local reads.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh

from r1jax.mesh import DEFAULT_RULES, logical_sharding

_initialized = False
_passages: dict[str, int] = {}   # barrier name -> times this process passed it


def heartbeat_timeout_s(env=os.environ) -> int:
  return _positive_seconds(env, "R1JAX_HEARTBEAT_TIMEOUT_S", 60)


def straggler_timeout_s(env=os.environ) -> int:
  return _positive_seconds(env, "R1JAX_STRAGGLER_TIMEOUT_S", 600)


def _positive_seconds(env, name: str, default: int) -> int:
  text = env.get(name, str(default))
  try:
    value = int(text)
  except ValueError:
    value = 0
  if value <= 0:
    raise ValueError(f"{name} must be a positive whole number of seconds, got {text!r}")
  return value


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
  timeout, straggler = heartbeat_timeout_s(env), straggler_timeout_s(env)
  if env.get("JAX_PLATFORMS", "").split(",")[0] == "cpu":
    # Without a CPU collectives backend, a computation spanning processes cannot run at all.
    jax.config.update("jax_cpu_collectives_implementation",
                      env.get("JAX_CPU_COLLECTIVES_IMPLEMENTATION", "gloo"))
  timeouts = dict(heartbeat_timeout_seconds=timeout, initialization_timeout=straggler,
                  shutdown_timeout_seconds=straggler)
  if kind == "explicit":
    missing = [k for k in ("R1JAX_NUM_PROCESSES", "R1JAX_PROCESS_ID") if k not in env]
    if missing:
      raise ValueError(f"R1JAX_COORDINATOR is set but {', '.join(missing)} is not; set all three "
                       "(see launch/local.py)")
    jax.distributed.initialize(env["R1JAX_COORDINATOR"], int(env["R1JAX_NUM_PROCESSES"]),
                               int(env["R1JAX_PROCESS_ID"]), **timeouts)
  else:
    # JAX's own cluster detection reads the SLURM / Open MPI coordinator and ranks.
    jax.distributed.initialize(**timeouts)
  _initialized = True
  logging.info("jax.distributed: process %d of %d (%s), %d local / %d global devices",
               jax.process_index(), jax.process_count(), kind, jax.local_device_count(),
               jax.device_count())


def barrier(name: str, env=os.environ) -> None:
  """Waits until every process gets here (up to the straggler timeout); nothing in one process.

  For the first run of a program that spans processes, once it is compiled: CPU collectives
  (gloo) give a late process only 30 s to join a new group of devices, and on a busy host tracing
  and compiling alone can set processes further apart than that.
  """
  if _initialized:
    # Each passage gets its own id (every process calls barriers in the same order): a pipeline
    # passes the same named barrier once per stage.
    _passages[name] = _passages.get(name, 0) + 1
    # The coordination service's own barrier (no public API): a collective would itself need gloo.
    from jax._src import distributed as jax_distributed
    jax_distributed.global_state.client.wait_at_barrier(f"{name}_{_passages[name]}",
                                                        straggler_timeout_s(env) * 1000)


def shutdown() -> None:
  """Ends a successful run: waits (up to the straggler timeout) until every process gets here.

  Explicit, so that the barrier runs while the run is intact rather than during interpreter exit.
  """
  global _initialized
  if _initialized:
    jax.distributed.shutdown()
    _initialized = False


def abandon() -> None:
  """Ends a failed run of several processes: prints the error and exits now, skipping the shutdown
  barrier, so the others learn of it through the heartbeat instead of waiting for this process
  at the barrier. Bad input (`r1jax.cli.BAD_INPUT`) prints as the one-line error of a single
  process. Call it from an ``except`` block; does nothing in a single process."""
  if not _initialized:
    return
  from r1jax import cli   # bad input reads as on one process: one line, unless --verbose
  error = sys.exc_info()[1]
  bad_input = isinstance(error, cli.BAD_INPUT) and not cli.verbose()
  if bad_input:
    print(f"error: {cli.message(error)}", file=sys.stderr)
  else:
    traceback.print_exc()
  logging.error("process %d failed; exiting without the shutdown barrier", jax.process_index())
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(cli.EXIT_BAD_INPUT if bad_input else 1)


def is_chief() -> bool:
  """Process 0: the only one that writes logs, metrics and reports."""
  return jax.process_index() == 0


def _batch_sharding(shape, mesh: Mesh, rules):
  return logical_sharding(("batch",) + (None,) * (len(shape) - 1), tuple(shape), mesh, rules)


def process_rows(global_shape, mesh: Mesh, rules=DEFAULT_RULES) -> slice:
  """The rows of a batch-leading array of `global_shape` that this process's devices hold (the
  rows it should load); every row when the batch axis is not split across processes."""
  index_map = _batch_sharding(global_shape, mesh, rules).addressable_devices_indices_map(
      tuple(global_shape))
  starts = [idx[0].start or 0 for idx in index_map.values()]
  stops = [global_shape[0] if idx[0].stop is None else idx[0].stop for idx in index_map.values()]
  rows = slice(min(starts), max(stops))
  held = sum(stop - start for start, stop in {(a, b) for a, b in zip(starts, stops)})
  if held != rows.stop - rows.start:
    raise ValueError(f"the batch rows of this process are not contiguous for shape {global_shape} "
                     f"on mesh {dict(mesh.shape)}: put the data axis across processes (dcn)")
  return rows


def global_batch(local: dict[str, np.ndarray], global_rows: dict[str, int], mesh: Mesh,
                 rules=DEFAULT_RULES) -> dict[str, jax.Array]:
  """Global arrays, sharded along the batch axis, from each process's rows (`process_rows`).

  `global_rows[key]` is the global leading size of `local[key]`; a single process passes the
  whole batch.
  """
  out = {}
  for key, x in local.items():
    shape = (global_rows[key], *np.shape(x)[1:])
    out[key] = jax.make_array_from_process_local_data(_batch_sharding(shape, mesh, rules),
                                                      np.asarray(x), shape)
  return out


def fetch(tree):
  """Host (numpy) copies of a pytree of arrays, whole on every process: a plain device_get where
  this process holds every array, an explicit gather across processes where one spans several."""
  if all(not isinstance(x, jax.Array) or x.is_fully_addressable for x in jax.tree.leaves(tree)):
    return jax.device_get(tree)
  return multihost_utils.process_allgather(tree, tiled=True)


def gather_rows(tree, rows: slice, total: int):
  """The whole [total, ...] host arrays of a pytree, on every process, from each process's
  `rows` of them (equal-sized row ranges, as `process_rows` gives; processes may share rows)."""
  rows = range(total)[rows]
  if len(rows) == total:
    return tree
  parts, starts = multihost_utils.process_allgather((tree, np.int64(rows.start)))

  def assemble(stacked):
    out = np.empty((total, *stacked.shape[2:]), stacked.dtype)
    covered = np.zeros(total, bool)
    for start, part in zip(starts.tolist(), stacked):
      out[start:start + len(part)] = part
      covered[start:start + len(part)] = True
    if not covered.all():
      raise ValueError(f"the processes' rows cover {covered.sum()} of {total} rows")
    return out
  return jax.tree.map(assemble, parts)
