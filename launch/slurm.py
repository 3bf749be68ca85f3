"""Writes (and optionally submits) the sbatch script of one run on N nodes x G GPUs.

  python launch/slurm.py --nodes=64 --config=experiments/r1_zero.py:30b --workdir=/shared/runs/30b \
      [--partition=...] [--time=48:00:00] [--override=rl.kl_coef=0.01 ...] [--submit]

One task per node sees all its GPUs; the first node of the allocation hosts the JAX coordinator.
Each task exports ``R1JAX_COORDINATOR`` / ``R1JAX_NUM_PROCESSES`` / ``R1JAX_PROCESS_ID`` for
``r1jax.distributed.initialize`` (which would also read SLURM's own variables) and runs
``python -m r1jax.main``. The mesh comes from the config: check it with ``python -m r1jax.plan``
first. Sweep arrays are written by ``launch/sweep.py --slurm``.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys

from r1jax import cli

# Overlap collectives with compute; keep 10% of HBM for NCCL and the CUDA context.
XLA_FLAGS = "--xla_gpu_enable_latency_hiding_scheduler=true"
ENV = {"XLA_PYTHON_CLIENT_MEM_FRACTION": "0.9", "NCCL_DEBUG": "WARN",
       "R1JAX_HEARTBEAT_TIMEOUT_S": "300", "TF_CPP_MIN_LOG_LEVEL": "1"}

TEMPLATE = """#!/bin/bash
#SBATCH --job-name={name}
#SBATCH --nodes={nodes}
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node={gpus}
#SBATCH --exclusive
#SBATCH --output={workdir}/slurm-%j.out
{extra_sbatch}
set -euo pipefail
# Site-specific NCCL settings belong here, e.g. NCCL_SOCKET_IFNAME / NCCL_IB_HCA for your fabric.
{exports}
export XLA_FLAGS="{xla_flags} ${{XLA_FLAGS:-}}"
COORDINATOR_HOST=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
export R1JAX_COORDINATOR="$COORDINATOR_HOST:{port}"
export R1JAX_NUM_PROCESSES="$SLURM_NNODES"
mkdir -p {workdir}
cd {repo}
srun --kill-on-bad-exit=1 bash -c 'R1JAX_PROCESS_ID=$SLURM_PROCID exec {command}'
"""


def sbatch_text(*, nodes: int, gpus: int, config: str, workdir: str, python: str, repo: str,
                overrides=(), partition: str | None = None, time_limit: str | None = None,
                account: str | None = None, port: int = 12345) -> str:
  extra = [f"#SBATCH --{k}={v}" for k, v in (("partition", partition), ("time", time_limit),
                                              ("account", account)) if v]
  command = [python, "-m", "r1jax.main", f"--config={config}", f"--workdir={workdir}"]
  command += [f"--config.{o}" for o in overrides]
  return TEMPLATE.format(
      name=os.path.basename(os.path.normpath(workdir)) or "r1jax", nodes=nodes, gpus=gpus,
      workdir=shlex.quote(workdir), extra_sbatch="\n".join(extra),
      exports="\n".join(f"export {k}={shlex.quote(v)}" for k, v in ENV.items()),
      xla_flags=XLA_FLAGS, port=port, repo=shlex.quote(repo),
      command=" ".join(shlex.quote(c) for c in command).replace("'", "'\"'\"'"))


def _check(args, repo: str) -> None:
  """The arguments a cluster would only reject after queueing, checked now."""
  if args.nodes < 1 or args.gpus_per_node < 1:
    raise cli.BadInput(f"--nodes and --gpus_per_node must be >= 1; got {args.nodes} and "
                       f"{args.gpus_per_node}")
  config_file = args.config.partition(":")[0]
  if not any(os.path.isfile(p) for p in (config_file, os.path.join(repo, config_file))):
    raise cli.BadInput(f"--config: no experiment file at {config_file} (the job runs in {repo})")
  for override in args.override:
    if "=" not in override or not override.split("=", 1)[0]:
      raise cli.BadInput(f"--override={override}: expected section.key=value, e.g. "
                         "rl.kl_coef=0.01")
  if not 1 <= args.port <= 65535:
    raise cli.BadInput(f"--port must be in [1, 65535]; got {args.port}")


class _Parser(argparse.ArgumentParser):
  def error(self, message):  # one line instead of the whole usage text
    raise cli.BadInput(f"{message} (--help lists the flags)")


def main(argv=None) -> int:
  parser = _Parser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--nodes", type=int, required=True)
  parser.add_argument("--gpus_per_node", type=int, default=8)
  parser.add_argument("--config", required=True)
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--override", action="append", default=[], help="key=value, repeatable")
  parser.add_argument("--partition")
  parser.add_argument("--time")
  parser.add_argument("--account")
  parser.add_argument("--port", type=int, default=12345)
  parser.add_argument("--python", default=sys.executable, help="interpreter on the nodes")
  parser.add_argument("--out", help="where to write the script (default <workdir>/job.sbatch)")
  parser.add_argument("--submit", action="store_true", help="sbatch it after writing")
  parser.add_argument("--verbose", action="store_true", help="on an error, show the traceback")
  args = parser.parse_args(argv)
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  _check(args, repo)
  text = sbatch_text(nodes=args.nodes, gpus=args.gpus_per_node, config=args.config,
                     workdir=args.workdir, python=args.python, repo=repo, overrides=args.override,
                     partition=args.partition, time_limit=args.time, account=args.account,
                     port=args.port)
  out = args.out or os.path.join(args.workdir, "job.sbatch")
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  with open(out, "w") as f:
    f.write(text)
  print(out)
  if args.submit:
    return subprocess.call(["sbatch", out])
  return 0


if __name__ == "__main__":
  with cli.reporting_errors():
    sys.exit(main())
