"""The rollout engine: G sampled completions per prompt, with exact per-token log-probs.

:func:`sample` prefills each left-padded prompt once, shares its KV cache with the prompt's G
samples, and decodes them in one jitted ``lax.while_loop`` that stops at EOS or the token budget;
it returns a :class:`Rollout` (tokens, log-probs of the tempered untruncated distribution, lengths,
finish reasons). :func:`sample_chunks` does the same for large rollouts in memory-sized chunks and
yields each one as soon as it is finished. Both run sharded under ``r1jax.mesh.use_mesh``.
Decode steps read each cache only up to its filled blocks (``attention='filled'``), and with
``refill_slots`` a call decodes its rows in that many slots, refilled as rows end (`refill.py`);
every choice draws the same tokens for the same rng.
"""

from r1jax.rollout.chunks import sample_chunks
from r1jax.rollout.config import SamplingConfig
from r1jax.rollout.sampler import Rollout, sample

__all__ = ["Rollout", "SamplingConfig", "sample", "sample_chunks"]
