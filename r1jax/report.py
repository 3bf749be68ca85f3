"""``python -m r1jax.report --workdir=DIR [--control=DIR]``: report.md and plots in the shape of
the paper's R1-Zero figures; ``python -m r1jax.report --compare DIR DIR ... [--out=DIR]``: several
runs (or a sweep's points) side by side (`r1jax.compare`).

From a run's ``eval.jsonl`` it plots accuracy (pass@1 and cons@k) against step, mean response
length against step, and reflective-word frequency against step, each with the control run beside
it when one is given (the demo's learning-rate-0 run), and writes a markdown table of the first
and last evaluation. It reads only files, so it can be rerun on any finished or running workdir.
"""

from __future__ import annotations

import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from absl import flags  # noqa: E402

from r1jax import cli  # noqa: E402
from r1jax.compare import write_comparison  # noqa: E402
from r1jax.evaluate import SUMMARY_KEYS  # noqa: E402
from r1jax.metrics import SUMMARY_FILE, read_jsonl  # noqa: E402

PLOTS = (
    ("accuracy.png", "Accuracy on held-out problems", ("pass@1", "cons@k")),
    ("response_length.png", "Mean response length (tokens)", ("response_length",)),
    ("reflection.png", "Reflective words per response", ("reflective_words_per_response",)),
)


def _series(records, key):
  return {key: ([r["step"] for r in records if key in r], [r[key] for r in records if key in r])}


DIFFICULTY_PLOT = "length_by_difficulty.png"
_BY_DIFFICULTY = "response_length/difficulty="


def plot_length_by_difficulty(runs: dict[str, list[dict]], out_dir: str) -> str | None:
  """Mean response length against difficulty at each run's first and last evaluation: the
  paper's finding that harder problems get longer thinking, and whether RL grew it."""
  fig, ax = plt.subplots(figsize=(6, 4))
  drawn = False
  for run_name, records in runs.items():
    for when, record in (("first", records[0]), ("last", records[-1])) if records else ():
      levels = sorted(int(k[len(_BY_DIFFICULTY):]) for k in record if k.startswith(_BY_DIFFICULTY))
      if levels:
        ax.plot(levels, [record[f"{_BY_DIFFICULTY}{d}"] for d in levels],
                "-" if run_name == "run" else "--", marker="o",
                label=f"{run_name}, step {record['step']} ({when})")
        drawn = True
  if not drawn:
    plt.close(fig)
    return None
  ax.set_xlabel("difficulty")
  ax.set_ylabel("mean response length (tokens)")
  ax.set_title("Response length by difficulty")
  return _save(fig, ax, os.path.join(out_dir, DIFFICULTY_PLOT))


def _save(fig, ax, path: str) -> str:
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def length_by_difficulty_table(runs: dict[str, list[dict]]) -> str:
  """Markdown: mean response length per difficulty at each run's first and last evaluation."""
  levels = sorted({int(k[len(_BY_DIFFICULTY):]) for records in runs.values() for r in records
                   for k in r if k.startswith(_BY_DIFFICULTY)})
  if not levels:
    return ""
  lines = ["| run | step | " + " | ".join(f"difficulty {d}" for d in levels) + " |",
           "|---" * (len(levels) + 2) + "|"]
  for run_name, records in runs.items():
    for record in (records[0], records[-1]) if records else ():
      cells = [f"{record[f'{_BY_DIFFICULTY}{d}']:.1f}" if f"{_BY_DIFFICULTY}{d}" in record else "-"
               for d in levels]
      lines.append(f"| {run_name} | {record['step']} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def plot(runs: dict[str, list[dict]], out_dir: str) -> list[str]:
  paths = []
  for filename, title, keys in PLOTS:
    fig, ax = plt.subplots(figsize=(6, 4))
    for run_name, records in runs.items():
      style = "-" if run_name == "run" else "--"
      for name in keys:
        for key, (steps, values) in _series(records, name).items():
          ax.plot(steps, values, style, marker="o", ms=3, label=f"{key} ({run_name})")
    ax.set_xlabel("step")
    ax.set_title(title)
    paths.append(_save(fig, ax, os.path.join(out_dir, filename)))
  by_difficulty = plot_length_by_difficulty(runs, out_dir)
  return paths + ([by_difficulty] if by_difficulty else [])


def summary_table(summaries: dict[str, dict | None]) -> str:
  keys = SUMMARY_KEYS
  lines = ["| run | " + " | ".join(f"{k} first | {k} last" for k in keys) + " | steps | wall s |",
           "|---" * (2 * len(keys) + 3) + "|"]
  for name, s in summaries.items():
    if not s:
      continue
    cells = [f"{s['first'][k]:.3f} | {s['last'][k]:.3f}" for k in keys]
    lines.append(f"| {name} | " + " | ".join(cells) + f" | {s['steps']} | {s['wall_time_s']:.0f} |")
  return "\n".join(lines)


def write_run_report(workdir: str, control: str | None = None) -> tuple[str, str]:
  """Writes report.md and the plots into `workdir`; returns (the report's path, its table)."""
  for run in (workdir, control):
    if run and not os.path.isfile(os.path.join(run, "eval.jsonl")):
      raise FileNotFoundError(f"{run}: no eval.jsonl; is it the workdir of an rl run?")
  runs = {"run": read_jsonl(os.path.join(workdir, "eval.jsonl"))}
  summaries = {"run": _load_summary(workdir)}
  if control:
    runs["control"] = read_jsonl(os.path.join(control, "eval.jsonl"))
    summaries["control"] = _load_summary(control)
  paths = plot(runs, workdir)
  table = summary_table(summaries)
  body = [f"# r1jax report: {os.path.basename(os.path.abspath(workdir))}", "",
          "Held-out evaluation, first vs last (the control, if shown, trains with lr = 0):", "",
          table, ""]
  by_difficulty = length_by_difficulty_table(runs)
  if by_difficulty:
    body += ["Mean response length (tokens) by difficulty, first vs last evaluation (the paper: "
             "harder problems get longer thinking):", "", by_difficulty, ""]
  body += [f"![{os.path.basename(p)}]({os.path.basename(p)})" for p in paths]
  path = os.path.join(workdir, "report.md")
  with open(path, "w", encoding="utf-8") as f:
    f.write("\n".join(body) + "\n")
  return path, table


def _load_summary(workdir: str) -> dict | None:
  path = os.path.join(workdir, SUMMARY_FILE)
  if not os.path.exists(path):
    return None
  with open(path, encoding="utf-8") as f:
    return json.load(f)


_WORKDIR = flags.DEFINE_string("workdir", None, "The run's workdir.")
_CONTROL = flags.DEFINE_string("control", None, "Optional control run's workdir to show beside it.")
_COMPARE = flags.DEFINE_bool("compare", False, "Compare the runs (or sweep folders) given as "
                             "arguments: --compare runs/a runs/b ...")
_OUT = flags.DEFINE_string("out", None, "With --compare: where compare.md and compare.png go "
                           "(default: <the runs' common parent>/compare).")


def main(argv):
  if _COMPARE.value:
    paths = argv[1:]
    if not paths:
      raise cli.BadInput("--compare needs the run directories after it: --compare runs/a runs/b")
    out = _OUT.value or os.path.join(os.path.commonpath([os.path.abspath(p) for p in paths]),
                                     "compare")
    path, table = write_comparison(paths, out)
  else:
    if len(argv) > 1:
      raise cli.BadInput(f"unexpected arguments {argv[1:]}; to compare runs, pass --compare")
    if not _WORKDIR.value:
      raise cli.BadInput("--workdir is required (or --compare DIR DIR ...)")
    path, table = write_run_report(_WORKDIR.value, _CONTROL.value)
  print(table)
  print(f"\nreport: {path}")


if __name__ == "__main__":
  cli.run(main)
