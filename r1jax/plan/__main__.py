"""Compile-only plan of an experiment on a target cluster: ``python -m r1jax.plan --config=...``.

  python -m r1jax.plan --config=experiments/r1_zero.py:30b --mesh=ici:1,8,1,1,dcn:64,1,1,1 [--search]

It fakes the target's devices on the CPU (it re-executes itself with
``--xla_force_host_platform_device_count`` set before JAX starts), compiles the real train step
and the real sampler on abstract inputs (`compiled`), and prints per-device memory from XLA
beside an analytic count (`memory`), FLOPs, collective bytes by kind, a predicted time on the
accelerator's stated peaks (`hardware`), whether it fits, and what to change if it does not
(`estimate`, printed by `render`). ``--search`` plans a few mesh shapes of the same size and ranks
them. ``--json_out`` writes the figures for scripts and tests.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys

from absl import flags
from ml_collections import config_flags

from r1jax import cli, experiment
from r1jax.mesh import MeshConfig, parse_mesh_flag
from r1jax.plan.estimate import GB, candidate_meshes, plan_one
from r1jax.plan.hardware import ACCELERATORS
from r1jax.plan.render import report

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file[:variant].",
                                          lock_config=True)
_MESH = flags.DEFINE_string("mesh", None, "Target mesh 'ici:d,f,e,t,dcn:d,f,e,t'; default: the "
                            "config's mesh (an ici -1 takes a whole node).")
_ACCELERATOR = flags.DEFINE_enum("accelerator", "h800", ["h800", "h100"], "Peak figures to price on.")
_SEARCH = flags.DEFINE_bool("search", False, "Also plan a few mesh shapes of the same size; rank them.")
_JSON = flags.DEFINE_string("json_out", None, "Write the plan(s) as JSON here.")

_DEVICE_FLAG = "--xla_force_host_platform_device_count"


def _ensure_devices(count: int, argv: list[str]) -> None:
  """Re-executes this command with `count` fake CPU devices unless it already has them (the
  device count is fixed when JAX's backend starts, so it must be set in a fresh process)."""
  flags_now = os.environ.get("XLA_FLAGS", "")
  if f"{_DEVICE_FLAG}={count}" in flags_now.split() and os.environ.get("JAX_PLATFORMS") == "cpu":
    return
  others = [f for f in flags_now.split() if not f.startswith(_DEVICE_FLAG)]
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=" ".join(others + [f"{_DEVICE_FLAG}={count}"]))
  sys.stdout.flush()
  os.execve(sys.executable, [sys.executable, "-m", "r1jax.plan", *argv[1:]], env)


def _target_mesh(exp, accel):
  """The MeshConfig to plan: --mesh, or the config's with an ici -1 filled to a whole node."""
  cfg = parse_mesh_flag(_MESH.value) if _MESH.value else exp.mesh
  if -1 in cfg.ici:
    known = math.prod(s for s in cfg.ici if s != -1)
    cfg = dataclasses.replace(cfg, ici=tuple(accel.devices_per_node // known if s == -1 else s
                                             for s in cfg.ici))
  return MeshConfig(ici=tuple(cfg.ici), dcn=tuple(cfg.dcn), rules=exp.mesh.rules)


def main(argv):
  if len(argv) > 1:
    raise cli.BadInput(f"unexpected arguments: {argv[1:]} (flags are written --name=value)")
  accel = ACCELERATORS[_ACCELERATOR.value]
  exp = experiment.load(_CONFIG.value)
  target = _target_mesh(exp, accel)
  devices = math.prod(target.ici) * math.prod(target.dcn)
  _ensure_devices(devices, sys.argv)
  target.validate()
  plans = [plan_one(exp, target, accel)]
  print(report(plans[0], exp, accel), flush=True)
  if _SEARCH.value:
    for cfg in candidate_meshes(devices, accel.devices_per_node, exp.model.moe is not None):
      if (tuple(cfg.ici), tuple(cfg.dcn)) != (tuple(target.ici), tuple(target.dcn)):
        cfg = dataclasses.replace(cfg, rules=target.rules)
        plans.append(plan_one(exp, cfg, accel))
        print(f"  planned ici={cfg.ici} dcn={cfg.dcn}", flush=True)
    ranked = sorted(plans, key=lambda p: (not p["fits"], p["rl_step_s"],
                                          max(p["train"]["peak_bytes"], p["rollout"]["peak_bytes"])))
    print("\n== search: fitting layouts first, then by predicted RL step time")
    print("   rank  mesh (ici x dcn)                 fits   peak GB   train s  sampler s  RL step s")
    for i, p in enumerate(ranked, 1):
      name = f"{tuple(p['mesh']['ici'])} x {tuple(p['mesh']['dcn'])}"
      peak = max(p["train"]["peak_bytes"], p["rollout"]["peak_bytes"]) / GB
      print(f"   {i:4d}  {name:32s} {'yes' if p['fits'] else 'no ':5s} {peak:9.3g} "
            f"{p['train']['step_s']:9.3g} {p['rollout']['chunk_s']:10.3g} {p['rl_step_s']:10.3g}")
    best = ranked[0]
    print(f"   best: --mesh=ici:{','.join(map(str, best['mesh']['ici']))},"
          f"dcn:{','.join(map(str, best['mesh']['dcn']))}")
    plans = ranked
  if _JSON.value:
    with open(_JSON.value, "w") as f:
      json.dump(plans, f, indent=1, default=float)


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  cli.run(main)  # bad input: a one-line error; --verbose shows the traceback
