"""Examples per second through the prompt pipeline (read, template, tokenize, left-pad, batch),
against the rate at which the rollout consumes questions (default: the demo's 8 questions per step
every 2 s). Prints the headroom ratio; the goal is at least 10x. Builds a procedural TFDS dataset
in a temporary data dir unless --data_dir is given.

  .venv/bin/python -m benchmarks.data_pipeline [--tokenizer=char|PATH] [--worker_count=0] [--read_threads=4]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import tensorflow_datasets as tfds

from benchmarks import machine
from r1jax.data import pipeline
from r1jax.data.config import DataConfig
from r1jax.data.tokenizers import load_tokenizer


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--data_dir", default="", help="TFDS data dir (default: a temporary one)")
  parser.add_argument("--tokenizer", default="char", help="'char' or a tokenizer.json / directory")
  parser.add_argument("--questions_per_step", type=int, default=8)
  parser.add_argument("--step_seconds", type=float, default=2.0,
                      help="seconds per rollout step that consumes questions_per_step questions")
  parser.add_argument("--max_prompt_len", type=int, default=1024)
  parser.add_argument("--examples_per_level", type=int, default=500)
  parser.add_argument("--read_threads", type=int, default=4)
  parser.add_argument("--worker_count", type=int, default=0)
  parser.add_argument("--batches", type=int, default=400, help="batches to time")
  machine.add_flags(parser, repeats=None)
  args = parser.parse_args()
  with machine.Session(args) as session:
    measure(args, session)


def measure(args, session: machine.Session) -> None:
  tfds.display_progress_bar(False)
  data_dir = args.data_dir or tempfile.mkdtemp(prefix="r1jax_bench_")
  config = DataConfig(data_dir=data_dir, procedural_sizes=(args.examples_per_level, 10, 10),
                      max_prompt_len=args.max_prompt_len, questions_per_step=args.questions_per_step,
                      num_epochs=1000.0, read_threads=args.read_threads,
                      worker_count=args.worker_count)
  config.validate()
  tokenizer = load_tokenizer(args.tokenizer)

  start = time.perf_counter()
  data = pipeline.make_prompt_dataset(config, tokenizer, "train", seed=0)
  iterator = iter(data.dataset)
  next(iterator)  # start-up (build if needed, scan, first batch) is timed apart from the steady state
  startup = time.perf_counter() - start

  start = time.perf_counter()
  for _ in range(args.batches):
    next(iterator)
  elapsed = time.perf_counter() - start
  if hasattr(iterator, "close"):
    iterator.close()

  produced = args.batches * data.questions_per_batch / elapsed
  consumed = args.questions_per_step / args.step_seconds
  print(f"dataset: {data.num_examples} train examples ({data.num_too_long} too long), "
        f"tokenizer={args.tokenizer}, P={args.max_prompt_len}, read_threads={args.read_threads}, "
        f"worker_count={args.worker_count}")
  print(f"start-up (build + scan + first batch): {startup:.2f} s")
  print(f"pipeline: {produced:,.0f} examples/s ({args.batches} batches of "
        f"{data.questions_per_batch} in {elapsed:.2f} s)")
  print(f"rollout consumes: {consumed:.1f} questions/s "
        f"({args.questions_per_step} per step every {args.step_seconds} s)")
  print(f"headroom: {produced / consumed:,.0f}x (goal >= 10x){session.mark()}")


if __name__ == "__main__":
  main()
