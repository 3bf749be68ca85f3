"""The demo base model's card: what RL will have to work with, measured on the model itself.

Written next to the exported model (``card.json``, ``card.md``, ``pretraining_loss.png``) by the
``base_model`` job, from:
- samples of the new model at the eval temperature on the eval split: each trace style's share of
  the samples and its accuracy, overall and per difficulty (styles as :func:`traces.style_of`
  reads them);
- teacher-forced loss per token class on clean traces of the eval problems: digits copied from
  earlier text, the operands of an addition, its result digits, and the final answer;
- the pretraining loss curve from the run's ``metrics.jsonl``.
The gate says whether the base is worth shipping: RL needs accurate step-by-step behaviour to
select, one-shot guesses that are mostly wrong, room to improve, and self-checking that pays.

``python -m r1jax.sft.model_card DIR`` prints a card's gate and exits 1 when it fails.
"""

from __future__ import annotations

import collections
import json
import os
import random
import re
import sys
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from r1jax.data.pipeline import load_examples, prompt_token_ids
from r1jax.data.tasks import sums
from r1jax.data.templates import apply_template
from r1jax.data.tokenizers import Tokenizer
from r1jax.models import ModelConfig
from r1jax.sft import traces
from r1jax.sft.loss import token_nll

CARD_JSON = "card.json"
STEPS_MIN_ACCURACY = 0.70
DIRECT_MAX_ACCURACY = 0.25
PASS1_RANGE = (0.10, 0.40)
TOKEN_CLASSES = ("copied", "operand", "result", "answer", "other")
_ADDITION = re.compile(r"(\d+) \+ (\d+) = (\d+)")
_ANSWER = re.compile(r"<answer>\s*(\d+)")


def style_table(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
  """Per style: share of the samples, accuracy, and both per difficulty."""
  def cell(group, total):
    return {"samples": len(group), "share": len(group) / total if total else 0.0,
            "accuracy": float(np.mean([s["correct"] for s in group])) if group else None}
  out = {}
  for style in traces.STYLES:
    mine = [s for s in samples if traces.style_of(s["completion"]) == style]
    out[style] = cell(mine, len(samples))
    out[style]["by_difficulty"] = {}
    for d in sorted({s["difficulty"] for s in samples}):
      level = [s for s in samples if s["difficulty"] == d]
      out[style]["by_difficulty"][str(d)] = cell([s for s in mine if s["difficulty"] == d],
                                                 len(level))
  return out


def char_classes(completion: str) -> list[str]:
  """The token class of each character of a trace: digits of an addition's operands and result,
  of the final answer, and every other digit (copied from earlier text); non-digits are 'other'."""
  labels = ["copied" if c.isdigit() else "other" for c in completion]
  for match in _ADDITION.finditer(completion):
    for group, label in ((1, "operand"), (2, "operand"), (3, "result")):
      labels[match.start(group):match.end(group)] = [label] * (match.end(group) - match.start(group))
  for match in _ANSWER.finditer(completion):
    labels[match.start(1):match.end(1)] = ["answer"] * (match.end(1) - match.start(1))
  return labels


def token_classes(completion: str, ids: Sequence[int], tokenizer: Tokenizer) -> list[str]:
  """One class per token: that of the token's first non-space character (any tokenizer)."""
  labels, out, start = char_classes(completion), [], 0
  for i in range(len(ids)):
    end = len(tokenizer.decode(ids[:i + 1]))
    span = [labels[j] for j in range(start, min(end, len(labels))) if not completion[j].isspace()]
    out.append(span[0] if span else "other")
    start = end
  return out


def token_class_losses(model_cfg: ModelConfig, params, tokenizer: Tokenizer, template: str,
                       pairs: Sequence[tuple[str, str]]) -> dict[str, dict[str, float]]:
  """Mean teacher-forced NLL (nats) and token count per class over (question, trace) pairs."""
  prompts = [prompt_token_ids(apply_template(template, q), tokenizer) for q, _ in pairs]
  completions = [tokenizer.encode(c) for _, c in pairs]
  length = max(len(p) + len(c) for p, c in zip(prompts, completions))
  tokens = np.zeros((len(pairs), length), np.int32)
  segment_ids = np.zeros((len(pairs), length), np.int32)   # 0 = padding, never attended to
  for row, (p, c) in enumerate(zip(prompts, completions)):
    tokens[row, :len(p) + len(c)] = p + c
    segment_ids[row, :len(p) + len(c)] = 1
  batch = {"tokens": tokens, "targets": np.roll(tokens, -1, axis=1), "segment_ids": segment_ids,
           "positions": np.broadcast_to(np.arange(length, dtype=np.int32), tokens.shape),
           "loss_mask": segment_ids > 0}
  nll, _ = jax.jit(lambda p, b: token_nll(model_cfg, p, b))(params, jax.tree.map(jnp.asarray, batch))
  nll = np.asarray(nll)
  totals: dict[str, list[float]] = collections.defaultdict(list)
  for row, ((_, text), p, c) in enumerate(zip(pairs, prompts, completions)):
    # Completion token j is predicted at position len(p) + j - 1.
    for j, label in enumerate(token_classes(text, c, tokenizer)):
      totals[label].append(float(nll[row, len(p) + j - 1]))
  return {label: {"nats": float(np.mean(totals[label])), "tokens": len(totals[label])}
          for label in TOKEN_CLASSES if totals[label]}


def clean_traces(questions: Sequence[str], seed: int = 0) -> list[tuple[str, str, str]]:
  """(style, question, slip-free trace) for the steps and reflective styles of each question."""
  mix = traces.TraceMix(step_slip=0.0, reflective_slip=0.0)
  rng = random.Random(f"r1jax/card/{seed}")
  return [(style, q, traces.TRACE_STYLES[style](rng, sums.terms_of(q), mix))
          for q in questions for style in ("steps", "reflective")]


def gate(table: dict[str, Any], pass1: float) -> dict[str, Any]:
  """The shipping gate; each check with its measured value."""
  steps, direct, reflective = (table[s]["accuracy"] for s in ("steps", "direct", "reflective"))
  checks = {
      f"steps accuracy >= {STEPS_MIN_ACCURACY}": steps is not None and steps >= STEPS_MIN_ACCURACY,
      f"direct accuracy <= {DIRECT_MAX_ACCURACY}": direct is None or direct <= DIRECT_MAX_ACCURACY,
      f"pass@1 in [{PASS1_RANGE[0]}, {PASS1_RANGE[1]}]": PASS1_RANGE[0] <= pass1 <= PASS1_RANGE[1],
      "reflective accuracy > steps accuracy": (reflective is not None and steps is not None
                                               and reflective > steps),
  }
  return {"checks": checks, "passed": all(checks.values())}


def read_curve(workdir: str) -> list[tuple[int, float]]:
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  with open(path, encoding="utf-8") as f:
    rows = [json.loads(line) for line in f if line.strip()]
  return [(r["step"], r["loss"]) for r in rows if "loss" in r]


def make_card(exp, model_cfg: ModelConfig, params, tokenizer: Tokenizer, workdir: str
              ) -> dict[str, Any]:
  """Samples the model on `exp.eval` and measures it; the card as a dict."""
  from r1jax.experience import evaluate_policy  # the sampler; heavy, only here
  metrics, samples = evaluate_policy(exp, model_cfg, params, tokenizer, seed=exp.sft.seed)
  table = style_table(samples)
  questions = [e["prompt"] for e in load_examples(exp.data, exp.eval.split)][:exp.eval.num_problems]
  losses = {}
  for style in ("steps", "reflective"):
    pairs = [(q, t) for s, q, t in clean_traces(questions) if s == style]
    losses[style] = token_class_losses(model_cfg, params, tokenizer, exp.data.template, pairs)
  return {"eval": {"split": exp.eval.split, "problems": exp.eval.num_problems,
                   "samples_per_problem": exp.eval.num_samples,
                   "temperature": exp.eval.temperature},
          "pass@1": metrics["pass@1"], f"pass@{exp.eval.num_samples}":
              metrics.get(f"pass@{exp.eval.num_samples}_unbiased"),
          "response_length": metrics["response_length"],
          "styles": table, "token_losses": losses, "gate": gate(table, metrics["pass@1"]),
          "pretraining_curve": read_curve(workdir),
          "examples": {style: next((s["completion"] for s in samples
                                    if traces.style_of(s["completion"]) == style), None)
                       for style in traces.STYLES}}


def _pct(value) -> str:
  return "-" if value is None else f"{100 * value:.0f}%"


def card_markdown(card: dict[str, Any]) -> str:
  ev = card["eval"]
  levels = sorted(card["styles"]["steps"]["by_difficulty"], key=int)
  lines = ["# Demo base model card", "",
           f"Sampled at T={ev['temperature']} on {ev['problems']} {ev['split']} problems x "
           f"{ev['samples_per_problem']} samples: pass@1 {card['pass@1']:.3f}, mean length "
           f"{card['response_length']:.1f} tokens.", "",
           "| style | share | accuracy | " + " | ".join(f"d={d} share / acc" for d in levels) + " |",
           "|---|---|---|" + "---|" * len(levels)]
  for style, row in card["styles"].items():
    cells = [f"{_pct(row['by_difficulty'][d]['share'])} / {_pct(row['by_difficulty'][d]['accuracy'])}"
             for d in levels]
    lines.append(f"| {style} | {_pct(row['share'])} | {_pct(row['accuracy'])} | "
                 + " | ".join(cells) + " |")
  lines += ["", "Teacher-forced loss (nats per token) on clean traces of the same problems:", "",
            "| trace | " + " | ".join(TOKEN_CLASSES) + " |", "|---|" + "---|" * len(TOKEN_CLASSES)]
  for style, row in card["token_losses"].items():
    lines.append(f"| {style} | " + " | ".join(
        f"{row[c]['nats']:.3f}" if c in row else "-" for c in TOKEN_CLASSES) + " |")
  lines += ["", f"Gate: **{'PASSED' if card['gate']['passed'] else 'FAILED'}**", ""]
  lines += [f"- [{'x' if ok else ' '}] {name}" for name, ok in card["gate"]["checks"].items()]
  if card["pretraining_curve"]:
    first, last = card["pretraining_curve"][0], card["pretraining_curve"][-1]
    lines += ["", f"Pretraining loss {first[1]:.3f} (step {first[0]}) -> {last[1]:.3f} "
              f"(step {last[0]}): ![loss](pretraining_loss.png)"]
  lines += ["", "One sample per style:", ""]
  lines += [f"- {style}: `{text.strip()}`" for style, text in card["examples"].items() if text]
  return "\n".join(lines) + "\n"


def write_card(card: dict[str, Any], out_dir: str) -> None:
  with open(os.path.join(out_dir, CARD_JSON), "w", encoding="utf-8") as f:
    json.dump(card, f, indent=2)
  with open(os.path.join(out_dir, "card.md"), "w", encoding="utf-8") as f:
    f.write(card_markdown(card))
  if card["pretraining_curve"]:
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    steps, losses = zip(*card["pretraining_curve"])
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(steps, losses)
    ax.set(xlabel="step", ylabel="loss (nats/token)", yscale="log", title="Pretraining")
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "pretraining_loss.png"), dpi=100)
    plt.close(fig)


def main(argv: Sequence[str]) -> int:
  if len(argv) != 2:
    print(f"usage: python -m r1jax.sft.model_card MODEL_DIR (a directory holding {CARD_JSON})",
          file=sys.stderr)
    return 2
  path = os.path.join(argv[1], CARD_JSON)
  if not os.path.exists(path):
    print(f"no model card at {path}; `make base-model` writes it", file=sys.stderr)
    return 2
  with open(path, encoding="utf-8") as f:
    card = json.load(f)
  print(card_markdown(card))
  return 0 if card["gate"]["passed"] else 1


if __name__ == "__main__":
  sys.exit(main(sys.argv))
