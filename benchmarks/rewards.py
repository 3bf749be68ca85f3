"""Reward throughput: verifications per second for math and code, inline and with 1 and 2 workers.

Prints each rate and the ratios 2-worker / 1-worker and service / inline, plus a naive baseline for
context (math: bare ``math_verify`` calls; code: one unsandboxed ``python -c`` per program), and the
share of a simulated step that the trainer spends waiting in ``collect`` when completions are
submitted chunk by chunk while sampling. Worker start-up is excluded from the rates.

    .venv/bin/python -m benchmarks.rewards [--math N] [--code N]
"""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
import time

from benchmarks import machine
from r1jax.rewards import compose
from r1jax.rewards.config import RewardConfig
from r1jax.rewards.service import RewardService

_MATH = [("\\frac{1}{2}", "0.5"), ("x > 5", "5 < x"), ("[0,1)", "(0,1)"), ("y=2x+1", "y - 2x = 1"),
         ("\\{1,2,3\\}", "\\{3,2,1\\}"), ("50\\%", "0.5"), ("1-\\frac{1}{e}", "1+\\frac{1}{e}"),
         ("\\sqrt{8}", "2\\sqrt{2}"), ("1000000", "1,000,001"), ("x^2+2x+1", "(x+1)^2")]
_TESTS = "assert add(1, 2) == 3\nassert add(-4, 4) == 0\nassert add(10, 5) == 15\n"
_PROGRAMS = ["def add(a, b):\n    return a + b\n", "def add(a, b):\n    return a - b\n",
             "def add(a, b):\n    return sum(range(a + b + 1)) - sum(range(a + b))\n"]


def _example(data_type: str, gold: str) -> dict:
  return {"prompt": "q", "data_type": data_type, "gold": gold, "difficulty": 1, "source_id": "b"}


def math_items(n: int):
  # Distinct numbers per item so no cache makes repeats free.
  items = []
  for i in range(n):
    gold, answer = _MATH[i % len(_MATH)]
    items.append((f"<think>work</think><answer>{answer} + {i}</answer>",
                  _example("math", f"{gold} + {i}")))
  return items


def code_items(n: int):
  return [(f"<think>w</think><answer>```python\n{_PROGRAMS[i % 3]}```</answer>",
           _example("code", _TESTS)) for i in range(n)]


def rate_service(items, workers: int, cfg: RewardConfig) -> float:
  with RewardService(dataclasses.replace(cfg, num_workers=workers)) as svc:
    while svc.metrics()["workers_ready"] < workers:
      time.sleep(0.05)
    start = time.perf_counter()
    ticket = svc.submit([c for c, _ in items], [e for _, e in items])
    svc.collect(ticket)
    return len(items) / (time.perf_counter() - start)


def rate_inline(items, cfg: RewardConfig) -> float:
  start = time.perf_counter()
  compose.score_batch(cfg, [c for c, _ in items], [e for _, e in items])
  return len(items) / (time.perf_counter() - start)


def rate_naive_math(items) -> float:
  import math_verify

  start = time.perf_counter()
  for completion, example in items:
    answer = completion.split("<answer>")[1].split("</answer>")[0]
    math_verify.verify(math_verify.parse(f"${example['gold']}$"), math_verify.parse(f"${answer}$"))
  return len(items) / (time.perf_counter() - start)


def rate_naive_code(items) -> float:
  start = time.perf_counter()
  for completion, example in items:
    program = completion.split("```python\n")[1].split("```")[0]
    subprocess.run([sys.executable, "-c", program + example["gold"]], capture_output=True,
                   timeout=10, check=False)
  return len(items) / (time.perf_counter() - start)


def wait_share(cfg: RewardConfig, chunks: int = 8, sample_s: float = 0.25) -> float:
  """Share of a simulated step spent in collect: 8 chunks 'sampled' for 0.25 s each, mixed items."""
  items = math_items(8 * chunks) + code_items(2 * chunks)
  per = len(items) // chunks
  with RewardService(dataclasses.replace(cfg, num_workers=2)) as svc:
    while svc.metrics()["workers_ready"] < 2:
      time.sleep(0.05)
    start = time.perf_counter()
    ticket = None
    for k in range(chunks):
      time.sleep(sample_s)  # the device samples the next chunk meanwhile
      chunk = items[k * per:(k + 1) * per]
      ticket = svc.submit([c for c, _ in chunk], [e for _, e in chunk], ticket=ticket)
    svc.collect(ticket)
    step = time.perf_counter() - start
    return svc.metrics()["collect_wait_s"] / step


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--math", type=int, default=200)
  parser.add_argument("--code", type=int, default=30)
  machine.add_flags(parser, repeats=None)
  args = parser.parse_args()
  with machine.Session(args) as session:
    measure(args, session)


def measure(args, session: machine.Session) -> None:
  cfg = RewardConfig(format_weight=0.1, code_time_limit_s=2.0)
  for name, items, naive in (("math", math_items(args.math), rate_naive_math),
                             ("code", code_items(args.code), rate_naive_code)):
    rate_inline(items[:5], cfg)  # warm the imports
    naive_rate = naive(items)
    inline = rate_inline(items, cfg)
    one = rate_service(items, 1, cfg)
    two = rate_service(items, 2, cfg)
    print(f"{name}: naive {naive_rate:.1f}/s  inline {inline:.1f}/s  1 worker {one:.1f}/s  "
          f"2 workers {two:.1f}/s  |  2w/1w {two / one:.2f}x  2w/inline {two / inline:.2f}x  "
          f"inline/naive {inline / naive_rate:.2f}x{session.mark()}")
  print(f"trainer wait in collect: {100 * wait_share(cfg):.1f}% of a simulated step "
        f"(8 chunks x 0.25 s sampling, 80 mixed items, 2 workers){session.mark()}")


if __name__ == "__main__":
  main()
