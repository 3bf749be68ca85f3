"""The jobs an experiment runs, one room each, and the registry that lists them once.

`rl` is R1-Zero-style GRPO (`r1jax.train`); `base_model` regenerates the demo's tiny base model
(`base_model`); `sft` is cold-start SFT or distillation (`sft`); `rejection` samples and filters
traces (`rejection`); `reward_model` trains a Bradley-Terry reward model (`reward_model`);
`evaluate` scores a policy (`evaluate`); `pipeline` runs stages of these in order (`stages`, its
report in `stages_report`). `run(exp, workdir)` dispatches through `registry.JOBS`.
"""

from r1jax.jobs.registry import JOBS, run
