"""Compile-only plan of an experiment on a target cluster: ``python -m r1jax.plan --config=...``.

  python -m r1jax.plan --config=experiments/r1_zero.py:30b --mesh=ici:1,8,1,1,dcn:64,1,1,1 [--search]

It fakes the target's devices on the CPU (it re-executes itself with
``--xla_force_host_platform_device_count`` set before JAX starts), compiles the real train step
and the real sampler on abstract inputs (:mod:`r1jax.plan_compile`), and prints per-device memory
from XLA beside an analytic count (:mod:`r1jax.plan_memory`), FLOPs, collective bytes by kind,
a predicted time on the accelerator's stated peaks (:mod:`r1jax.hardware`), whether it fits, and
what to change if it does not. ``--search`` plans a few mesh shapes of the same size and ranks
them. ``--json_out`` writes the figures for scripts and tests.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file[:variant].",
                                          lock_config=True)
_MESH = flags.DEFINE_string("mesh", None, "Target mesh 'ici:d,f,e,t,dcn:d,f,e,t'; default: the "
                            "config's mesh (an ici -1 takes a whole node).")
_ACCELERATOR = flags.DEFINE_enum("accelerator", "h800", ["h800", "h100"], "Peak figures to price on.")
_SEARCH = flags.DEFINE_bool("search", False, "Also plan a few mesh shapes of the same size; rank them.")
_JSON = flags.DEFINE_string("json_out", None, "Write the plan(s) as JSON here.")

GB = 1e9
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
  from r1jax.mesh import MeshConfig, parse_mesh_flag
  cfg = parse_mesh_flag(_MESH.value) if _MESH.value else exp.mesh
  if -1 in cfg.ici:
    known = math.prod(s for s in cfg.ici if s != -1)
    cfg = dataclasses.replace(cfg, ici=tuple(accel.devices_per_node // known if s == -1 else s
                                             for s in cfg.ici))
  return MeshConfig(ici=tuple(cfg.ici), dcn=tuple(cfg.dcn), rules=exp.mesh.rules)


def candidate_meshes(num_devices: int, per_node: int, moe: bool):
  """A few layouts of the same size: FSDP, tensor or expert parallel inside a node, with the
  nodes as data parallel or as a second FSDP level."""
  from r1jax.mesh import MeshConfig
  nodes = max(num_devices // per_node, 1)
  inside = [(1, per_node, 1, 1), (1, 1, 1, per_node), (1, per_node // 2, 1, 2)]
  if moe:
    inside.append((1, 1, per_node, 1))
  across = [(nodes, 1, 1, 1)]
  if nodes % per_node == 0 and nodes > per_node:
    across.append((nodes // per_node, per_node, 1, 1))
  return [MeshConfig(ici=i, dcn=d) for i in inside for d in across
          if math.prod(i) * math.prod(d) == num_devices and min(i) >= 1]


def plan_one(exp, mesh_cfg, accel) -> dict:
  """Compiles and prices one layout; returns the figures (see the module doc)."""
  from r1jax import plan_compile, plan_memory
  from r1jax.mesh import make_mesh
  exp = dataclasses.replace(exp, mesh=mesh_cfg)
  mesh = make_mesh(mesh_cfg)
  rules = mesh_cfg.rules
  model = exp.model
  train = plan_compile.compile_train_step(exp, mesh, accel.devices_per_node)
  rollout, rollout_how = plan_compile.rollout_figures(exp, mesh, accel.devices_per_node)

  bp = exp.data.questions_per_step // exp.rl.num_minibatches
  g, p, t = exp.rl.num_generations, exp.data.max_prompt_len, exp.rollout.max_new_tokens
  state = plan_memory.state_bytes(model, mesh, rules)
  act = plan_memory.train_activations(model, mesh, rules, prompts=bp, rows=bp * g, prompt_len=p,
                                      completion_len=t, micro_batches=exp.rl.micro_batches)
  chunk = exp.rollout.prompts_per_chunk
  kv = plan_memory.rollout_bytes(model, mesh, rules, prompts=chunk, samples=g, prompt_len=p,
                                  new_tokens=t, cache_dtype=exp.rollout.cache_dtype)
  devices = mesh.size

  # Time: compute at the assumed MFU plus collectives at the assumed bandwidth, not overlapped.
  peak = accel.flops(model.compute_dtype)
  link_bw = {"node": accel.node_bytes_per_s, "cross": accel.cross_bytes_per_s}
  comm = lambda fig: sum(b / (link_bw[k] * accel.bandwidth_efficiency)
                         for k, b in fig.collective_time_terms.items())
  train_compute = train.hlo_flops / (peak * accel.mfu)
  train_s = train_compute + comm(train)
  # Decoding is bound by reading weights and caches once per step; the whole cache is read
  # every step (the sampler attends over every slot, masked).
  decode_read = t * (state.params + kv["prompt"] + kv["generated"])
  rollout_compute = rollout.hlo_flops / (peak * accel.mfu)
  rollout_memory = decode_read / (accel.hbm_bytes_per_s * accel.bandwidth_efficiency)
  chunk_s = max(rollout_compute, rollout_memory) + comm(rollout)
  chunks = math.ceil(exp.data.questions_per_step / chunk)
  updates = exp.rl.num_minibatches * exp.rl.inner_epochs
  ref_s = exp.rl.num_minibatches * train_compute * (2 / 8 if model.remat == "full" else 2 / 6)
  rl_step_s = chunks * chunk_s + updates * train_s + ref_s

  # Memory: the train state and the reference params stay resident through both phases.
  ref_params = state.params
  train_peak = train.peak_bytes + ref_params
  rollout_peak = (train.inputs["params"] + train.inputs["optimizer"] + ref_params
                  + rollout.argument_bytes - rollout.inputs["params"] + rollout.temp_bytes
                  + rollout.output_bytes)
  budget = accel.hbm_bytes * accel.usable_fraction
  analytic_flops = plan_memory.train_flops(model, prompt_tokens=bp * p, completion_tokens=bp * g * t,
                                           rows=bp * g, prompt_len=p) / devices
  decode_analytic = plan_memory.decode_flops(model, rows=chunk * g, prompt_len=p, new_tokens=t) / devices
  result = {
      "mesh": {"ici": list(mesh_cfg.ici), "dcn": list(mesh_cfg.dcn), "devices": devices,
               "shape": dict(mesh.shape)},
      "model": {"params": state.num_params, "layers": model.num_layers,
                "compute_dtype": model.compute_dtype, "param_dtype": model.param_dtype,
                "remat": model.remat},
      "batch": {"prompts_per_minibatch": bp, "rows_per_minibatch": bp * g, "prompt_len": p,
                "completion_len": t, "micro_batches": exp.rl.micro_batches,
                "rows_per_device": plan_memory.local_rows(bp * g, mesh, rules),
                "prompts_per_device": plan_memory.local_rows(bp, mesh, rules),
                "rollout_prompts_per_chunk": chunk, "rollout_chunks": chunks},
      "train": {"xla": dataclasses.asdict(train),
                "analytic": {"params": state.params, "optimizer": state.optimizer,
                             "gradients": state.gradients, "activations": act.total,
                             "activation_terms": dataclasses.asdict(act),
                             "flops": analytic_flops},
                "peak_bytes": train_peak, "compute_s": train_compute, "step_s": train_s},
      "rollout": {"xla": dataclasses.asdict(rollout), "how": rollout_how,
                  "analytic": {"params": state.params, "sampler_buffers": kv, "flops": decode_analytic},
                  "peak_bytes": rollout_peak, "compute_s": rollout_compute,
                  "memory_s": rollout_memory, "chunk_s": chunk_s},
      "rl_step_s": rl_step_s, "optimizer_step_s": rl_step_s / updates,
      "budget_bytes": budget, "fits": max(train_peak, rollout_peak) <= budget,
  }
  result["advice"] = advice(result, exp, accel)
  return result


def advice(plan: dict, exp, accel) -> list[str]:
  """What to change, from the largest terms of the memory that does not fit."""
  budget, out = plan["budget_bytes"], []
  tr, ro = plan["train"], plan["rollout"]
  a = tr["analytic"]
  terms = a["activation_terms"]
  model, mesh = plan["model"], plan["mesh"]
  state = a["params"] + a["optimizer"] + a["gradients"]
  if state > 0.4 * budget:
    out.append(f"params + optimizer + gradients take {state / GB:.1f} GB per device: shard them "
               f"over more devices (put nodes on the fsdp axis, e.g. --mesh=ici:1,8,1,1,dcn:"
               f"{max(mesh['devices'] // 64, 1)},8,1,1), or keep params and Adam moments in bfloat16 "
               "(--config.model.param_dtype=bfloat16)")
  if terms["attention_scores"] > 0.2 * budget:
    out.append(f"one layer's attention scores over [{plan['batch']['completion_len']} x "
               f"{plan['batch']['completion_len'] + plan['batch']['prompt_len']}] take "
               f"{terms['attention_scores'] / GB:.1f} GB: the model materialises them; a blockwise "
               "(flash) attention kernel is needed at this length, or shorten rollout.max_new_tokens; "
               "tensor parallelism (ici:1,1,1,8) splits heads, micro-batches split rows")
  if terms["logits"] > 0.2 * budget:
    out.append(f"the [rows, T, vocab] float32 logits take {terms['logits'] / GB:.1f} GB: shard the "
               "vocabulary (a tensor axis) or raise rl.micro_batches")
  rows = plan["batch"]["rows_per_device"]
  if rows > exp.rl.micro_batches and tr["peak_bytes"] > budget:
    out.append(f"each device holds {rows} rows of a minibatch: --config.rl.micro_batches="
               f"{rows} scores one at a time")
  if model["remat"] != "full" and tr["peak_bytes"] > budget:
    out.append("--config.model.remat=full keeps one tensor per layer instead of all of them")
  if tr["peak_bytes"] > budget and a["optimizer"] > 0.2 * budget:
    out.append(f"offloading the Adam moments to host memory would free {a['optimizer'] / GB:.1f} GB "
               "per device (not implemented in r1jax)")
  kv = ro["analytic"]["sampler_buffers"]["generated"]
  gathered = ro["analytic"]["sampler_buffers"]["gathered_weights"]
  if ro["peak_bytes"] > budget and gathered > 0.2 * budget:
    out.append(f"the sampler holds the weights gathered whole along fsdp ({gathered / GB:.1f} GB "
               "per device): decode with tensor-parallel weights (ici:1,1,1,8) or bfloat16 params")
  if ro["peak_bytes"] > budget and kv > 0.2 * budget:
    out.append(f"the rollout's KV cache is {kv / GB:.1f} GB per device: lower "
               "rollout.prompts_per_chunk, or rollout.cache_dtype=bfloat16")
  excess = ro["xla"]["hlo_flops"] / max(ro["analytic"]["flops"], 1.0)
  if excess > 2:
    cross = ro["xla"]["collective_bytes_by_link"].get("cross", 0.0)
    out.append(f"the compiled sampler does {excess:.0f}x the analytic decode FLOPs and moves "
               f"{cross / GB:.0f} GB per call between nodes: its rows and their prompts' cache are "
               "laid out differently on this mesh and are resharded every decode step; sample with "
               "rollout.prompts_per_chunk a multiple of the batch-axis size, or a layout whose "
               "batch axes divide the prompts (e.g. tensor-parallel inside a node)")
  if plan["batch"]["prompts_per_device"] * mesh["devices"] > plan["batch"]["prompts_per_minibatch"]:
    out.append(f"{plan['batch']['prompts_per_minibatch']} prompts per minibatch do not split over "
               f"{mesh['devices']} devices: each prompt's prefill is repeated on several devices")
  return out


def _gb(x: float) -> str:
  """Bytes in GB, or MB below a GB (small plans are all well under one)."""
  return f"{x / GB:9.2f} GB" if abs(x) >= GB else f"{x / 1e6:9.2f} MB"


def _ratio(xla: float, analytic: float) -> str:
  return f"{xla / analytic:6.2f}x" if analytic else "     -"


def report(plan: dict, exp, accel) -> str:
  tr, ro = plan["train"], plan["rollout"]
  tx, ta, rx, ra = tr["xla"], tr["analytic"], ro["xla"], ro["analytic"]
  kv = ra["sampler_buffers"]
  b, m = plan["batch"], plan["model"]
  lines = [
      f"== plan: mesh ici={tuple(plan['mesh']['ici'])} x dcn={tuple(plan['mesh']['dcn'])} = "
      f"{plan['mesh']['devices']} devices {plan['mesh']['shape']}",
      f"model: {m['params'] / 1e9:.2f} B params, {m['layers']} layers, compute {m['compute_dtype']}, "
      f"params {m['param_dtype']}, remat {m['remat']}",
      f"minibatch: {b['prompts_per_minibatch']} prompts x G = {b['rows_per_minibatch']} rows of "
      f"{b['prompt_len']} + {b['completion_len']} tokens, {b['micro_batches']} micro-batch(es); "
      f"{b['rows_per_device']} row(s) and {b['prompts_per_device']} prompt(s) per device",
      "train step: compiled at full size.",
      f"rollout: {b['rollout_prompts_per_chunk']} prompts x G per sampler call, {b['rollout_chunks']} "
      f"calls per rollout; {ro['how']}; decode loop counted at {b['completion_len']} steps",
      "",
      "per-device memory            XLA (compiled)     analytic   XLA/analytic",
      f"  parameters            {_gb(tx['inputs']['params'])} {_gb(ta['params'])}   "
      f"{_ratio(tx['inputs']['params'], ta['params'])}",
      f"  optimizer (AdamW)     {_gb(tx['inputs']['optimizer'])} {_gb(ta['optimizer'])}   "
      f"{_ratio(tx['inputs']['optimizer'], ta['optimizer'])}",
      f"  batch                 {_gb(tx['inputs']['batch'])}",
      f"  arguments total       {_gb(tx['argument_bytes'])} {_gb(sum(tx['inputs'].values()))}   "
      "(memory_analysis vs the inputs' shard shapes)",
      f"  gradients             {'(in temp)':>12} {_gb(ta['gradients'])}   (f32 accumulator + one "
      "micro-batch's)",
      f"  activations           {_gb(tx['temp_bytes'] - ta['gradients'])} {_gb(ta['activations'])}   "
      f"{_ratio(tx['temp_bytes'] - ta['gradients'], ta['activations'])}   (XLA: temp - gradients)",
      f"  train temp total      {_gb(tx['temp_bytes'])} {_gb(ta['gradients'] + ta['activations'])}   "
      f"{_ratio(tx['temp_bytes'], ta['gradients'] + ta['activations'])}",
      "    analytic activation terms: " + ", ".join(
          f"{k} {v / GB:.2f} GB" for k, v in ta["activation_terms"].items() if k != "total"),
      f"  KV cache (generated)  {'(in temp)':>12} {_gb(kv['generated'])}   at the configured rollout "
      f"batch and length; prompt cache {_gb(kv['prompt']).strip()}",
      f"  sampler temp + out    {_gb(rx['temp_bytes'] + rx['output_bytes'])} {_gb(sum(kv.values()))}   "
      f"{_ratio(rx['temp_bytes'] + rx['output_bytes'], sum(kv.values()))}   (analytic: KV caches, "
      f"tokens+logprobs {_gb(kv['outputs']).strip()}, weights gathered for decoding "
      f"{_gb(kv['gathered_weights']).strip()}, prefill logits {_gb(kv['prefill_logits']).strip()})",
      f"  peak, train phase     {_gb(tr['peak_bytes'])}   (arguments + temp + reference params)",
      f"  peak, rollout phase   {_gb(ro['peak_bytes'])}   (train state + reference + sampler)",
      "",
      "FLOPs per device          HLO dots x trip counts   XLA cost_analysis   analytic",
      f"  train step            {tx['hlo_flops']:14.3e} {tx['xla_flops']:18.3e} {ta['flops']:12.3e}",
      f"  sampler call          {rx['hlo_flops']:14.3e} {rx['xla_flops']:18.3e} {ra['flops']:12.3e}",
      "  (cost_analysis counts each while-loop body once: layer scan, micro-batches, decode steps;",
      "   analytic: 6N per token, 8N under full remat, + attention over the full [T, P+T] rectangle)",
      "",
      "collective bytes per device (operand bytes, loop trip counts applied)",
  ]
  for name, fig in (("train step", tx), ("sampler call", rx)):
    kinds = ", ".join(f"{k} {v / GB:.2f} GB" for k, v in fig["collective_bytes"].items())
    links = ", ".join(f"{k} {v / GB:.2f} GB" for k, v in sorted(fig["collective_bytes_by_link"].items()))
    lines.append(f"  {name}: {kinds}")
    lines.append(f"    by link: {links or 'none'} (node = inside a node, cross = between nodes)")
  fits = "FITS" if plan["fits"] else "DOES NOT FIT"
  lines += [
      "",
      f"assumptions: {accel.describe()}; collectives as rings, not overlapped with compute",
      f"  train step        {tr['step_s']:10.2f} s  (compute {tr['compute_s']:.2f} s at MFU)",
      f"  sampler call      {ro['chunk_s']:10.2f} s  (compute {ro['compute_s']:.2f} s, HBM reads "
      f"{ro['memory_s']:.2f} s: weights + whole cache per decode step, every row to the budget)",
      f"  one RL step: {b['rollout_chunks']} sampler calls + {exp.rl.num_minibatches} x "
      f"{exp.rl.inner_epochs} optimizer steps + reference forwards = {plan['rl_step_s']:.1f} s "
      f"({plan['optimizer_step_s']:.1f} s per optimizer step)",
      "",
      f"{fits} in {accel.hbm_bytes / GB:.0f} GB per device (budget {plan['budget_bytes'] / GB:.0f} GB): "
      f"peak {max(tr['peak_bytes'], ro['peak_bytes']) / GB:.1f} GB",
  ]
  lines += [f"  - {a}" for a in plan["advice"]]
  return "\n".join(lines)


def _load_experiment():
  from r1jax import experiment
  return experiment.load(_CONFIG.value)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from r1jax.hardware import ACCELERATORS
  accel = ACCELERATORS[_ACCELERATOR.value]
  exp = _load_experiment()
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
  app.run(main)
