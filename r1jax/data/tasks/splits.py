"""Which split a procedural problem belongs to: a hash of its canonical text (the prompt), so the
same problem lands in the same split whatever the seed, and train / eval / test never overlap."""

from __future__ import annotations

import hashlib

# Fractions of the problem space per split; eval and test are small held-out slices.
SPLIT_FRACTIONS = {"train": 0.8, "eval": 0.1, "test": 0.1}


def split_of(canonical: str) -> str:
  digest = hashlib.sha256(canonical.encode("utf-8")).digest()
  u = int.from_bytes(digest[:8], "big") / 2.0**64
  edge = 0.0
  for split, fraction in SPLIT_FRACTIONS.items():
    edge += fraction
    if u < edge:
      return split
  return "test"
