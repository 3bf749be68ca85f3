"""Orbax checkpoints of a run: array state, JSON metadata and the data-iterator state together.

One :class:`Checkpointer` per workdir wraps an ``orbax.checkpoint.CheckpointManager`` that saves
asynchronously and keeps the newest ``keep`` steps. A step is written as a composite of
``state`` (any pytree of arrays: params, optimizer, reference, rng...), ``meta`` (JSON: step,
counters, history) and ``data`` (JSON: the data iterator's state), so a resumed run restarts
exactly where the saved one stood. Restoring takes an abstract target (``jax.ShapeDtypeStruct``
with shardings), so a checkpoint can be read onto a different mesh than the one that wrote it.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp


class Checkpointer:

  def __init__(self, directory: str, *, keep: int = 3, async_save: bool = True):
    self.directory = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=async_save,
                                           create=True)
    self._manager = ocp.CheckpointManager(self.directory, options=options,
                                          item_names=("state", "meta", "data"))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state, meta: dict[str, Any], data: dict[str, Any] | None = None,
           *, force: bool = False) -> None:
    args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta),
                              data=ocp.args.JsonSave(data or {}))
    self._manager.save(step, args=args, force=force)

  def restore(self, step: int, abstract_state) -> tuple[Any, dict, dict]:
    """(state, meta, data) of `step`, with arrays placed per `abstract_state`'s shardings."""
    args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state),
                              meta=ocp.args.JsonRestore(), data=ocp.args.JsonRestore())
    out = self._manager.restore(step, args=args)
    return out.state, dict(out.meta), dict(out.data or {})

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()


def abstract_like(tree):
  """ShapeDtypeStructs (with shardings) of a live pytree: the restore target for its layout."""
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)
