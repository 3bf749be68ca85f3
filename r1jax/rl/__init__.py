"""The GRPO learner: a pure-functional policy update that restates DeepSeek-R1's formula.

`advantages` turns one rollout's rewards into per-output advantages (GRPO, no-std, RLOO,
batch-std; optional KL-in-reward), `losses` the per-token clipped surrogate, KL estimators
(k1/k2/k3) and aggregation modes as (sum, denominator) pairs so micro-batching and data
parallelism give the exact global mean, `logprobs` the policy's per-token log-probs with each
prompt's KV computed once per group, `optim` the AdamW optimizer and its schedule, `step` the
sharded, donated `train_step(state, batch) -> (state, metrics)`, and `schedule` how a rollout
becomes minibatches of whole groups over inner epochs, and when the reference is reset.
"""

from r1jax.rl.config import GRPOConfig, OptimConfig
