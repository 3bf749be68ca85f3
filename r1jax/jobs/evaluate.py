"""The `evaluate` job: a policy's metrics outside the RL loop, overall and per difficulty, on the
data section's eval split or on the paper's public benchmarks.

With `benchmarks.names` empty it evaluates the eval section's problems (the SFT job, the pipeline
and the ablations put SFT'd and distilled models in the same table as RL runs this way). With
names (`r1jax.data.benchmarks`: math500, aime, gpqa, livecodebench) it runs the paper's protocol
on each local benchmark file: k samples per question at the eval section's temperature and
length and the rollout's top-p (`experiments/eval_r1.py` sets temperature 0.6, top-p 0.95 and a
32,768-token budget), reporting pass@1 averaged over the k samples, cons@k (majority vote),
unbiased pass@k, and the mean thinking tokens by difficulty. It writes `benchmarks.md` (the
paper's table layout), `samples.jsonl` (every scored sample) and `thinking_tokens.png` (thinking tokens against difficulty).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import jax

from r1jax.config import ConfigError, check_choice, check_range
from r1jax.data import benchmarks
from r1jax.data.pipeline import make_batch
from r1jax.data.schema import SPLITS
from r1jax.evaluate import summarize, thinking_text
from r1jax.distributed import is_chief
from r1jax.experience import evaluate, evaluate_policy, scoring
from r1jax.policy import load_policy

TABLE = "benchmarks.md"
SAMPLES = "samples.jsonl"   # every scored sample, for re-analysis
FIGURE = "thinking_tokens.png"


@dataclasses.dataclass(frozen=True)
class BenchmarkConfig:
  """Which local benchmark files the evaluate job runs (empty: the data section's eval split)."""
  names: tuple[str, ...] = ()
  split: str = "test"
  num_problems: int = 0           # per benchmark, the first N; 0 = all

  def validate(self):
    for i, name in enumerate(self.names):
      check_choice(f"names[{i}]", name, tuple(benchmarks.BENCHMARKS))
    if len(set(self.names)) != len(self.names):
      raise ConfigError("names", f"lists a benchmark twice: {self.names}")
    check_choice("split", self.split, SPLITS)
    check_range("num_problems", self.num_problems, 0)


def by_difficulty(samples: list[dict[str, Any]], k: int,
                  pass_at=(1,)) -> dict[int, dict[str, float]]:
  """summarize() of each difficulty's samples: pass@1 and cons@k per difficulty."""
  levels = sorted({s["difficulty"] for s in samples})
  return {d: summarize([s for s in samples if s["difficulty"] == d], k, pass_at) for d in levels}


def _with_thinking(samples: list[dict[str, Any]], tokenizer) -> list[dict[str, Any]]:
  return [{**s, "thinking_tokens": len(tokenizer.encode(thinking_text(s["completion"])))}
          for s in samples]


def run(exp, workdir: str) -> dict[str, Any]:
  """Metrics of `base_model` overall ("last") and per difficulty, or per benchmark."""
  if exp.benchmarks.names and not exp.base_model:
    raise ConfigError("base_model", "is empty; name the model to evaluate (a Hugging Face "
                      "directory, e.g. <run>/export, or builtin:demo)")
  model_cfg, params, tokenizer = load_policy(exp.base_model, exp.model, exp.tokenizer,
                                             exp.loop.seed)
  k, pass_at = exp.eval.num_samples, exp.eval.pass_at
  if not exp.benchmarks.names:
    _, samples = evaluate_policy(exp, model_cfg, params, tokenizer, seed=exp.loop.seed)
    samples = _with_thinking(samples, tokenizer)
    return {"last": summarize(samples, k, pass_at),
            "by_difficulty": {str(d): m for d, m in by_difficulty(samples, k).items()}}
  directory = benchmarks.manual_dir(exp.data.data_dir, exp.data.manual_dir)
  loaded = {name: benchmarks.load(name, directory, exp.benchmarks.split)
            for name in exp.benchmarks.names}   # every file is checked before any sampling
  results, records = {}, []
  with scoring(exp, params) as (placed, rewards):
    for i, (name, (examples, skipped)) in enumerate(loaded.items()):
      if exp.benchmarks.num_problems:
        examples = examples[:exp.benchmarks.num_problems]
      batch = make_batch(examples, tokenizer, template=exp.data.template,
                         max_prompt_len=exp.data.max_prompt_len)
      rng = jax.random.fold_in(jax.random.key(exp.loop.seed), i)
      _, samples = evaluate(model_cfg, placed, batch, rng, exp.rollout, tokenizer, rewards,
                            exp.eval)
      samples = _with_thinking(samples, tokenizer)
      records += [{"benchmark": name, "source_id": examples[s["problem"]]["source_id"], **s}
                  for s in samples]
      bench = benchmarks.BENCHMARKS[name]
      results[name] = {"title": bench.title, "category": bench.category,
                       "problems": len(examples), "skipped": skipped,
                       "metrics": summarize(samples, k, pass_at),
                       "by_difficulty": {str(d): m for d, m in
                                         by_difficulty(samples, k, pass_at).items()}}
  protocol = {"k": k, "temperature": exp.eval.temperature, "top_p": exp.eval.top_p or exp.rollout.top_p,
              "max_new_tokens": exp.eval.max_new_tokens or exp.rollout.max_new_tokens,
              "template": exp.data.template}
  model = os.path.basename(os.path.normpath(exp.base_model))
  if is_chief():
    with open(os.path.join(workdir, SAMPLES), "w", encoding="utf-8") as f:
      f.writelines(json.dumps(r, default=lambda v: v.item()) + "\n" for r in records)
    write_tables(results, protocol, model, os.path.join(workdir, TABLE))
    plot_thinking(results, os.path.join(workdir, FIGURE))
  return {"model": exp.base_model, "protocol": protocol, "benchmarks": results}


def table_rows(results: dict[str, Any], k: int, pass_at) -> list[tuple[str, str, float]]:
  """(category, "Benchmark (Metric)", percent) in the paper's order: English, Code, Math."""
  rows = []
  for category in ("English", "Code", "Math"):
    for r in (r for r in results.values() if r["category"] == category):
      m = r["metrics"]
      rows.append((category, f"{r['title']} (Pass@1)", 100 * m["pass@1"]))
      rows.append((category, f"{r['title']} (Cons@{k})", 100 * m["cons@k"]))
      rows += [(category, f"{r['title']} (Pass@{j})", 100 * m[f"pass@{j}_unbiased"])
               for j in pass_at if j > 1]
  return rows


def write_tables(results: dict[str, Any], protocol: dict[str, Any], model: str, path: str) -> None:
  k = protocol["k"]
  pass_at = sorted({int(key.split("@")[1].split("_")[0]) for r in results.values()
                    for key in r["metrics"] if key.endswith("_unbiased")})
  lines = [f"# Evaluation of {model}", "",
           f"Protocol: {k} samples per question at temperature {protocol['temperature']:g}, "
           f"top-p {protocol['top_p']:g}, up to {protocol['max_new_tokens']} new tokens "
           f"({protocol['template']} template); pass@1 is averaged over the {k} samples, "
           f"cons@{k} is the majority vote, pass@k is unbiased.", "",
           f"| Category | Benchmark (Metric) | {model} |", "|---|---|---|"]
  lines += [f"| {c} | {name} | {value:.1f} |" for c, name, value in table_rows(results, k, pass_at)]
  levels = sorted({d for r in results.values() for d in r["by_difficulty"]}, key=int)
  lines += ["", "Mean thinking tokens (inside <think>) by difficulty:", "",
            "| Benchmark | problems | all | " + " | ".join(f"level {d}" for d in levels) + " |",
            "|---|---|---|" + "---|" * len(levels)]
  for r in results.values():
    cells = [f"{r['by_difficulty'][d]['thinking_tokens']:.1f}" if d in r["by_difficulty"] else "-"
             for d in levels]
    lines.append(f"| {r['title']} | {r['problems']} | {r['metrics']['thinking_tokens']:.1f} | "
                 + " | ".join(cells) + " |")
  with open(path, "w", encoding="utf-8") as f:
    f.write("\n".join(lines) + "\n")


def plot_thinking(results: dict[str, Any], path: str) -> None:
  """The paper's test-time-scaling figure: mean thinking tokens against difficulty."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(6, 4))
  for r in results.values():
    levels = sorted(r["by_difficulty"], key=int)
    ax.plot([int(d) for d in levels], [r["by_difficulty"][d]["thinking_tokens"] for d in levels],
            marker="o", label=r["title"])
  ax.set_xlabel("difficulty level")
  ax.set_ylabel("mean thinking tokens")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
