"""The planner: compiled figures of the real train step and sampler against analytic counts.

The planner fixes its device count when JAX starts, so it runs in subprocesses, the tiny config
(8 fake devices, 2 x 4) and a ~100M-parameter one (64, 8 x 8) side by side, on the XLA:CPU
stand-in (the analytic counts are calibrated on it); where the CUDA compiler is installed,
XLA:GPU plans the tiny config beside it. The linear extension of the sampler's figures over
layers is checked in-process against a full-depth compilation.
"""

import dataclasses
import importlib.util
import json
import os
import re
import subprocess
import sys

import pytest

from r1jax import experiment
from r1jax.mesh import MeshConfig, make_mesh
from r1jax.plan import compiled, gpu_target
from r1jax.plan.hardware import ACCELERATORS

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MID = {"vocab_size": 32000, "dim": 768, "num_layers": 12, "num_heads": 12, "num_kv_heads": 2,
       "head_dim": 64, "ffn_dim": 2048, "qkv_bias": True, "max_seq_len": 4096, "remat": "full",
       "compute_dtype": "bfloat16"}
MID_FLAGS = [f"--config.model.{k}={v}" for k, v in MID.items()] + [
    "--config.rollout.max_new_tokens=1024", "--config.data.max_prompt_len=256",
    "--config.rl.num_minibatches=1"]


GPU = gpu_target.missing() is None   # `make install` installs the CUDA compiler
needs_gpu_compiler = pytest.mark.skipif(not GPU, reason="the CUDA compiler is not installed")


@pytest.fixture(scope="module")
def plans(tmp_path_factory):
  out = tmp_path_factory.mktemp("plans")
  runs = {}
  small = "--mesh=ici:1,4,1,1,dcn:2,1,1,1"
  configs = [("tiny", [small, "--cpu_compiler"]),
             ("mid", ["--mesh=ici:1,8,1,1,dcn:8,1,1,1", "--cpu_compiler",
                      "--response_lengths=uniform", *MID_FLAGS])]
  if GPU:
    configs.append(("tiny_gpu", [small, "--accelerator=a100"]))
  for name, extra in configs:
    cmd = [sys.executable, "-m", "r1jax.plan", "--config=experiments/r1_zero.py:tiny",
           f"--json_out={out / name}.json", *extra]
    runs[name] = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
  results = {}
  for name, proc in runs.items():
    text = proc.communicate(timeout=600)[0].decode()
    assert proc.returncode == 0, text[-3000:]
    results[name] = (json.loads((out / f"{name}.json").read_text())[0], text)
  return results


@pytest.mark.parametrize("name", ["tiny", "mid"])
def test_memory_matches_analytic(plans, name):
  plan, text = plans[name]
  xla, analytic = plan["train"]["xla"], plan["train"]["analytic"]
  assert (plan["mesh"]["devices"], plan["mesh"]["shape"]["data"]) == {"tiny": (8, 2),
                                                                      "mid": (64, 8)}[name]
  for key in ("params", "optimizer"):
    assert xla["inputs"][key] == pytest.approx(analytic[key], rel=0.1), key
  # memory_analysis' argument bytes are the inputs' shard shapes: nothing is replicated.
  assert xla["argument_bytes"] == pytest.approx(sum(xla["inputs"].values()), rel=0.1)
  assert plan["rollout"]["xla"]["inputs"]["params"] == pytest.approx(analytic["params"], rel=0.1)
  assert plan["fits"] and "FITS in 80 GB" in text
  assert plan["compiler"] == "XLA:CPU stand-in"
  assert "compiler: XLA:CPU stand-in for H800 SXM (XLA:GPU not used: --cpu_compiler)" in text
  assert "peak, train phase" in text and "(XLA:CPU stand-in: arguments + temp" in text
  assert plan["train"]["step_s"] > 0 and plan["rl_step_s"] > plan["train"]["step_s"]


def test_flops_match_analytic(plans):
  plan, text = plans["mid"]
  assert plan["train"]["xla"]["hlo_flops"] == pytest.approx(plan["train"]["analytic"]["flops"], rel=0.1)
  assert plan["rollout"]["xla"]["hlo_flops"] == pytest.approx(plan["rollout"]["analytic"]["flops"],
                                                              rel=0.1)
  # cost_analysis counts each loop body once, which is why the planner walks the HLO itself.
  assert plan["train"]["xla"]["xla_flops"] < 0.5 * plan["train"]["xla"]["hlo_flops"]
  assert "extended linearly to 12" in text and "all-reduce" in text


def test_sampler_layer_extrapolation_matches_full_compile():
  exp = experiment.Experiment()
  model = dataclasses.replace(exp.model, **{**MID, "num_layers": 6, "vocab_size": 4096})
  exp = dataclasses.replace(exp, model=model, mesh=MeshConfig(ici=(1, 4, 1, 1), dcn=(2, 1, 1, 1)),
                            rl=dataclasses.replace(exp.rl, num_generations=4),
                            rollout=dataclasses.replace(exp.rollout, max_new_tokens=64,
                                                        prompts_per_chunk=4),
                            data=dataclasses.replace(exp.data, max_prompt_len=32))
  mesh = make_mesh(exp.mesh)
  a, b = (compiled.compile_rollout(exp, mesh, 4, layers) for layers in (2, 4))
  full = compiled.compile_rollout(exp, mesh, 4)
  line = compiled.extrapolate(a, b, 6)
  assert line.hlo_flops == pytest.approx(full.hlo_flops, rel=0.02)
  assert line.argument_bytes == pytest.approx(full.argument_bytes, rel=0.02)
  assert line.temp_bytes == pytest.approx(full.temp_bytes, rel=0.1)


def test_rl_step_line_names_the_lengths_and_prints_both(plans):
  plan, text = plans["mid"]
  line = re.search(r"one RL step \(uniform lengths\): .* = ([\d.]+) s .*; budget lengths: "
                   r"([\d.]+) s", text)
  assert line, text[-3000:]
  uniform, budget = float(line[1]), float(line[2])
  assert uniform == pytest.approx(plan["rl_step_s"], abs=0.1)
  assert budget == pytest.approx(plan["rl_step_s_by_lengths"]["budget"], abs=0.1)
  # Same learner (priced padded) and fewer decode steps and cache reads for uniform lengths.
  assert uniform < budget
  calls = plan["rollout"]["by_lengths"]
  assert calls["uniform"]["hbm_bytes"] < calls["budget"]["hbm_bytes"]
  assert "padded: every row to the budget" in text


@needs_gpu_compiler
def test_gpu_compiler_plan_names_it(plans):
  gpu, text = plans["tiny_gpu"]
  assert gpu["compiler"] == "XLA:GPU (sm_80, compile-only)"
  assert "compiler: XLA:GPU (sm_80, compile-only) for 2 x 4 A100 SXM 80GB" in text
  assert "(XLA:GPU (sm_80, compile-only): arguments + temp" in text
  # The same programs on the same mesh as the XLA:CPU stand-in's: the same inputs, and the same
  # matmuls (cuBLAS calls on the GPU, counted as the dots they replace).
  cpu, _ = plans["tiny"]
  for phase in ("train", "rollout"):
    assert gpu[phase]["xla"]["inputs"] == cpu[phase]["xla"]["inputs"]
    assert gpu[phase]["xla"]["hlo_flops"] == pytest.approx(cpu[phase]["xla"]["hlo_flops"], rel=0.01)
    assert gpu[phase]["xla"]["temp_bytes"] > 0


def test_missing_cuda_compiler_falls_back_to_the_cpu(monkeypatch, tmp_path):
  monkeypatch.setattr(gpu_target, "SIDE_DIR", str(tmp_path))
  real = importlib.util.find_spec
  monkeypatch.setattr(importlib.util, "find_spec",
                      lambda name, *a: None if name.startswith("jax_plugins") else real(name, *a))
  devices, why = gpu_target.compile_only_devices(ACCELERATORS["h800"], 1, 8)
  assert devices is None and why.startswith("jax-cuda12-plugin is not installed")
