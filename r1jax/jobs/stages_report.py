"""The `pipeline` job's report: the stage table, and the paper's two small-scale ablations.

- ``stages``: each stage's job, wall time and headline result (pass@1 before/after for RL, eval
  for SFT, acceptance for rejection sampling, pairwise accuracy for a reward model, the loss
  for DPO).
- ``distill_vs_rl``: the paper's distillation table. One row per `evaluate` stage (named
  ``eval_<row>``), pass@1 and cons@k per task (here: per difficulty level) and overall, plus a bar
  plot; the stage table gives the compute each arm spent. Stages ``<arm>_s<seed>`` are repeats of
  one arm with other seeds: the tables show their mean ± standard deviation.
- ``scale``: the same RL recipe on bases of several sizes (stages named ``rl_<size>``): pass@1 and
  cons@k of the base (the RL run's step-0 eval) and after RL, and the gain, against model size.
Everything is read from the stages' summaries, so a report can be re-made without re-running.
"""

from __future__ import annotations

import os
import re
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the file backend)
import numpy as np  # noqa: E402

from r1jax.distributed import is_chief  # noqa: E402

EVAL_PREFIX, RL_PREFIX = "eval_", "rl_"
# Repeats of one arm are stages named <arm>_s<seed>; tables show their mean ± sd.
_SEEDED = re.compile(r"^(.*)_s(\d+)$")


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
  if job == "dpo":
    return (f"{s['pairs']} pairs, loss {s['first_loss']:.3f} -> {s['last_loss']:.3f}, "
            f"reward accuracy {_pct(s['reward_accuracy'])}%")
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


def arm_and_seed(name: str) -> tuple[str, int]:
  """A stage name's arm and seed: "student_rl_s2" -> ("student_rl", 2); no suffix is seed 0."""
  match = _SEEDED.match(name)
  return (match.group(1), int(match.group(2))) if match else (name, 0)


def spread(values: list[float], signed: bool = False) -> str:
  """mean ± sample standard deviation in %, and the seed count when there is more than one."""
  if not values:
    return "-"
  mean = f"{100 * np.mean(values):{'+' if signed else ''}.1f}"
  if len(values) == 1:
    return mean
  return f"{mean} ± {100 * np.std(values, ddof=1):.1f} (n={len(values)})"


def _by_arm(named: dict[str, Any]) -> dict[str, list[Any]]:
  arms: dict[str, list[Any]] = {}
  for name, value in sorted(named.items(), key=lambda kv: arm_and_seed(kv[0])):
    arms.setdefault(arm_and_seed(name)[0], []).append(value)
  return arms


def distill_table(done: dict[str, Any]) -> tuple[str, dict[str, list[dict]]]:
  """Markdown in the paper's layout (pass@1 / cons@k per task, mean ± sd over seeds), and the
  rows it shows: arm -> the seeds' summaries."""
  rows = _by_arm({n[len(EVAL_PREFIX):]: s["summary"] for n, s in done.items()
                  if s["job"] == "evaluate" and n.startswith(EVAL_PREFIX)})
  if not rows:
    return "(no eval_* stages)", rows
  levels = sorted({d for seeds in rows.values() for r in seeds for d in r["by_difficulty"]}, key=int)
  head = ["model", *[f"d{d} {m}" for d in levels for m in ("pass@1", "cons@k")],
          "all pass@1", "all cons@k"]
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for name, seeds in rows.items():
    cells = [name]
    for d in levels:
      for metric in ("pass@1", "cons@k"):
        cells.append(spread([r["by_difficulty"][d][metric] for r in seeds
                             if metric in r["by_difficulty"].get(d, {})]))
    cells += [spread([r["last"][m] for r in seeds]) for m in ("pass@1", "cons@k")]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines), rows


def _params_of(export_dir: str) -> int | None:
  path = os.path.join(export_dir, "model.safetensors")
  return os.path.getsize(path) // 4 if os.path.exists(path) else None  # float32 weights


def scale_table(done: dict[str, Any]) -> tuple[str, list[dict]]:
  """Base and after-RL pass@1 / cons@k and the gain per base (mean ± sd over seeds)."""
  arms = _by_arm({n[len(RL_PREFIX):]: s for n, s in done.items()
                  if s["job"] == "rl" and n.startswith(RL_PREFIX)})
  rows = []
  for size, stages in arms.items():
    row = {"size": size, "params": _params_of(stages[0]["output"])}
    for m in ("pass@1", "cons@k"):
      row[f"first_{m}"] = [st["summary"]["first"][m] for st in stages]
      row[f"last_{m}"] = [st["summary"]["last"][m] for st in stages]
      row[f"gain_{m}"] = [b - a for a, b in zip(row[f"first_{m}"], row[f"last_{m}"])]
    rows.append(row)
  lines = ["| base | parameters | base pass@1 | RL pass@1 | gain | base cons@k | RL cons@k | gain |",
           "|---|---|---|---|---|---|---|---|"]
  for r in rows:
    params = "-" if r["params"] is None else f"{r['params']:,}"
    lines.append(f"| {r['size']} | {params} | " + " | ".join(
        spread(r[f"{when}_{m}"], signed=when == "gain") for m in ("pass@1", "cons@k")
        for when in ("first", "last", "gain")) + " |")
  return "\n".join(lines), rows


def _plot_distill(rows: dict[str, dict], path: str) -> None:
  levels = sorted({d for seeds in rows.values() for r in seeds for d in r["by_difficulty"]},
                  key=int)
  labels = [f"d{d}" for d in levels] + ["all"]
  fig, ax = plt.subplots(figsize=(7, 3.5))
  width = 0.8 / max(len(rows), 1)
  for i, (name, seeds) in enumerate(rows.items()):
    values = np.array([[r["by_difficulty"][d]["pass@1"] for d in levels] + [r["last"]["pass@1"]]
                       for r in seeds])
    errors = 100 * values.std(0, ddof=1) if len(seeds) > 1 else None
    ax.bar([j + i * width for j in range(len(labels))], 100 * values.mean(0), width,
           yerr=errors, capsize=2, label=name)
  ax.set_xticks([j + 0.4 - width / 2 for j in range(len(labels))], labels)
  _save_pass1_plot(fig, ax, "distillation vs RL on the student", path)


def _plot_scale(rows: list[dict], path: str) -> None:
  fig, ax = plt.subplots(figsize=(5, 3.5))
  xs = [r["params"] or i + 1 for i, r in enumerate(rows)]
  for when, marker, label in (("first", "o-", "base"), ("last", "s-", "after RL")):
    values = [np.array(r[f"{when}_pass@1"]) for r in rows]
    ax.errorbar(xs, [100 * v.mean() for v in values], capsize=3, fmt=marker, label=label,
                yerr=[100 * v.std(ddof=1) if len(v) > 1 else 0.0 for v in values])
  for x, r in zip(xs, rows):
    ax.annotate(r["size"], (x, 100 * np.mean(r["last_pass@1"])), fontsize=8)
  ax.set_xscale("log")
  ax.set_xlabel("parameters")
  _save_pass1_plot(fig, ax, "RL gain vs base size", path)


def _save_pass1_plot(fig, ax, title: str, path: str) -> None:
  ax.set_ylabel("pass@1 (%)")
  ax.set_title(title)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


# report kind -> (section heading, table of `done`, its plot, the plot's file)
ABLATIONS = {
    "distill_vs_rl": ("Distillation vs RL (pass@1 / cons@k, %, per difficulty)", distill_table,
                      _plot_distill, "distill_vs_rl.png"),
    "scale": ("RL gain vs base size (%)", scale_table, _plot_scale, "scale.png"),
}
REPORTS = ("stages", *ABLATIONS)


def write_stages_report(kind: str, done: dict[str, Any], workdir: str) -> str | None:
  """Writes <workdir>/report.md (and a plot for the ablations) from process 0; returns its path."""
  if not is_chief():
    return None
  parts = [f"# {kind} report\n", "## Stages\n", stage_table(done), ""]
  if kind in ABLATIONS:
    heading, make_table, make_plot, plot_file = ABLATIONS[kind]
    table, rows = make_table(done)
    parts += [f"## {heading}\n", table, ""]
    if rows:
      make_plot(rows, os.path.join(workdir, plot_file))
      parts.append(f"![{kind}]({plot_file})\n")
  path = os.path.join(workdir, "report.md")
  with open(path, "w", encoding="utf-8") as f:
    f.write("\n".join(parts))
  return path
