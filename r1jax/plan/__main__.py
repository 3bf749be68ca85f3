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
import functools
import json
import math
import os
import sys

from absl import flags
from ml_collections import config_flags

from r1jax import cli, experiment
from r1jax.mesh import MeshConfig, parse_mesh_flag
from r1jax.plan import gpu_target
from r1jax.plan.estimate import GB, RESPONSE_LENGTHS, candidate_meshes, plan_one
from r1jax.plan.hardware import ACCELERATORS
from r1jax.plan.render import report

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file[:variant].",
                                          lock_config=True)
_MESH = flags.DEFINE_string("mesh", None, "Target mesh 'ici:d,f,e,t,dcn:d,f,e,t'; default: the "
                            "config's mesh (an ici -1 takes a whole node).")
_ACCELERATOR = flags.DEFINE_enum("accelerator", "h800", list(ACCELERATORS),
                                 "The card: XLA:GPU compiles for it (when the CUDA compiler is "
                                 "installed) and its peak figures price the plan.")
_LENGTHS = flags.DEFINE_enum("response_lengths", "budget", list(RESPONSE_LENGTHS),
                             "How long rollout rows run when pricing the RL step: every row to "
                             "max_new_tokens, or lengths spread evenly from 0 to it.")
_CPU = flags.DEFINE_bool("cpu_compiler", False, "Compile with XLA:CPU even when XLA:GPU is there.")
_SEARCH = flags.DEFINE_bool("search", False, "Also plan a few mesh shapes of the same size; rank them.")
_JSON = flags.DEFINE_string("json_out", None, "Write the plan(s) as JSON here.")

_DEVICE_FLAG = "--xla_force_host_platform_device_count"


def _ensure_devices(count: int, argv: list[str]) -> None:
  """Re-executes this command with `count` fake CPU devices (the XLA:CPU stand-in) and the GPU
  compiler on its path unless it already has them (the device count is fixed when JAX's backend
  starts, and the CUDA plugin is found when JAX is imported, so both need a fresh process)."""
  flags_now = os.environ.get("XLA_FLAGS", "")
  path = gpu_target.pythonpath(os.environ.get("PYTHONPATH"))
  wanted = [f"{_DEVICE_FLAG}={count}", *gpu_target.XLA_FLAGS]
  if (set(wanted) <= set(flags_now.split()) and os.environ.get("JAX_PLATFORMS") == "cpu"
      and os.environ.get("PYTHONPATH") == path):
    return
  others = [f for f in flags_now.split() if not f.startswith(_DEVICE_FLAG) and f not in wanted]
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=" ".join(others + wanted))
  if path:
    env["PYTHONPATH"] = path
  sys.stdout.flush()
  os.execve(sys.executable, [sys.executable, "-m", "r1jax.plan", *argv[1:]], env)


def _target_mesh(exp, accel):
  """The MeshConfig to plan: --mesh, or the config's with an ici -1 filled to a whole node."""
  cfg = parse_mesh_flag(_MESH.value) if _MESH.value else exp.mesh
  if -1 in cfg.ici:
    known = math.prod(s for s in cfg.ici if s != -1)
    cfg = dataclasses.replace(cfg, ici=tuple(accel.devices_per_node // known if s == -1 else s
                                             for s in cfg.ici))
  return MeshConfig(ici=tuple(cfg.ici), dcn=tuple(cfg.dcn), rules=exp.mesh.rules,
                    sequence_axis=exp.mesh.sequence_axis)


def main(argv):
  if len(argv) > 1:
    raise cli.BadInput(f"unexpected arguments: {argv[1:]} (flags are written --name=value)")
  accel = ACCELERATORS[_ACCELERATOR.value]
  exp = experiment.load(_CONFIG.value)
  target = _target_mesh(exp, accel)
  devices = math.prod(target.ici) * math.prod(target.dcn)
  _ensure_devices(devices, sys.argv)
  target.validate()
  nodes = math.prod(target.dcn)   # the mesh's dcn axes span nodes, its ici axes a node
  gpus, why_not = (None, "--cpu_compiler") if _CPU.value else gpu_target.compile_only_devices(
      accel, nodes, devices // nodes)
  if gpus is None:
    compiler = "XLA:CPU stand-in"
    print(f"compiler: {compiler} for {accel.name} (XLA:GPU not used: {why_not}); XLA:CPU runs "
          "bf16 matmuls in f32, so its temp figures are above what the GPU would need", flush=True)
  else:
    compiler = gpu_target.compiler_name(accel)
    print(f"compiler: {compiler} for {nodes} x {devices // nodes} {accel.name}; memory, HLO FLOPs "
          "and collectives are its figures, times are estimates from the stated peaks", flush=True)
  one = functools.partial(plan_one, devices=gpus, compiler=compiler, lengths=_LENGTHS.value)
  plans = [one(exp, target, accel)]
  print(report(plans[0], exp, accel), flush=True)
  if _SEARCH.value:
    for cfg in candidate_meshes(devices, accel.devices_per_node, exp.model.moe is not None):
      if (tuple(cfg.ici), tuple(cfg.dcn)) != (tuple(target.ici), tuple(target.dcn)):
        cfg = dataclasses.replace(cfg, rules=target.rules)
        plans.append(one(exp, cfg, accel))
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
