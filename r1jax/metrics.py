"""Run metrics: JSONL and TensorBoard event files in the workdir, a job's JSON summary, and a
console progress bar.

Only process 0 writes (others get a writer whose methods do nothing), so multi-host runs produce
one set of files. TensorBoard events are written with the `tensorboard` package's own event
writer and protos, which need no TensorFlow.
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any

import numpy as np
from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter
from tqdm.auto import tqdm

from r1jax.distributed import is_chief

SUMMARY_FILE = "summary.json"   # what a job reports, in its workdir


def _scalar(value) -> float | None:
  try:
    value = float(np.asarray(value))
  except (TypeError, ValueError):
    return None
  return value


class MetricsWriter:

  def __init__(self, workdir: str, *, filename: str = "metrics.jsonl", enabled: bool | None = None):
    self.enabled = is_chief() if enabled is None else enabled
    self.path = os.path.join(workdir, filename)
    if self.enabled:
      os.makedirs(workdir, exist_ok=True)
      self._jsonl = open(self.path, "a", encoding="utf-8")
      self._events = EventFileWriter(os.path.join(workdir, "tensorboard"))

  def write(self, step: int, scalars: dict[str, Any]) -> None:
    if not self.enabled:
      return
    values = {k: v for k, v in ((k, _scalar(v)) for k, v in scalars.items()) if v is not None}
    record = {"step": int(step), **{k: (v if math.isfinite(v) else str(v)) for k, v in values.items()}}
    self._jsonl.write(json.dumps(record) + "\n")
    self._jsonl.flush()
    summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=k, simple_value=v)
                                         for k, v in values.items()])
    self._events.add_event(event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary))

  def write_text(self, step: int, tag: str, text: str) -> None:
    if not self.enabled:
      return
    tensor = tensor_pb2.TensorProto(dtype=7, string_val=[text.encode()],  # 7 = DT_STRING
                                    tensor_shape=tensor_shape_pb2.TensorShapeProto())
    meta = summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(
        plugin_name="text"))
    summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, tensor=tensor,
                                                                   metadata=meta)])
    self._events.add_event(event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary))

  def close(self) -> None:
    if self.enabled:
      self._jsonl.close()
      self._events.close()


def write_json(path: str, obj) -> None:
  """Writes `obj` to `path` as JSON, from process 0 only."""
  if is_chief():
    with open(path, "w", encoding="utf-8") as f:
      json.dump(obj, f, indent=2)


def read_jsonl(path: str) -> list[dict[str, Any]]:
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]


def progress(total: int, initial: int = 0, desc: str = "train"):
  """A tqdm bar with rate and ETA, shown only on process 0."""
  return tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True,
              disable=not is_chief(), smoothing=0.1)
