"""Redundant copies of hot experts (DeepSeek-V3's inference deployment): each device of an
expert-parallel group holds its own experts plus `redundant` slots with copies of the most
loaded ones, and a hot expert's tokens are split between its copies, so the busiest device
receives fewer tokens.

:func:`place_experts` chooses the copies from per-expert token counts (a rollout's, from
:func:`expert_counts`) on the host; :class:`Placement` holds the result as the tables the expert-parallel
dispatch reads (`r1jax.models.moe`); :func:`device_loads` gives the tokens per device a placement
implies, before and after, for the planner's load-imbalance line.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from r1jax.config import ConfigError


@dataclasses.dataclass(frozen=True)
class Placement:
  """slots [shards, per_device]: the expert each physical slot holds (device d's first
  num_experts / shards slots are its own experts, the rest copies; -1 an empty slot, which gets
  no tokens). replicas [E, R]: the physical slots (d * per_device + i) holding each expert,
  padded by repeating its first; copies [E]: how many of them are real."""
  slots: np.ndarray
  replicas: np.ndarray
  copies: np.ndarray

  @property
  def shards(self) -> int:
    return self.slots.shape[0]

  @property
  def per_device(self) -> int:
    return self.slots.shape[1]

  @classmethod
  def of(cls, slots) -> Placement:
    slots = np.asarray(slots, np.int32)
    num_experts = int(slots.max()) + 1
    holders = [np.flatnonzero(slots.reshape(-1) == e) for e in range(num_experts)]
    copies = np.array([len(h) for h in holders], np.int32)
    if (copies == 0).any():
      raise ValueError(f"placement: experts {np.flatnonzero(copies == 0).tolist()} have no slot")
    width = int(copies.max())
    replicas = np.stack([np.pad(h, (0, width - len(h)), mode="edge") for h in holders])
    return cls(slots, replicas.astype(np.int32), copies)


def place_experts(load, shards: int, redundant: int) -> Placement:
  """Each of `shards` devices keeps its num_experts / shards experts and gets `redundant` more
  slots. Slot by slot, greedily, the copy that lowers the busiest device's load most goes in
  (an expert's tokens split evenly between its copies; ties by the spread of the loads, then
  the hotter expert); where no copy would lower them, the slot stays empty."""
  load = np.asarray(load, np.float64)
  num_experts = load.shape[0]
  if shards < 1 or num_experts % shards:
    raise ConfigError("moe.num_experts", f"got {num_experts}; must divide over the {shards} "
                      "expert-parallel devices")
  if redundant < 0:
    raise ConfigError("moe.redundant_experts", f"got {redundant}; must be >= 0")
  local = num_experts // shards
  slots = [list(range(d * local, (d + 1) * local)) for d in range(shards)]
  holds = np.zeros((num_experts, shards), bool)
  holds[np.arange(num_experts), np.arange(num_experts) // local] = True
  copies = np.ones(num_experts)
  for _ in range(shards * redundant):
    dev = _loads(slots, load, copies)
    share = load / (copies + 1)                       # per copy once one more is added
    # Device loads once expert e has one more copy (before placing it): [E, shards].
    base = dev[None] - holds * (load / copies - share)[:, None]
    top = np.sort(base, 1)[:, ::-1]
    busiest = np.argmax(base, 1)
    others = np.where(np.arange(shards)[None] == busiest[:, None], top[:, 1:2], top[:, :1])
    new_max = np.maximum(others, dev[None] + share[:, None])
    # Ties of the maximum (two hot devices) are broken by the spread: sum of squared loads.
    new_ss = (np.sum(base ** 2, 1)[:, None] - dev[None] ** 2 + (dev[None] + share[:, None]) ** 2)
    full = np.array([len(s) == local + redundant for s in slots])
    bad = holds | full[None]
    new_max[bad], new_ss[bad] = np.inf, np.inf
    e, d = min(np.argwhere(~bad).tolist(),
               key=lambda ed: (new_max[ed[0], ed[1]], new_ss[ed[0], ed[1]], -share[ed[0]]),
               default=(None, None))
    if e is None or (new_max[e, d], new_ss[e, d]) >= (dev.max(), np.sum(dev ** 2)):
      slots[int(np.flatnonzero(~full)[0])].append(-1)   # no copy helps: the slot stays empty
      continue
    slots[d].append(int(e))
    holds[e, d] = True
    copies[e] += 1
  return Placement.of(np.array(slots))


def _loads(slots, load, copies) -> np.ndarray:
  return np.array([sum(load[e] / copies[e] for e in device if e >= 0) for device in slots])


def expert_counts(expert_ids, mask, num_experts: int) -> np.ndarray:
  """A rollout's routing statistics: tokens per expert [layers, E] from its recorded routes
  (`rollout.Rollout.expert_ids` [layers, rows, T, k]) over the positions where `mask` [rows, T]
  is True (the tokens that were fed in)."""
  ids = np.asarray(expert_ids)
  keep = np.broadcast_to(np.asarray(mask, bool)[None, :, :, None], ids.shape)
  layer = np.broadcast_to(np.arange(ids.shape[0])[:, None, None, None], ids.shape)
  flat = layer[keep].astype(np.int64) * num_experts + ids[keep]
  return np.bincount(flat, minlength=ids.shape[0] * num_experts).reshape(ids.shape[0], -1)


def device_loads(load, placement: Placement) -> np.ndarray:
  """Tokens per device [shards] when each expert's tokens split evenly between its copies."""
  load = np.asarray(load, np.float64)
  return _loads(placement.slots.tolist(), load, placement.copies.astype(np.float64))


def imbalance(device_load) -> float:
  """max / mean tokens per device (1 = balanced)."""
  device_load = np.asarray(device_load, np.float64)
  return float(device_load.max() / max(device_load.mean(), 1e-30))
