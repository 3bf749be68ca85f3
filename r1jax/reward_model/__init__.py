"""Reward models for general (non-verifiable) data: a scalar head on the policy trunk.

`model` (the scorer and its files), `preferences` (pairwise data, incl. the embedded synthetic
set), `train` (Bradley-Terry training; the `reward_model` job is `r1jax.jobs.reward_model`), `hook`
(adding its scores to the rewards of RL stage 2 for the last N steps), `config` (the two config
sections).
"""
