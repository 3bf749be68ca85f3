"""Worker of tests/test_distributed.py: a few GRPO steps of a tiny model on a fixed batch.

Run under launch/local.py (several processes) or alone (one process with all devices):

  python tests/distributed_worker.py OUT_DIR [--die_after=STEP] [--late_exit_s=SECONDS]

Every process loads only its own rows of the batch (`distributed.process_rows`), the step's
metrics are written by process 0 to OUT_DIR/metrics.json, and the final state is checkpointed to
OUT_DIR/ckpt by all processes. With --die_after, process 1 exits abruptly after that step while
the others keep stepping, to show that they stop with an error instead of hanging. With
--late_exit_s, process 1 reaches the shutdown barrier that much later than the others, as a
straggler on a busy host would.
"""

import json
import os
import sys
import time

import numpy as np

from r1jax import distributed

distributed.initialize()

import jax  # noqa: E402  (after jax.distributed is up)

from r1jax import models  # noqa: E402
from r1jax.checkpoint import Checkpointer  # noqa: E402
from r1jax.mesh import MeshConfig, make_mesh  # noqa: E402
from r1jax.rl.config import GRPOConfig, OptimConfig  # noqa: E402
from r1jax.rl.step import init_train_state, make_train_step  # noqa: E402

MODEL = models.ModelConfig()
GRPO = GRPOConfig(num_generations=4, micro_batches=2)
OPTIM = OptimConfig(lr=1e-2, weight_decay=0.0)
MESH = MeshConfig(ici=(1, 4, 1, 1), dcn=(2, 1, 1, 1))   # data across processes, fsdp inside
STEPS = 3


def synthetic_batch(prompts=4, prompt_len=8, completion_len=8, g=GRPO.num_generations):
  """The same fixed batch in every process (seeded), as numpy."""
  rng = np.random.default_rng(0)
  n = prompts * g
  lengths = rng.integers(1, completion_len + 1, size=n)
  mask = np.arange(completion_len)[None] < lengths[:, None]
  return {"prompt_tokens": rng.integers(1, MODEL.vocab_size, (prompts, prompt_len), dtype=np.int32),
          "prompt_mask": np.ones((prompts, prompt_len), bool),
          "completion_tokens": rng.integers(1, MODEL.vocab_size, (n, completion_len), dtype=np.int32),
          "completion_mask": mask,
          "old_logprobs": np.where(mask, -rng.random((n, completion_len)) * 5, 0).astype(np.float32),
          "ref_logprobs": np.where(mask, -rng.random((n, completion_len)) * 5, 0).astype(np.float32),
          "advantages": rng.standard_normal(n).astype(np.float32),
          "truncated": lengths == completion_len}


def run(out_dir: str, die_after: int | None = None, steps: int = STEPS) -> list[dict]:
  mesh = make_mesh(MESH)
  full = synthetic_batch()
  rows = {k: v.shape[0] for k, v in full.items()}
  local = {k: v[distributed.process_rows(v.shape, mesh)] for k, v in full.items()}
  batch = distributed.global_batch(local, rows, mesh)
  state = init_train_state(MODEL, OPTIM, jax.random.key(0), mesh)
  # Compiled first, then started together: on a busy host tracing and compiling can set the
  # processes further apart than the 30 s CPU collectives give a late one (distributed.barrier).
  train_step = jax.jit(make_train_step(MODEL, GRPO, OPTIM, mesh)).lower(state, batch).compile()
  distributed.barrier("first_step")
  history = []
  step = 0
  while step < steps or die_after is not None:
    state, metrics = train_step(state, batch)
    history.append({k: float(v) for k, v in metrics.items()})   # a cross-process fetch
    step += 1
    if die_after is not None and step == die_after and jax.process_index() == 1:
      os._exit(3)   # abrupt: no shutdown, like a crashed node
  ckpt = Checkpointer(os.path.join(out_dir, "ckpt"), async_save=False)
  ckpt.save(steps, {"train": state}, {"step": steps}, force=True)
  ckpt.close()
  if distributed.is_chief():
    with open(os.path.join(out_dir, "metrics.json"), "w") as f:
      json.dump({"processes": jax.process_count(), "local_rows": local["advantages"].shape[0],
                 "history": history}, f)
  return history, state


def _flag(name: str, default, kind):
  values = [kind(a.split("=", 1)[1]) for a in sys.argv[2:] if a.startswith(f"--{name}=")]
  return values[0] if values else default


if __name__ == "__main__":
  run(sys.argv[1], _flag("die_after", None, int))
  if jax.process_index() == 1:
    time.sleep(_flag("late_exit_s", 0.0, float))
  distributed.shutdown()
