"""The plan as text: per-device memory (XLA beside the analytic count), FLOPs, collectives,
the time assumptions and the verdict, with the advice."""

from __future__ import annotations

from r1jax.plan.estimate import GB
from r1jax.plan.experts import describe, expert_balance


def _gb(x: float) -> str:
  """Bytes in GB, or MB below a GB (small plans are all well under one)."""
  return f"{x / GB:9.2f} GB" if abs(x) >= GB else f"{x / 1e6:9.2f} MB"


def _ratio(xla: float, analytic: float) -> str:
  return f"{xla / analytic:6.2f}x" if analytic else "     -"


def _flops(x: float) -> str:
  """cost_analysis' FLOPs; XLA:GPU compiled without a device gives none."""
  return f"{x:18.3e}" if x else f"{'(none)':>18s}"


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
      *filter(None, [describe(expert_balance(exp.model, plan["mesh"]["shape"], exp.mesh.rules))]),
      f"minibatch: {b['prompts_per_minibatch']} prompts x G = {b['rows_per_minibatch']} rows of "
      f"{b['prompt_len']} + {b['completion_len']} tokens, {b['micro_batches']} micro-batch(es); "
      f"{b['rows_per_device']} row(s) and {b['prompts_per_device']} prompt(s) per device"
      + (f", each row's positions split {b['sequence_pieces']} ways (mesh.sequence_axis)"
         if b["sequence_pieces"] > 1 else "")
      + (f"; optim.offload={exp.optim.offload}" if exp.optim.offload != "none" else ""),
      "train step: compiled at full size.",
      f"rollout: {b['rollout_prompts_per_chunk']} prompts x G per sampler call, {b['rollout_chunks']} "
      f"calls per rollout; {ro['how']}; decode loop counted at {b['completion_len']} steps",
      "",
      f"compiled figures (memory, HLO FLOPs, collectives) by {plan['compiler']}",
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
      f"tokens+logprobs {_gb(kv['outputs']).strip()}, tensor-parallel decode weights "
      f"{_gb(kv['decode_weights']).strip()}, prefill logits {_gb(kv['prefill_logits']).strip()})",
      f"  peak, train phase     {_gb(tr['peak_bytes'])}   ({plan['compiler']}: arguments + temp + "
      "reference params)",
      f"  peak, rollout phase   {_gb(ro['peak_bytes'])}   ({plan['compiler']}: "
      f"{'' if exp.optim.offload != 'none' else 'train state + '}reference + sampler, the "
      "sampler at the larger of its compiled and analytic figures)",
      "",
      "FLOPs per device          HLO dots x trip counts   XLA cost_analysis   analytic",
      f"  train step            {tx['hlo_flops']:14.3e} {_flops(tx['xla_flops'])} {ta['flops']:12.3e}",
      f"  sampler call          {rx['hlo_flops']:14.3e} {_flops(rx['xla_flops'])} {ra['flops']:12.3e}",
      "  (cost_analysis counts each while-loop body once: layer scan, micro-batches, decode steps;",
      "   analytic: 6N per token, 8N under full remat, + attention over the full [T, P+T] rectangle;",
      "   sampler: 2N per token + attention over the cache it reads, every row to the budget)",
      "",
      "collective bytes per device (operand bytes, loop trip counts applied)",
  ]
  for name, fig in (("train step", tx), ("sampler call", rx)):
    kinds = ", ".join(f"{k} {v / GB:.2f} GB" for k, v in fig["collective_bytes"].items())
    links = ", ".join(f"{k} {v / GB:.2f} GB" for k, v in sorted(fig["collective_bytes_by_link"].items()))
    lines.append(f"  {name}: {kinds}")
    lines.append(f"    by link: {links or 'none'} (node = inside a node, cross = between nodes)")
  fits = "FITS" if plan["fits"] else "DOES NOT FIT"
  lengths, other = plan["response_lengths"], {"budget": "uniform", "uniform": "budget"}
  lines += [
      "",
      f"time (estimates, not compiler figures): {accel.describe()}; collectives as rings, not "
      "overlapped with compute",
      f"  train step        {tr['step_s']:10.2f} s  (compute {tr['compute_s']:.2f} s at MFU; "
      "padded: every row to the budget, the learner does not pack rows yet)",
  ]
  for name in (lengths, other[lengths]):
    call = ro["by_lengths"][name]
    lines.append(f"  sampler call ({name + ' lengths)':16s} {call['chunk_s']:10.2f} s  (compute "
                 f"{call['compute_s']:.2f} s, HBM reads {call['memory_s']:.2f} s)")
  ro_cfg = exp.rollout
  lines += [
      "    (budget = every row to max_new_tokens, uniform = lengths spread evenly from 0 to it; "
      f"attention over {'the filled cache blocks' if ro_cfg.attention == 'filled' else 'the whole cache'}"
      " (rollout.attention), each row's reads counted to its own filled position; uniform assumes "
      "finished rows' slots are refilled" + ("" if ro_cfg.refill_slots else
                                             ", which rollout.refill_slots=0 does not do") + ")",
      f"  one RL step ({lengths} lengths): {b['rollout_chunks']} sampler calls + "
      f"{exp.rl.num_minibatches} x {exp.rl.inner_epochs} optimizer steps + reference forwards = "
      f"{plan['rl_step_s']:.1f} s ({plan['optimizer_step_s']:.1f} s per optimizer step); "
      f"{other[lengths]} lengths: {plan['rl_step_s_by_lengths'][other[lengths]]:.1f} s",
      "",
      f"{fits} in {accel.hbm_bytes / GB:.0f} GB per device (budget {plan['budget_bytes'] / GB:.0f} GB): "
      f"peak {max(tr['peak_bytes'], ro['peak_bytes']) / GB:.1f} GB "
      f"(train {tr['peak_bytes'] / GB:.1f} GB, rollout {ro['peak_bytes'] / GB:.1f} GB; {plan['compiler']})",
  ]
  lines += [f"  - {a}" for a in plan["advice"]]
  return "\n".join(lines)
