"""Packing of (prompt, completion) token sequences into fixed-length rows with segment ids.

First-fit decreasing: the longest sequences are placed first, each in the first row with room,
which keeps padding low without reordering the loss. Every row carries `segment_ids` (0 = padding)
so attention never crosses examples, `positions` restarting at 0 per example, next-token
`targets`, and a `loss_mask` that is True only where the target is a completion token (including
its EOS), so the prompt is context, not a training target.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def pack(pairs: Sequence[tuple[Sequence[int], Sequence[int]]], row_len: int, *,
         loss_on_prompt: bool = False) -> dict[str, np.ndarray]:
  """pairs: (prompt ids, completion ids incl. EOS). Sequences longer than row_len are an error."""
  order = sorted(range(len(pairs)), key=lambda i: -(len(pairs[i][0]) + len(pairs[i][1])))
  rows: list[list[int]] = []
  room: list[int] = []
  for i in order:
    n = len(pairs[i][0]) + len(pairs[i][1])
    if n > row_len:
      raise ValueError(f"example {i} has {n} tokens; the packing row length is {row_len}")
    slot = next((r for r, free in enumerate(room) if free >= n), None)
    if slot is None:
      rows.append([])
      room.append(row_len)
      slot = len(rows) - 1
    rows[slot].append(i)
    room[slot] -= n
  out = {name: np.zeros((len(rows), row_len), np.int32)
         for name in ("tokens", "targets", "segment_ids", "positions")}
  out["loss_mask"] = np.zeros((len(rows), row_len), bool)
  for r, members in enumerate(rows):
    at = 0
    for seg, i in enumerate(members, start=1):
      prompt, completion = pairs[i]
      seq = np.asarray(list(prompt) + list(completion), np.int32)
      n = len(seq)
      out["tokens"][r, at:at + n] = seq
      out["targets"][r, at:at + n - 1] = seq[1:]
      out["segment_ids"][r, at:at + n] = seg
      out["positions"][r, at:at + n] = np.arange(n)
      first_target = 0 if loss_on_prompt else max(len(prompt) - 1, 0)
      out["loss_mask"][r, at + first_target:at + n - 1] = True
      at += n
  return out
