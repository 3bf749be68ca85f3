"""Every training job ends with <workdir>/export, through the real command line: the directory loads
back as a Hugging Face model (config.json + safetensors, read by `load_hf`, whose logits match
transformers' on the golden files of tests/models/test_hf.py) with a tokenizer the `tokenizers`
library reads (adding the trainer's <bos>), and its logits equal those of the params in the job's
last checkpoint."""
import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
import tokenizers

from r1jax.data.pipeline import prompt_token_ids
from r1jax.data.templates import apply_template
from r1jax.data.tokenizers import load_tokenizer
from r1jax.models import load_hf, logits
from r1jax.policy import resolve

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
R1_ZERO = os.path.join(ROOT, "experiments", "r1_zero.py")
# The smallest R1-Zero run: one rollout of 2 questions x 4 samples, short answers.
TINY_RL = ["--config.loop.steps=1", "--config.optim.total_steps=1", "--config.rl.num_generations=4",
           "--config.data.questions_per_step=2", "--config.rollout.max_new_tokens=16",
           "--config.eval.num_problems=2", "--config.loop.log_samples=0"]
TINY_SFT = ["--config.job=sft", "--config.sft.steps=2", "--config.sft.batch_rows=2",
            "--config.sft.row_len=448", "--config.sft.max_examples=4", "--config.sft.save_every=1"]


def _main(config, workdir, *overrides):
  env = dict(os.environ, XLA_FLAGS="", JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, "-m", "r1jax.main", f"--config={config}",
                         f"--workdir={workdir}", *overrides], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]


def _last_params(workdir, *path):
  """The params of the newest checkpoint in <workdir>/checkpoints, read without a target."""
  root = os.path.join(workdir, "checkpoints")
  step = max(int(d) for d in os.listdir(root) if d.isdigit())
  state = ocp.PyTreeCheckpointer().restore(os.path.join(root, str(step), "state"))
  for key in path:
    state = state[key]
  return state


def _assert_export_is_the_final_policy(export, params):
  assert json.load(open(os.path.join(export, "config.json")))["model_type"] == "qwen2"
  tokenizer = tokenizers.Tokenizer.from_file(os.path.join(export, "tokenizer.json"))
  ids = tokenizer.encode("<think>3 + 4 = 7</think><answer>7</answer>").ids
  assert len(ids) > 5
  # Defaults a transformers user gets (tests/test_policy.py runs them through transformers): the
  # trainer's prompt ids from the tokenizer, its <eos> in generation_config.json.
  trainer = load_tokenizer(resolve("builtin:demo"))
  prompt = apply_template("r1_zero", "Compute 3 + 4")
  assert tokenizer.encode(prompt).ids == prompt_token_ids(prompt, trainer)
  generation = json.load(open(os.path.join(export, "generation_config.json")))
  assert (generation["bos_token_id"], generation["eos_token_id"]) == (trainer.bos_id, trainer.eos_id)
  cfg, exported = load_hf(export)
  tokens = np.asarray([ids], np.int32)
  np.testing.assert_allclose(np.asarray(logits(cfg, exported, tokens)),
                             np.asarray(logits(cfg, params, tokens)), atol=1e-6, rtol=0)
  # The export holds the final params themselves, not those of an earlier save.
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)),
               exported, params)


@pytest.mark.slow
def test_rl_job_exports_its_final_policy(tmp_path):
  _main(f"{R1_ZERO}:smoke", tmp_path, *TINY_RL)
  _assert_export_is_the_final_policy(str(tmp_path / "export"),
                                     _last_params(tmp_path, "train", "params"))


@pytest.mark.slow
def test_sft_job_and_a_pipeline_export_their_final_policy(tmp_path):
  sft_dir = tmp_path / "sft"
  _main(f"{R1_ZERO}:smoke", sft_dir, *TINY_SFT)
  _assert_export_is_the_final_policy(str(sft_dir / "export"), _last_params(sft_dir, "params"))

  # A pipeline's export is its last model-producing stage's (a rejection stage hands on traces).
  config = tmp_path / "two_stages.py"
  config.write_text(textwrap.dedent(f"""
      import importlib.util
      spec = importlib.util.spec_from_file_location("r1_zero", {R1_ZERO!r})
      r1_zero = importlib.util.module_from_spec(spec)
      spec.loader.exec_module(r1_zero)

      def get_config(arg=""):
        c = r1_zero.get_config("smoke")
        c.job = "pipeline"
        sft = {{"steps": 1, "batch_rows": 2, "row_len": 448, "max_examples": 4}}
        c.pipeline.stages = {{"first": {{"job": "sft", "set": {{"sft": sft}}}},
                             "second": {{"job": "sft", "set": {{"sft": sft,
                                                               "base_model": "stage:first"}}}}}}
        c.pipeline.order = ("first", "second")
        return c
      """))
  pipe = tmp_path / "pipe"
  _main(str(config), pipe)
  assert os.path.realpath(pipe / "export") == os.path.realpath(pipe / "second" / "export")
  _assert_export_is_the_final_policy(str(pipe / "export"),
                                     _last_params(pipe / "second", "params"))


def test_a_pipeline_links_its_last_policy_not_a_reward_model(tmp_path, monkeypatch):
  from r1jax.jobs import registry, stages
  done = {name: {"job": job, "output": str(tmp_path / name / out) if out else None}
          for name, job, out in (("cold", "sft", "export"), ("rl1", "rl", "export"),
                                 ("traces", "rejection", "traces.jsonl"),
                                 ("rm", "reward_model", "export"), ("judge", "evaluate", None))}
  for d in done.values():
    if d["output"] and d["output"].endswith("export"):
      os.makedirs(d["output"])
  monkeypatch.setattr(stages, "run", lambda exp, workdir, jobs: done)
  assert registry._pipeline(None, str(tmp_path)) is done
  assert os.path.realpath(tmp_path / "export") == os.path.realpath(tmp_path / "rl1" / "export")
  assert not os.path.isabs(os.readlink(tmp_path / "export"))   # the workdir can move


@pytest.mark.parametrize("every_save", [False, True])
def test_loop_export_every_save_refreshes_the_export_at_each_checkpoint(every_save):
  """`loop.export_every_save` makes each checkpoint also write the export (the end-of-run export
  is the same `Trainer.export`, exercised through the command line above)."""
  import types

  from r1jax.train import LoopConfig, Trainer
  calls = []
  trainer = types.SimpleNamespace(
      step=4, rollouts=2, wall_time_s=1.0, evals=[], state="state", ref_params="ref",
      data_iter=types.SimpleNamespace(get_state=lambda: b""),
      ckpt=types.SimpleNamespace(save=lambda step, *a: calls.append(("save", step))),
      exp=types.SimpleNamespace(loop=LoopConfig(export_every_save=every_save)),
      export=lambda: calls.append(("export",)))
  Trainer._save(trainer)
  assert calls == [("save", 4)] + ([("export",)] if every_save else [])


def test_sft_calls_its_save_hook_with_the_saved_params(tmp_path):
  """The sft job's `export_every_save` runs through this hook after each checkpoint."""
  from r1jax.models import ModelConfig, init
  from r1jax.rl.config import OptimConfig
  from r1jax.sft.train import SFTConfig, train_sft
  cfg = ModelConfig(vocab_size=16, dim=8, num_layers=1, num_heads=2, num_kv_heads=1, head_dim=4,
                    ffn_dim=16, max_seq_len=32)
  saved = []
  final = train_sft(cfg, SFTConfig(steps=3, batch_rows=2, row_len=8, save_every=2, log_every=1),
                    OptimConfig(lr=1e-2, total_steps=3), [([1, 2], [3, 4]), ([5], [6, 7, 8])],
                    str(tmp_path), init_params=init(cfg, jax.random.key(0)),
                    on_save=lambda step, params: saved.append((step, jax.device_get(params))))
  assert [step for step, _ in saved] == [2, 3]
  jax.tree.map(np.testing.assert_array_equal, saved[-1][1], jax.device_get(final))
