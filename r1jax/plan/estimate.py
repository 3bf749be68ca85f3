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


# How long the rows of a rollout run: every row to the budget, or lengths spread evenly from 0 to
# it (about what R1-Zero's length curve averages over a run).
RESPONSE_LENGTHS = ("budget", "uniform")


def sampler_seconds(rollout, kv: dict, t: int, lengths: str, analytic_flops: dict, accel,
                    flops_per_s: float, comm_s: float, filled: bool) -> dict:
  """One sampler call's time when `lengths` is how long its rows run, for a sampler that refills
  a finished row's slot with waiting work: its decode steps are the tokens written / the slots,
  each step reads the weights and the prompts' cache once, and, under filled-only attention, the
  generated cache position by position as it fills (t^2/2 per row to the budget, t^2/6 on
  average for uniform lengths); else the whole cache every step."""
  mean_len = t if lengths == "budget" else t / 2
  reads = (t * t / 2 if lengths == "budget" else t * t / 6) if filled else mean_len * t
  per_position = kv["generated"] / t          # this device's rows, one cache position each
  hbm = mean_len * (kv["decode_weights"] + kv["prompt"]) + reads * per_position
  memory_s = hbm / (accel.hbm_bytes_per_s * accel.bandwidth_efficiency)
  # The compiled decode loop ran every row to the budget: scale its FLOPs (and its per-step
  # collectives) by what these lengths do, by the analytic count.
  compute_s = rollout.hlo_flops * analytic_flops[lengths] / analytic_flops["compiled"] / flops_per_s
  return {"compute_s": compute_s, "memory_s": memory_s, "hbm_bytes": hbm,
          "chunk_s": max(compute_s, memory_s) + comm_s * mean_len / t}


def plan_one(exp, mesh_cfg, accel, *, devices=None, compiler: str = "XLA:CPU stand-in",
             lengths: str = "budget") -> dict:
  """Compiles and prices one layout on `devices` (default: this process's) with `compiler`
  naming who made the compiled figures; returns the figures (see the module doc)."""
  exp = dataclasses.replace(exp, mesh=mesh_cfg)
  mesh = make_mesh(mesh_cfg, devices)
  rules = mesh_cfg.rules
  model = exp.model
  train = compiled.compile_train_step(exp, mesh, accel.devices_per_node)
  rollout, rollout_how = compiled.rollout_figures(exp, mesh, accel.devices_per_node)

  bp = exp.data.questions_per_step // exp.rl.num_minibatches
  g, p, t = exp.rl.num_generations, exp.data.max_prompt_len, exp.rollout.max_new_tokens
  state = memory.state_bytes(model, mesh, rules)
  # Under sequence parallelism each device holds a slice of its rows' positions.
  learner = mesh_cfg.learner_rules()
  pieces = math.prod(mesh.shape[a] for a in dict(learner).get("length", ()))
  act = memory.train_activations(model, mesh, learner, prompts=bp, rows=bp * g,
                                 prompt_len=-(-p // pieces), completion_len=-(-t // pieces),
                                 micro_batches=exp.rl.micro_batches)
  chunk = prompts_per_call(model, exp.rollout.prompts_per_chunk, mesh, rules)
  kv = memory.rollout_bytes(model, mesh, rules, prompts=chunk, samples=g, prompt_len=p,
                                  new_tokens=t, cache_dtype=exp.rollout.cache_dtype)

  # Time: compute at the assumed MFU plus collectives at the assumed bandwidth, not overlapped.
  peak = accel.flops(model.compute_dtype)
  link_bw = {"node": accel.node_bytes_per_s, "cross": accel.cross_bytes_per_s}
  comm = lambda fig: sum(b / (link_bw[k] * accel.bandwidth_efficiency)
                         for k, b in fig.collective_time_terms.items())
  train_compute = train.hlo_flops / (peak * accel.mfu)
  train_s = train_compute + comm(train)
  # Decoding is bound by reading weights and caches; priced for both response lengths. The
  # learner is priced padded (every row to the budget): it does not pack rows yet.
  devices = mesh.size
  decode = {}
  for name in RESPONSE_LENGTHS:
    decode[name] = memory.sampled_decode_flops(model, rows=chunk * g, prompt_len=p,
                                               new_tokens=t, lengths=name)
  # What the compiled sampler does: every row to the budget, over the filled or the whole cache.
  decode["compiled"] = (decode["budget"] if exp.rollout.attention == "filled" else
                        memory.decode_flops(model, rows=chunk * g, prompt_len=p, new_tokens=t))
  sampler = {name: sampler_seconds(rollout, kv, t, name, decode, accel, peak * accel.mfu,
                                   comm(rollout), exp.rollout.attention == "filled")
             for name in RESPONSE_LENGTHS}
  chunks = math.ceil(exp.data.questions_per_step / chunk)
  updates = exp.rl.num_minibatches * exp.rl.inner_epochs
  ref_s = exp.rl.num_minibatches * train_compute * (2 / 8 if model.remat == "full" else 2 / 6)
  rl_step = {name: chunks * sampler[name]["chunk_s"] + updates * train_s + ref_s
             for name in RESPONSE_LENGTHS}
  rl_step_s = rl_step[lengths]

  # Memory: the train state and the reference params stay resident through both phases.
  ref_params = state.reference
  train_peak = train.peak_bytes + ref_params
  # Under optim.offload the master weights and Adam moments wait in host memory while the
  # sampler runs (which is then counted reading its params from its own argument).
  resident = 0.0 if exp.optim.offload != "none" else (
      train.inputs["params"] + train.inputs["optimizer"] - rollout.inputs["params"])
  # The sampler's own buffers: the compiler's figure, but never less than the caches and decode
  # weights it must hold (its temp, extrapolated from a few layers, can fall below them).
  sampler_bytes = max(rollout.temp_bytes + rollout.output_bytes, sum(kv.values()))
  rollout_peak = resident + ref_params + rollout.argument_bytes + sampler_bytes
  budget = accel.hbm_bytes * accel.usable_fraction
  # Each device prefills the prompts it holds: where they do not split over every device, a
  # prompt's prefill is repeated on each device that holds it.
  prefilled = memory.local_rows(bp, mesh, rules) * devices * p
  analytic_flops = memory.train_flops(model, prompt_tokens=prefilled, completion_tokens=bp * g * t,
                                      rows=bp * g, prompt_len=p) / devices
  decode_analytic = decode["compiled"] / devices
  result = {
      "mesh": {"ici": list(mesh_cfg.ici), "dcn": list(mesh_cfg.dcn), "devices": devices,
               "shape": dict(mesh.shape)},
      "model": {"params": state.num_params, "layers": model.num_layers,
                "compute_dtype": model.compute_dtype, "param_dtype": model.param_dtype,
                "remat": model.remat},
      "batch": {"prompts_per_minibatch": bp, "rows_per_minibatch": bp * g, "prompt_len": p,
                "completion_len": t, "micro_batches": exp.rl.micro_batches,
                "rows_per_device": memory.local_rows(bp * g, mesh, learner),
                "prompts_per_device": memory.local_rows(bp, mesh, rules),
                "sequence_pieces": pieces,
                "rollout_prompts_per_chunk": chunk, "rollout_chunks": chunks},
      "train": {"xla": dataclasses.asdict(train),
                "analytic": {"params": state.params, "optimizer": state.optimizer,
                             "gradients": state.gradients, "activations": act.total,
                             "activation_terms": dataclasses.asdict(act),
                             "flops": analytic_flops},
                "peak_bytes": train_peak, "compute_s": train_compute, "step_s": train_s},
      "rollout": {"xla": dataclasses.asdict(rollout), "how": rollout_how,
                  "analytic": {"params": state.params, "sampler_buffers": kv, "flops": decode_analytic},
                  "peak_bytes": rollout_peak, **sampler[lengths], "by_lengths": sampler},
      "compiler": compiler, "response_lengths": lengths,
      "rl_step_s": rl_step_s, "rl_step_s_by_lengths": rl_step,
      "optimizer_step_s": rl_step_s / updates,
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
  split = plan["batch"]["sequence_pieces"] > 1
  if tr["peak_bytes"] > budget and rows <= exp.rl.micro_batches and not split:
    out.append("each device already scores one row at a time: split each row's positions over the "
               "node (--config.mesh.sequence_axis=fsdp) and raise rl.micro_batches to match")
  if tr["peak_bytes"] > budget and a["optimizer"] > 0.2 * budget and exp.optim.offload == "none":
    out.append(f"--config.optim.offload=between_updates keeps the Adam moments and float32 master "
               f"in host memory between updates ({(a['optimizer'] + a['params']) / GB:.1f} GB per "
               "device)")
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
