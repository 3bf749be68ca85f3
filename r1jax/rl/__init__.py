"""The GRPO learner: a pure-functional policy update that restates DeepSeek-R1's formula. It
takes arrays only; sampling, scoring and reference log-probs are the loop's (`r1jax.experience`).

`batch` is the typed learner input (`Groups` of Bp prompts x G outputs, and the `LearnerBatch` that
adds advantages), `advantages` turns one rollout's rewards into per-output advantages (GRPO, no-std,
RLOO, batch-std; optional KL-in-reward), `minibatch` applies dynamic sampling and splits a rollout
into minibatches of whole groups over inner epochs, `dynamic_sampling` DAPO's refill of a batch from
several rollouts, `losses` the policy losses (GRPO's per-token clipped surrogate, GSPO, CISPO), KL
estimators (k1/k2/k3) and aggregation modes as (sum, denominator) pairs so micro-batching and data
parallelism give the exact global mean, `corrections` the sampler-vs-learner mismatch metrics and
the TIS / MIS importance weights, `logprobs` the policy's per-token log-probs with each prompt's KV
computed once per group, `optim` the AdamW optimizer and its schedule, `step` the born-sharded train
state and the sharded, donated `train_step(state, batch) -> (state, metrics)`, `reference` when
pi_ref is replaced, and `offload` where the train state waits (host memory) while the sampler
runs or between updates.
"""

from r1jax.rl.config import GRPOConfig, OptimConfig
