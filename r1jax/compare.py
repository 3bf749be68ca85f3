"""Several runs side by side (``python -m r1jax.report --compare runs/a runs/b ...``): their
pass@1, response length, reward, KL and entropy curves overlaid in one figure, and one markdown
table of where each run ended. A sweep directory stands for its points (the subdirectories that
hold a run). It reads only the files a run writes (eval.jsonl, metrics.jsonl, summary.json), so it
works on finished and running workdirs alike.
"""

from __future__ import annotations

import json
import os

import numpy as np

from r1jax.metrics import SUMMARY_FILE, read_jsonl

EVAL, TRAIN = "eval.jsonl", "metrics.jsonl"
# (panel title, file, key): held-out evaluation from eval.jsonl, training signals per step.
CURVES = (("held-out pass@1", EVAL, "pass@1"),
          ("response length (tokens, held-out)", EVAL, "response_length"),
          ("reward (training rollouts)", TRAIN, "reward/mean"),
          ("KL to the reference", TRAIN, "approx_kl/ref"),
          ("policy entropy (nats/token)", TRAIN, "entropy"))
TAIL = 0.1   # training signals at the end: the mean over the last 10% of steps (at least one)


def is_run(path: str) -> bool:
  return os.path.isfile(os.path.join(path, EVAL)) or os.path.isfile(os.path.join(path, TRAIN))


def expand(paths: list[str]) -> list[str]:
  """Run directories: each path that is a run, and the runs inside each that is not (a sweep)."""
  runs = []
  for path in paths:
    if not os.path.isdir(path):
      raise FileNotFoundError(f"--compare: no directory {path}")
    if is_run(path):
      runs.append(path)
      continue
    inside = sorted(os.path.join(path, d) for d in os.listdir(path)
                    if is_run(os.path.join(path, d)))
    if not inside:
      raise FileNotFoundError(f"--compare: {path} is neither a run ({EVAL} or {TRAIN}) nor a "
                              "folder of runs (a sweep)")
    runs += inside
  if len(runs) < 2:
    raise ValueError(f"--compare needs at least two runs; got {runs}")
  return runs


def _records(run: str, filename: str) -> list[dict]:
  path = os.path.join(run, filename)
  return read_jsonl(path) if os.path.isfile(path) else []


def curve(records: list[dict], key: str) -> tuple[list[int], list[float]]:
  pairs = [(r["step"], float(r[key])) for r in records if key in r]
  return [s for s, _ in pairs], [v for _, v in pairs]


def final_value(records: list[dict], key: str, tail: float = TAIL) -> float:
  """The mean of `key` over the last `tail` share of the records that have it (nan if none)."""
  values = curve(records, key)[1]
  if not values:
    return float("nan")
  return float(np.mean(values[-max(1, int(round(len(values) * tail))):]))


def run_name(run: str, runs: list[str]) -> str:
  """The run's path below the runs' common parent (its point name, for a sweep)."""
  parent = os.path.commonpath([os.path.abspath(r) for r in runs])
  name = os.path.relpath(os.path.abspath(run), parent)
  return os.path.basename(os.path.abspath(run)) if name == "." else name


def final_row(run: str) -> dict[str, float]:
  evals, train = _records(run, EVAL), _records(run, TRAIN)
  summary_path = os.path.join(run, SUMMARY_FILE)
  summary = json.load(open(summary_path, encoding="utf-8")) if os.path.isfile(summary_path) else {}
  last = evals[-1] if evals else {}
  pass1 = curve(evals, "pass@1")[1]
  return {"steps": float(summary.get("steps", max((r["step"] for r in train), default=0))),
          "pass@1 first": pass1[0] if pass1 else float("nan"),
          "pass@1 last": last.get("pass@1", float("nan")),
          "pass@1 best": max(pass1, default=float("nan")),
          "cons@k last": last.get("cons@k", float("nan")),
          "length last": last.get("response_length", float("nan")),
          "reward end": final_value(train, "reward/mean"),
          "KL end": final_value(train, "approx_kl/ref"),
          "entropy end": final_value(train, "entropy"),
          "wall s": float(summary.get("wall_time_s", float("nan")))}


def table(runs: list[str]) -> str:
  rows = {run_name(r, runs): final_row(r) for r in runs}
  keys = list(next(iter(rows.values())))
  fmt = lambda k, v: "-" if np.isnan(v) else (f"{v:.0f}" if k in ("steps", "wall s") else
                                               f"{v:.4g}" if k in ("KL end",) else f"{v:.3f}")
  lines = ["| run | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
  lines += [f"| {name} | " + " | ".join(fmt(k, row[k]) for k in keys) + " |"
            for name, row in rows.items()]
  return "\n".join(lines)


def plot(runs: list[str], path: str) -> str:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, len(CURVES), figsize=(4.2 * len(CURVES), 3.6))
  for ax, (title, filename, key) in zip(axes, CURVES):
    for run in runs:
      steps, values = curve(_records(run, filename), key)
      ax.plot(steps, values, marker="o" if filename == EVAL else None, ms=3, lw=1.2,
              label=run_name(run, runs))
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
  axes[0].legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


def write_comparison(paths: list[str], out_dir: str) -> tuple[str, str]:
  """Writes compare.md and compare.png into `out_dir`; returns (the markdown's path, its table)."""
  runs = expand(paths)
  os.makedirs(out_dir, exist_ok=True)
  figure = plot(runs, os.path.join(out_dir, "compare.png"))
  body = table(runs)
  md = os.path.join(out_dir, "compare.md")
  with open(md, "w", encoding="utf-8") as f:
    f.write(f"# r1jax: {len(runs)} runs compared\n\nHeld-out evaluation (first, last, best) and "
            f"the training signals at the end (mean over the last {TAIL:.0%} of steps):\n\n"
            f"{body}\n\n![curves]({os.path.relpath(figure, out_dir)})\n")
  return md, body
