"""Reports of multi-stage runs: the stage table, and the paper's two small-scale ablations.

- ``stages``: each stage's job, wall time and headline result (pass@1 before/after for RL, eval
  for SFT, acceptance for rejection sampling, pairwise accuracy for a reward model).
- ``distill_vs_rl``: the paper's distillation table. One row per `evaluate` stage (named
  ``eval_<row>``), pass@1 and cons@k per task (here: per difficulty level) and overall, plus a bar
  plot; the stage table gives the compute each arm spent.
- ``scale``: the same RL recipe on bases of several sizes (stages named ``rl_<size>``): pass@1 and
  cons@k of the base (the RL run's step-0 eval) and after RL, and the gain, against model size.
Everything is read from the stages' summaries, so a report can be re-made without re-running.
"""

from __future__ import annotations

import os
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the file backend)

EVAL_PREFIX, RL_PREFIX = "eval_", "rl_"


def _pct(x: float | None) -> str:
  return "-" if x is None else f"{100 * x:.1f}"


def _headline(stage: dict[str, Any]) -> str:
  s, job = stage["summary"], stage["job"]
  if job == "rl":
    return (f"pass@1 {_pct(s['first']['pass@1'])} -> {_pct(s['last']['pass@1'])}, "
            f"cons@k {_pct(s['first']['cons@k'])} -> {_pct(s['last']['cons@k'])}")
  if job == "rejection":
    return f"kept {s['kept']} of {s['total']} samples ({_pct(s['acceptance'])}%)"
  if job == "reward_model":
    return (f"held-out pairwise accuracy {_pct(s['accuracy_before'])} -> "
            f"{_pct(s['accuracy_after'])}")
  if "last" in s:
    return f"pass@1 {_pct(s['last']['pass@1'])}, cons@k {_pct(s['last']['cons@k'])}"
  return f"{s.get('examples', '')} examples" if job == "sft" else "done"


def stage_table(done: dict[str, Any]) -> str:
  lines = ["| stage | job | wall time (s) | result |", "|---|---|---|---|"]
  for name, stage in done.items():
    wall = stage.get("wall_s")
    lines.append(f"| {name} | {stage['job']} | {'-' if wall is None else f'{wall:.0f}'} | "
                 f"{_headline(stage)} |")
  return "\n".join(lines)


def distill_table(done: dict[str, Any]) -> tuple[str, dict[str, dict]]:
  """Markdown in the paper's layout (pass@1 / cons@k per task), and the rows it shows."""
  rows = {n[len(EVAL_PREFIX):]: s["summary"] for n, s in done.items()
          if s["job"] == "evaluate" and n.startswith(EVAL_PREFIX)}
  if not rows:
    return "(no eval_* stages)", rows
  levels = sorted({d for r in rows.values() for d in r["by_difficulty"]}, key=int)
  head = ["model", *[f"d{d} {m}" for d in levels for m in ("pass@1", "cons@k")],
          "all pass@1", "all cons@k"]
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for name, r in rows.items():
    cells = [name]
    for d in levels:
      m = r["by_difficulty"].get(d, {})
      k = next((key for key in m if key.startswith("cons@") and key != "cons@k"), None)
      cells += [_pct(m.get("pass@1")), _pct(m.get(k) if k else None)]
    cells += [_pct(r["last"]["pass@1"]), _pct(r["last"]["cons@k"])]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines), rows


def _params_of(export_dir: str) -> int | None:
  path = os.path.join(export_dir, "model.safetensors")
  return os.path.getsize(path) // 4 if os.path.exists(path) else None  # float32 weights


def scale_table(done: dict[str, Any]) -> tuple[str, list[dict]]:
  rows = []
  for name, stage in done.items():
    if stage["job"] == "rl" and name.startswith(RL_PREFIX):
      s = stage["summary"]
      rows.append({"size": name[len(RL_PREFIX):], "params": _params_of(stage["output"]),
                   **{f"{when}_{m}": s[when][m] for when in ("first", "last")
                      for m in ("pass@1", "cons@k")}})
  lines = ["| base | parameters | base pass@1 | RL pass@1 | gain | base cons@k | RL cons@k | gain |",
           "|---|---|---|---|---|---|---|---|"]
  for r in rows:
    gain1, gaink = r["last_pass@1"] - r["first_pass@1"], r["last_cons@k"] - r["first_cons@k"]
    params = "-" if r["params"] is None else f"{r['params']:,}"
    lines.append(f"| {r['size']} | {params} | {_pct(r['first_pass@1'])} | "
                 f"{_pct(r['last_pass@1'])} | {100 * gain1:+.1f} | {_pct(r['first_cons@k'])} | "
                 f"{_pct(r['last_cons@k'])} | {100 * gaink:+.1f} |")
  return "\n".join(lines), rows


def _plot_distill(rows: dict[str, dict], path: str) -> None:
  levels = sorted({d for r in rows.values() for d in r["by_difficulty"]}, key=int)
  labels = [f"d{d}" for d in levels] + ["all"]
  fig, ax = plt.subplots(figsize=(7, 3.5))
  width = 0.8 / max(len(rows), 1)
  for i, (name, r) in enumerate(rows.items()):
    values = [r["by_difficulty"][d]["pass@1"] for d in levels] + [r["last"]["pass@1"]]
    ax.bar([j + i * width for j in range(len(labels))], [100 * v for v in values], width,
           label=name)
  ax.set_xticks([j + 0.4 - width / 2 for j in range(len(labels))], labels)
  ax.set_ylabel("pass@1 (%)")
  ax.set_title("distillation vs RL on the student")
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def _plot_scale(rows: list[dict], path: str) -> None:
  fig, ax = plt.subplots(figsize=(5, 3.5))
  xs = [r["params"] or i + 1 for i, r in enumerate(rows)]
  ax.plot(xs, [100 * r["first_pass@1"] for r in rows], "o-", label="base")
  ax.plot(xs, [100 * r["last_pass@1"] for r in rows], "s-", label="after RL")
  for x, r in zip(xs, rows):
    ax.annotate(r["size"], (x, 100 * r["last_pass@1"]), fontsize=8)
  ax.set_xscale("log")
  ax.set_xlabel("parameters")
  ax.set_ylabel("pass@1 (%)")
  ax.set_title("RL gain vs base size")
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def write_report(kind: str, done: dict[str, Any], workdir: str) -> str:
  """Writes <workdir>/report.md (and a plot for the ablations); returns its path."""
  parts = [f"# {kind} report\n", "## Stages\n", stage_table(done), ""]
  if kind == "distill_vs_rl":
    table, rows = distill_table(done)
    parts += ["## Distillation vs RL (pass@1 / cons@k, %, per difficulty)\n", table, ""]
    if rows:
      _plot_distill(rows, os.path.join(workdir, "distill_vs_rl.png"))
      parts.append("![pass@1](distill_vs_rl.png)\n")
  elif kind == "scale":
    table, rows = scale_table(done)
    parts += ["## RL gain vs base size (%)\n", table, ""]
    if rows:
      _plot_scale(rows, os.path.join(workdir, "scale.png"))
      parts.append("![scale](scale.png)\n")
  path = os.path.join(workdir, "report.md")
  with open(path, "w", encoding="utf-8") as f:
    f.write("\n".join(parts))
  return path
