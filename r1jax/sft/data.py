"""Where SFT examples come from: trace JSONL files and generated cold-start traces.

A trace file has one JSON object per line with the raw question in "prompt" and the response in
"completion" (the rejection job writes exactly this, plus metadata). "cold_start" generates the
paper's cold-start data at demo scale: one correct, readable trace per train-split question of
the data pipeline (chained sums only, the task `r1jax.sft.traces` knows how to solve). Either way
the prompt gets the experiment's template and BOS exactly as the RL pipeline feeds it, and the
completion ends with EOS, so SFT and RL see the same token layout.
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Iterable
from typing import Any

from r1jax.data.pipeline import load_examples, prompt_token_ids
from r1jax.data.tasks import sums
from r1jax.data.templates import apply_template
from r1jax.data.tokenizers import Tokenizer
from r1jax.sft import traces
from r1jax.sft.train import COLD_START


def read_traces(path: str) -> list[dict[str, Any]]:
  """Rows of a trace JSONL file; each must have string "prompt" and "completion" fields."""
  rows = []
  with open(path, encoding="utf-8") as f:
    for line_no, line in enumerate(f, start=1):
      if not line.strip():
        continue
      row = json.loads(line)
      if not isinstance(row.get("prompt"), str) or not isinstance(row.get("completion"), str):
        raise ValueError(f"{path}:{line_no}: a trace row needs string 'prompt' and 'completion'")
      rows.append(row)
  return rows


def cold_start_traces(examples: Iterable[dict[str, Any]], style: str, seed: int) -> list[dict]:
  """One correct trace per chained-sum example: readable steps, or steps with caught slips."""
  # No slips in "steps"; "reflective" keeps its caught-and-fixed slips (the long-CoT habit).
  mix = dataclasses.replace(traces.TraceMix(), step_slip=0.0)
  rng = random.Random(f"r1jax/cold-start/{seed}")
  out = []
  for example in examples:
    try:
      terms = sums.terms_of(example["prompt"])
    except ValueError:
      raise ValueError(f"sft.data 'cold_start' generates traces for chained sums only; "
                       f"{example['source_id']} is not one ({example['prompt'][:60]!r}). Use "
                       "data.procedural_kinds=('chain_sum',) or pass trace JSONL files") from None
    completion = getattr(traces, style)(rng, terms, mix)
    out.append({"prompt": example["prompt"], "completion": completion})
  return out


def sft_rows(exp) -> list[dict[str, Any]]:
  """Every (prompt, completion) row that `exp.sft.data` names, in order, capped by max_examples."""
  rows = []
  for source in exp.sft.data:
    if source == COLD_START:
      rows += cold_start_traces(load_examples(exp.data, "train"), exp.sft.cold_start_style,
                                exp.sft.seed)
    else:
      rows += read_traces(source)
  return rows[:exp.sft.max_examples] if exp.sft.max_examples else rows


def token_pairs(rows: Iterable[dict[str, Any]], tokenizer: Tokenizer, template: str
                ) -> list[tuple[list[int], list[int]]]:
  """(templated prompt ids with BOS, completion ids + EOS) per row."""
  return [(prompt_token_ids(apply_template(template, r["prompt"]), tokenizer),
           tokenizer.encode(r["completion"]) + [tokenizer.eos_id]) for r in rows]
