"""The plan as text: per-device memory (XLA beside the analytic count), FLOPs, collectives,
the time assumptions and the verdict, with the advice."""

from __future__ import annotations

from r1jax.plan.estimate import GB


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
      f"tokens+logprobs {_gb(kv['outputs']).strip()}, tensor-parallel decode weights "
      f"{_gb(kv['decode_weights']).strip()}, prefill logits {_gb(kv['prefill_logits']).strip()})",
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
