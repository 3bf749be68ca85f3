"""Prompt data for RL with verifiable rewards: procedural math / code / STEM / logic tasks that work
offline (:mod:`r1jax.data.tasks`), TFDS builders writing them and user-provided GSM8K, MATH,
MMLU-style, MBPP / HumanEval and generic JSONL files as ArrayRecord (:mod:`r1jax.data.builders`),
templates and tokenizers, and the Grain pipeline (:mod:`r1jax.data.pipeline`) that turns a split
into seeded, sharded, resumable batches of Q left-padded prompts with their gold answers.
"""
