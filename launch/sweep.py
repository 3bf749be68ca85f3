"""Grid sweeps over config overrides: run here (N at a time) or write a SLURM array script.

  python launch/sweep.py --config=experiments/r1_zero.py:tiny \
      --sweep=experiments/sweeps/kl_clip.py[:arg] --workdir=runs/kl_clip [--parallel=2] [--slurm]

Each point runs ``python -m r1jax.main`` in ``<workdir>/<point>`` (so an interrupted sweep resumes
point by point). When all are done, the final evaluations are collected into ``results.md``,
``results.csv`` and ``heatmap.png``: the final pass@1 and the KL to the reference at the end over
the first two swept keys. ``python -m r1jax.report --compare <workdir>`` overlays the points' curves.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import shlex
import subprocess
import sys
import time

from absl import flags

from r1jax import cli
from r1jax.compare import final_value
from r1jax.metrics import read_jsonl

_CONFIG = flags.DEFINE_string("config", None, "Experiment config file[:variant].")
_SWEEP = flags.DEFINE_string("sweep", None, "Sweep file[:arg] defining get_sweep(arg).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Parent directory of the points' workdirs.")
_PARALLEL = flags.DEFINE_integer("parallel", 1, "Points run at the same time on this machine.")
_SLURM = flags.DEFINE_bool("slurm", False, "Write <workdir>/sweep.sbatch (an array job) instead.")
_EXTRA = flags.DEFINE_multi_string("override", [], "Extra key=value overrides for every point.")

METRICS = ("pass@1", "cons@k", "response_length", "reflective_words_per_response")


def load_sweep(spec: str) -> list[tuple[str, dict]]:
  path, _, arg = spec.partition(":")
  module_spec = importlib.util.spec_from_file_location("sweep", path)
  if module_spec is None or not os.path.isfile(path):
    raise FileNotFoundError(f"--sweep: no sweep file at {path}")
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_sweep(arg)


def command(config: str, workdir: str, overrides: dict, extra=()) -> list[str]:
  args = [sys.executable, "-m", "r1jax.main", f"--config={config}", f"--workdir={workdir}"]
  args += [f"--config.{k}={v}" for k, v in overrides.items()] + [f"--config.{e}" for e in extra]
  return args


def run_local(points, config: str, root: str, parallel: int, extra=()) -> None:
  queue = list(points)
  running: list[tuple[str, subprocess.Popen]] = []
  failed = []
  while queue or running:
    while queue and len(running) < parallel:
      name, overrides = queue.pop(0)
      os.makedirs(os.path.join(root, name), exist_ok=True)
      log = open(os.path.join(root, name, "stdout.log"), "ab")
      running.append((name, subprocess.Popen(command(config, os.path.join(root, name), overrides,
                                                     extra), stdout=log, stderr=subprocess.STDOUT)))
    time.sleep(0.5)
    for name, proc in list(running):
      if proc.poll() is not None:
        running.remove((name, proc))
        if proc.returncode:
          failed.append(name)
  if failed:
    raise RuntimeError(f"sweep points failed: {failed}; see <workdir>/<point>/stdout.log")


def write_slurm(points, config: str, root: str, extra=()) -> str:
  lines = ["#!/bin/bash", f"#SBATCH --array=0-{len(points) - 1}", "#SBATCH --job-name=r1jax-sweep",
           f"#SBATCH --output={root}/%a.out", "set -euo pipefail", "POINTS=("]
  lines += [f"  {shlex.quote(shlex.join(command(config, os.path.join(root, n), o, extra)))}"
            for n, o in points]
  lines += [")", 'eval "${POINTS[$SLURM_ARRAY_TASK_ID]}"']
  path = os.path.join(root, "sweep.sbatch")
  with open(path, "w", encoding="utf-8") as f:
    f.write("\n".join(lines) + "\n")
  return path


def collect(points, root: str) -> list[dict]:
  rows = []
  for name, overrides in points:
    with open(os.path.join(root, name, "summary.json"), encoding="utf-8") as f:
      summary = json.load(f)
    train = read_jsonl(os.path.join(root, name, "metrics.jsonl"))
    rows.append({"point": name, **overrides, **{m: summary["last"][m] for m in METRICS},
                 "first pass@1": summary["first"]["pass@1"],
                 "KL end": final_value(train, "approx_kl/ref")})
  return rows


def write_tables(rows: list[dict], root: str) -> tuple[str, str]:
  keys = list(rows[0])
  csv_path, md_path = os.path.join(root, "results.csv"), os.path.join(root, "results.md")
  with open(csv_path, "w", newline="", encoding="utf-8") as f:
    writer = csv.DictWriter(f, keys)
    writer.writeheader()
    writer.writerows(rows)
  fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)
  lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
  lines += ["| " + " | ".join(fmt(r[k]) for k in keys) + " |" for r in rows]
  with open(md_path, "w", encoding="utf-8") as f:
    f.write("\n".join(lines) + "\n")
  return md_path, csv_path


HEATMAPS = (("pass@1", "final pass@1", ".2f"), ("KL end", "KL to the reference at the end", ".2g"))


def write_heatmap(rows: list[dict], swept: list[str], root: str) -> str:
  """Final pass@1 and final KL over the first and last swept keys, side by side."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  x_key, y_key = swept[0], swept[-1]
  xs = sorted({r[x_key] for r in rows})
  ys = sorted({r[y_key] for r in rows})
  fig, axes = plt.subplots(1, len(HEATMAPS), figsize=(5 * len(HEATMAPS), 4))
  for ax, (metric, title, fmt) in zip(axes, HEATMAPS):
    grid = [[next((r[metric] for r in rows if r[x_key] == x and r[y_key] == y), float("nan"))
             for x in xs] for y in ys]
    image = ax.imshow(grid, origin="lower", cmap="viridis")
    ax.set_xticks(range(len(xs)), [f"{x:g}" for x in xs])
    ax.set_yticks(range(len(ys)), [f"{y:g}" for y in ys])
    ax.set_xlabel(x_key)
    ax.set_ylabel(y_key)
    ax.set_title(title)
    for i, row in enumerate(grid):
      for j, value in enumerate(row):
        ax.text(j, i, format(value, fmt), ha="center", va="center", color="w", fontsize=8)
    fig.colorbar(image, ax=ax)
  path = os.path.join(root, "heatmap.png")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def main(argv):
  if len(argv) > 1:
    raise cli.BadInput(f"unexpected arguments: {argv[1:]} (flags are written --name=value)")
  points = load_sweep(_SWEEP.value)
  os.makedirs(_WORKDIR.value, exist_ok=True)
  if _SLURM.value:
    print(write_slurm(points, _CONFIG.value, os.path.abspath(_WORKDIR.value), _EXTRA.value))
    return
  run_local(points, _CONFIG.value, _WORKDIR.value, _PARALLEL.value, _EXTRA.value)
  rows = collect(points, _WORKDIR.value)
  swept = [k for k in points[0][1] if len({str(o[k]) for _, o in points}) > 1]
  md, _ = write_tables(rows, _WORKDIR.value)
  write_heatmap(rows, swept, _WORKDIR.value)
  print(open(md, encoding="utf-8").read())


if __name__ == "__main__":
  flags.mark_flags_as_required(["config", "sweep", "workdir"])
  cli.run(main)
