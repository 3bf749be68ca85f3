"""Run metrics: JSONL and TensorBoard event files in the workdir, optionally a Weights & Biases
run, a job's JSON summary, and a console progress bar.

Only process 0 writes (others get a writer whose methods do nothing), so multi-host runs produce
one set of files. TensorBoard events are written with the `tensorboard` package's own event
writer and protos, which need no TensorFlow. Weights & Biases is off unless ``R1JAX_WANDB_PROJECT``
names a project; it then logs every scalar and text sample to one run per workdir (in
``<workdir>/wandb``), offline unless ``WANDB_MODE=online`` (``wandb sync`` uploads it later). A
writer of another file than metrics.jsonl prefixes its keys with that file's name ("eval/...").
"""

from __future__ import annotations

import html
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
WANDB_PROJECT_ENV = "R1JAX_WANDB_PROJECT"
_wandb_runs: dict[str, list] = {}   # workdir -> [run, open writers]: its writers share one run


def _open_wandb(workdir: str):
  """The workdir's W&B run (started by its first writer), or None when not configured."""
  project = os.environ.get(WANDB_PROJECT_ENV)
  if not project:
    return None
  key = os.path.abspath(workdir)
  if key not in _wandb_runs:
    try:
      import wandb
    except ImportError:
      raise ImportError(f"{WANDB_PROJECT_ENV}={project} asks for Weights & Biases logging, but the "
                        "wandb package is not installed: pip install wandb (or unset it)") from None
    run = wandb.init(project=project, dir=key, name=os.path.basename(key),
                     mode=os.environ.get("WANDB_MODE", "offline"), reinit="create_new")
    _wandb_runs[key] = [run, 0]
  _wandb_runs[key][1] += 1
  return _wandb_runs[key][0]


def _close_wandb(workdir: str) -> None:
  key = os.path.abspath(workdir)
  entry = _wandb_runs.get(key)
  if entry is None:
    return
  entry[1] -= 1
  if entry[1] == 0:
    entry[0].finish()
    del _wandb_runs[key]


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
    self.workdir = workdir
    self._prefix = "" if filename == "metrics.jsonl" else os.path.splitext(filename)[0] + "/"
    self._wandb = None
    if self.enabled:
      os.makedirs(workdir, exist_ok=True)
      self._jsonl = open(self.path, "a", encoding="utf-8")
      self._events = EventFileWriter(os.path.join(workdir, "tensorboard"))
      self._wandb = _open_wandb(workdir)

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
    if self._wandb is not None:   # "step" as a value: a resumed run may log a step again
      self._wandb.log({"step": int(step), **{self._prefix + k: v for k, v in values.items()}})

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
    if self._wandb is not None:
      import wandb
      self._wandb.log({"step": int(step), self._prefix + tag: wandb.Html(
          "<pre>" + html.escape(text) + "</pre>")})

  def close(self) -> None:
    if self.enabled:
      self._jsonl.close()
      self._events.close()
      if self._wandb is not None:
        _close_wandb(self.workdir)
        self._wandb = None


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
