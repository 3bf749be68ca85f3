"""Prompt templates: the R1-Zero template verbatim from the DeepSeek-R1 paper (R1_REFERENCE.md) with
the bare question substituted for "prompt", and a chat template in the ChatML form that Qwen-style
tokenizers use (``<|im_start|>`` / ``<|im_end|>``), ending where the assistant starts to answer."""

from __future__ import annotations

from collections.abc import Callable

R1_ZERO = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves "
    "it. The assistant first thinks about the reasoning process in the mind and then provides the "
    "user with the answer. The reasoning process and answer are enclosed within <think>...</think> "
    "and <answer>...</answer> tags, respectively, i.e., <think> reasoning process here </think> "
    "<answer> answer here </answer>. User: {prompt}. Assistant:")

CHAT_SYSTEM = (
    "You are a helpful assistant. Think about the reasoning process first, then give the answer. "
    "Enclose the reasoning in <think> </think> and the answer in <answer> </answer>.")


def r1_zero(prompt: str) -> str:
  return R1_ZERO.format(prompt=prompt)


def chat(prompt: str) -> str:
  return (f"<|im_start|>system\n{CHAT_SYSTEM}<|im_end|>\n"
          f"<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n")


TEMPLATES: dict[str, Callable[[str], str]] = {"r1_zero": r1_zero, "chat": chat}


def apply_template(name: str, prompt: str) -> str:
  try:
    template = TEMPLATES[name]
  except KeyError:
    raise ValueError(f"unknown template {name!r}; known: {', '.join(TEMPLATES)}") from None
  return template(prompt)
