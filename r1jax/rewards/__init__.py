"""Rule-based rewards for RL with verifiable rewards, computed on the host CPU next to the sampler.

Verifiers are pure functions from a completion and its reference data to a float: ``math`` (answer
equivalence with sympy), ``code`` (unit tests run in the ``sandbox``), ``choice`` (multiple-choice
options), ``fmt`` (the R1 ``<think>``/``<answer>`` format) and ``language`` (language consistency of
the chain of thought); ``extract`` finds the answer they grade. ``compose`` weights them per data
type as ``config.RewardConfig`` says, and ``service.RewardService`` runs them in a pool of worker
processes that accepts completions chunk by chunk while sampling continues. Time limits count CPU
time (``program_clock`` charges a jailed program), so verdicts do not depend on load. Submodules
are imported explicitly (``from r1jax.rewards import math``) so that importing the package stays
cheap.
"""
