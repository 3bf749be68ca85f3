"""One layout of an experiment priced: the real train step and sampler compiled on it
(`compiled`), memory and FLOPs counted by hand beside them (`memory`), a predicted time on the
accelerator's stated peaks (`hardware`), whether it fits, and what to change if it does not."""

from __future__ import annotations

import dataclasses
import math

from r1jax.mesh import MeshConfig, make_mesh
from r1jax.plan import compiled, memory
from r1jax.rollout.chunks import prompts_per_call

GB = 1e9


def candidate_meshes(num_devices: int, per_node: int, moe: bool):
  """A few layouts of the same size: FSDP, tensor or expert parallel inside a node, with the
  nodes as data parallel or as a second FSDP level."""
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
  exp = dataclasses.replace(exp, mesh=mesh_cfg)
  mesh = make_mesh(mesh_cfg)
  rules = mesh_cfg.rules
  model = exp.model
  train = compiled.compile_train_step(exp, mesh, accel.devices_per_node)
  rollout, rollout_how = compiled.rollout_figures(exp, mesh, accel.devices_per_node)

  bp = exp.data.questions_per_step // exp.rl.num_minibatches
  g, p, t = exp.rl.num_generations, exp.data.max_prompt_len, exp.rollout.max_new_tokens
  state = memory.state_bytes(model, mesh, rules)
  act = memory.train_activations(model, mesh, rules, prompts=bp, rows=bp * g, prompt_len=p,
                                      completion_len=t, micro_batches=exp.rl.micro_batches)
  chunk = prompts_per_call(model, exp.rollout.prompts_per_chunk, mesh, rules)
  kv = memory.rollout_bytes(model, mesh, rules, prompts=chunk, samples=g, prompt_len=p,
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
  decode_read = t * (kv["decode_weights"] + kv["prompt"] + kv["generated"])
  rollout_compute = rollout.hlo_flops / (peak * accel.mfu)
  rollout_memory = decode_read / (accel.hbm_bytes_per_s * accel.bandwidth_efficiency)
  chunk_s = max(rollout_compute, rollout_memory) + comm(rollout)
  chunks = math.ceil(exp.data.questions_per_step / chunk)
  updates = exp.rl.num_minibatches * exp.rl.inner_epochs
  ref_s = exp.rl.num_minibatches * train_compute * (2 / 8 if model.remat == "full" else 2 / 6)
  rl_step_s = chunks * chunk_s + updates * train_s + ref_s

  # Memory: the train state and the reference params stay resident through both phases.
  ref_params = state.reference
  train_peak = train.peak_bytes + ref_params
  rollout_peak = (train.inputs["params"] + train.inputs["optimizer"] + ref_params
                  + rollout.argument_bytes - rollout.inputs["params"] + rollout.temp_bytes
                  + rollout.output_bytes)
  budget = accel.hbm_bytes * accel.usable_fraction
  # Each device prefills the prompts it holds: where they do not split over every device, a
  # prompt's prefill is repeated on each device that holds it.
  prefilled = memory.local_rows(bp, mesh, rules) * devices * p
  analytic_flops = memory.train_flops(model, prompt_tokens=prefilled, completion_tokens=bp * g * t,
                                      rows=bp * g, prompt_len=p) / devices
  decode_analytic = memory.decode_flops(model, rows=chunk * g, prompt_len=p, new_tokens=t) / devices
  result = {
      "mesh": {"ici": list(mesh_cfg.ici), "dcn": list(mesh_cfg.dcn), "devices": devices,
               "shape": dict(mesh.shape)},
      "model": {"params": state.num_params, "layers": model.num_layers,
                "compute_dtype": model.compute_dtype, "param_dtype": model.param_dtype,
                "remat": model.remat},
      "batch": {"prompts_per_minibatch": bp, "rows_per_minibatch": bp * g, "prompt_len": p,
                "completion_len": t, "micro_batches": exp.rl.micro_batches,
                "rows_per_device": memory.local_rows(bp * g, mesh, rules),
                "prompts_per_device": memory.local_rows(bp, mesh, rules),
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
  if terms["attention"] > 0.2 * budget:
    out.append(f"one layer's blockwise attention over [{plan['batch']['completion_len']} x "
               f"{plan['batch']['completion_len'] + plan['batch']['prompt_len']}] takes "
               f"{terms['attention'] / GB:.1f} GB (its float32 output and gradients): tensor "
               "parallelism (ici:1,1,1,8) splits heads, micro-batches split rows")
  if terms["logits"] > 0.2 * budget:
    out.append(f"one chunk of float32 logits takes {terms['logits'] / GB:.1f} GB: shard the "
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
