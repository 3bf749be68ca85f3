"""The planner: compiled figures of the real train step and sampler against analytic counts.

The planner fixes its device count when JAX starts, so it runs in subprocesses (64 fake devices,
8 x 8), the tiny and a ~100M-parameter config side by side. The linear extension of the sampler's
figures over layers is checked in-process against a full-depth compilation.
"""

import dataclasses
import json
import os
import subprocess
import sys

import pytest

from r1jax import experiment
from r1jax.mesh import MeshConfig, make_mesh
from r1jax.plan import compiled

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MID = {"vocab_size": 32000, "dim": 768, "num_layers": 12, "num_heads": 12, "num_kv_heads": 2,
       "head_dim": 64, "ffn_dim": 2048, "qkv_bias": True, "max_seq_len": 4096, "remat": "full",
       "compute_dtype": "bfloat16"}
MID_FLAGS = [f"--config.model.{k}={v}" for k, v in MID.items()] + [
    "--config.rollout.max_new_tokens=1024", "--config.data.max_prompt_len=256",
    "--config.rl.num_minibatches=1"]


@pytest.fixture(scope="module")
def plans(tmp_path_factory):
  out = tmp_path_factory.mktemp("plans")
  runs = {}
  for name, extra in (("tiny", []), ("mid", MID_FLAGS)):
    cmd = [sys.executable, "-m", "r1jax.plan", "--config=experiments/r1_zero.py:tiny",
           "--mesh=ici:1,8,1,1,dcn:8,1,1,1", f"--json_out={out / name}.json", *extra]
    runs[name] = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
  results = {}
  for name, proc in runs.items():
    text = proc.communicate(timeout=300)[0].decode()
    assert proc.returncode == 0, text[-3000:]
    results[name] = (json.loads((out / f"{name}.json").read_text())[0], text)
  return results


@pytest.mark.parametrize("name", ["tiny", "mid"])
def test_memory_matches_analytic(plans, name):
  plan, text = plans[name]
  xla, analytic = plan["train"]["xla"], plan["train"]["analytic"]
  assert plan["mesh"]["devices"] == 64 and plan["mesh"]["shape"]["data"] == 8
  for key in ("params", "optimizer"):
    assert xla["inputs"][key] == pytest.approx(analytic[key], rel=0.1), key
  # memory_analysis' argument bytes are the inputs' shard shapes: nothing is replicated.
  assert xla["argument_bytes"] == pytest.approx(sum(xla["inputs"].values()), rel=0.1)
  assert plan["rollout"]["xla"]["inputs"]["params"] == pytest.approx(analytic["params"], rel=0.1)
  assert plan["fits"] and "FITS in 80 GB" in text
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
