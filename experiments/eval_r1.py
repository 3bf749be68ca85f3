"""The DeepSeek-R1 paper's evaluation protocol: the `evaluate` job on local benchmark files.

  python -m r1jax.main --config=experiments/eval_r1.py:paper --workdir=runs/eval \
      --config.base_model=runs/mine/export --config.data.manual_dir=DIR

k samples per question at temperature 0.6 and top-p 0.95 with a 32,768-token budget; pass@1 is
averaged over the k samples, cons@k is their majority vote, pass@k is unbiased. The benchmark
files go in DIR/r1_benchmarks/<name>/test.jsonl (see r1jax/data/benchmarks.py for each layout).
`protocol(c)` applies the same sampling to the eval section of any experiment (an RL run's
held-out evaluation), leaving the training rollout as it is.

Variants:
  paper  k = 64 on AIME, MATH-500, GPQA Diamond and LiveCodeBench; point --config.base_model at
         the model (a Hugging Face directory, e.g. a run's export)
  tiny   the protocol's sampling on the shipped demo model with k = 4 and a short budget, on the
         benchmark files of --config.data.manual_dir (the tests make small ones)
"""

import dataclasses

from ml_collections import config_dict

from r1jax.experiment import Experiment

TEMPERATURE, TOP_P, MAX_NEW_TOKENS = 0.6, 0.95, 32_768
BENCHMARKS = ("aime", "math500", "gpqa", "livecodebench")


def protocol(c: config_dict.ConfigDict, k: int = 64, max_new_tokens: int = MAX_NEW_TOKENS) -> None:
  """The paper's evaluation sampling in the eval section (an RL run's periodic evaluation and the
  evaluate job both read it)."""
  c.eval.temperature = TEMPERATURE
  c.eval.top_p = TOP_P
  c.eval.num_samples = k
  c.eval.pass_at = (1, k)
  c.eval.max_new_tokens = max_new_tokens


def get_config(arg: str = "paper") -> config_dict.ConfigDict:
  variant = arg or "paper"
  c = config_dict.ConfigDict(dataclasses.asdict(Experiment()))
  c.job = "evaluate"
  c.benchmarks.names = BENCHMARKS
  c.rollout.temperature = TEMPERATURE
  c.data.template = "chat"
  c.rl.num_minibatches = 1   # nothing trains; only the experiment's cross-section check reads it
  if variant == "paper":
    protocol(c)
    c.rollout.max_new_tokens = MAX_NEW_TOKENS
    c.rollout.prompts_per_chunk = 8
    c.data.max_prompt_len = 4096
    c.model.compute_dtype = "bfloat16"
    c.rollout.cache_dtype = "bfloat16"
  elif variant == "tiny":
    c.base_model = "builtin:demo"
    c.data.template = "r1_zero"
    protocol(c, k=4, max_new_tokens=96)
    c.rollout.max_new_tokens = 96
    c.rollout.prompts_per_chunk = 4
    c.data.max_prompt_len = 400
    c.rewards.num_workers = 1
  else:
    raise ValueError(f"unknown variant {variant!r}; known: paper, tiny")
  return c
