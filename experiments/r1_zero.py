"""R1-Zero: GRPO with rule-based rewards, straight from a base model (no SFT).

Variants (``--config=experiments/r1_zero.py:<variant>``):
  tiny          the embedded demo: the shipped tiny base model on chained sums, CPU, ~10 minutes
  tiny_control  the demo's control: learning rate 0, computed as the base model evaluated at the
                steps and with the keys the demo evaluates with (the `control` job)
  smoke         a few steps of tiny, for tests
  paper         the paper's R1-Zero hyperparameters (R1_REFERENCE.md) on the model named by
                `base_model` (a Qwen2.5-32B directory by default), 64 nodes x 8 GPUs
  7b            Qwen2.5-7B shape, the paper's early dense run that showed no clear RL gain
  16b_moe       a DeepSeekMoE-16B-shaped MoE (the early 16B MoE run)
  30b           Qwen2.5-32B ("Qwen2.5-32B-Zero", the 30B-class ablation)
  v3            DeepSeek-V3-Base 671B (the real R1-Zero base): the paper's hyperparameters on
                64 nodes x 8 GPUs with expert parallel across nodes and routing replay
  smoke_v3      smoke with a randomly initialised tiny DeepSeek-V3-shaped policy (MLA, grouped
                sigmoid routing, MTP, routing replay) and the character tokenizer, for tests
Any key can be overridden: ``--config.rl.kl_coef=0.01 --config.rl.eps_high=0.28``.
"""

import dataclasses

from ml_collections import config_dict

from r1jax.experiment import Experiment
from r1jax.models.config import MLAConfig, MoEConfig
from r1jax.models.presets import PRESETS

PAPER_RL = dict(  # R1_REFERENCE.md, "R1-Zero RL hyperparameters"
    num_generations=16, num_minibatches=16, inner_epochs=1, kl_coef=0.001, kl_estimator="k3",
    ref_reset_every=400)
SCALE_VARIANTS = {"7b": "qwen2.5-7b", "16b_moe": "deepseekmoe-16b", "30b": "qwen2.5-32b",
                  "paper": "qwen2.5-32b"}


def base() -> config_dict.ConfigDict:
  """Every key of the Experiment with its default, so overrides of any key are checked."""
  return config_dict.ConfigDict(dataclasses.asdict(Experiment()))


def tiny(c: config_dict.ConfigDict) -> None:
  c.base_model = "builtin:demo"
  c.data.datasets = ("r1_procedural",)
  c.data.procedural_types = ("math",)
  c.data.procedural_kinds = ("chain_sum",)
  c.data.procedural_difficulties = (1, 2, 3)
  c.data.procedural_sizes = (250, 30, 30)
  c.data.procedural_seed = 1
  c.data.max_prompt_len = 112
  c.data.questions_per_step = 8
  c.data.num_epochs = 10.0
  c.data.read_threads = 1
  c.rollout.max_new_tokens = 256         # a self-checked 5-term sum is about 210 tokens
  c.rollout.prompts_per_chunk = 4
  c.rl.num_generations = 16
  c.rl.num_minibatches = 2              # two optimizer steps per rollout, as the paper's 16
  c.rl.kl_coef = 0.001
  c.rl.ref_reset_every = 50
  c.optim.lr = 2e-4
  c.optim.weight_decay = 0.0
  c.optim.total_steps = 60
  c.rewards.format_weight = 0.0
  c.rewards.num_workers = 1
  c.loop.steps = 60                     # accuracy has mostly risen by step 40 (README)
  c.loop.eval_every = 10
  c.loop.save_every = 20
  c.eval.num_problems = 48
  c.eval.num_samples = 8
  c.eval.pass_at = (1, 8)


def scale(c: config_dict.ConfigDict, preset: str, paper: bool) -> None:
  """Real-scale shapes; set --config.base_model to the checkpoint directory to train for real."""
  c.model = config_dict.ConfigDict(dataclasses.asdict(Experiment().model))
  c.model.update({k: v for k, v in PRESETS[preset].items() if k not in ("moe", "mla")})
  if "mla" in PRESETS[preset]:
    c.model.mla = config_dict.ConfigDict(dataclasses.asdict(MLAConfig(**PRESETS[preset]["mla"])))
  if "moe" in PRESETS[preset]:
    c.model.moe = config_dict.ConfigDict(dataclasses.asdict(MoEConfig(**PRESETS[preset]["moe"])))
  c.model.compute_dtype = "bfloat16"
  c.model.remat = "full"
  c.mesh.ici = (1, 8, 1, 1)
  c.mesh.dcn = (64, 1, 1, 1)
  c.rl.update(PAPER_RL)
  c.rollout.max_new_tokens = 32_768
  c.rollout.temperature = 1.0            # R1_REFERENCE.md: sampling temperature 1 in RL
  c.rollout.cache_dtype = "bfloat16"
  c.rollout.prompts_per_chunk = 64        # one prompt per node: its 16 rows decode tensor-parallel there
  c.data.questions_per_step = 512          # 512 questions x 16 = 8,192 outputs per rollout
  c.data.max_prompt_len = 2048
  c.data.num_epochs = 1.6
  c.optim.lr = 3e-6
  c.optim.total_steps = 10_400
  c.optim.weight_decay = 0.1
  c.loop.steps = 10_400
  c.loop.max_new_tokens_schedule = ((0, 32_768), (8_200, 65_536))
  # The 65k stage's learner rows do not fit whole on one device: split each row's positions over
  # a node's 8 GPUs (exact; BUILD.md, "Planning without a GPU"), in 2 micro-batches.
  c.mesh.sequence_axis = "fsdp"
  c.rl.micro_batches = 2
  c.loop.eval_every = 200
  c.loop.save_every = 100
  if paper:
    c.rl.eps_low = c.rl.eps_high = 0.2


def v3(c: config_dict.ConfigDict) -> None:
  """R1-Zero on DeepSeek-V3-Base on 64 nodes x 8 GPUs: every weight is sharded over 32 GPUs
  (fsdp: a node's 8 x 4 nodes) and the 256 experts over 16 such groups (expert axis across
  nodes, 16 experts per group); the sampler records each token's experts and the learner
  replays them (routing replay)."""
  scale(c, "deepseek-v3-671b", paper=True)
  c.mesh.ici = (1, 8, 1, 1)
  c.mesh.dcn = (1, 4, 16, 1)
  c.model.moe.routing_replay = True
  c.rl.micro_batches = 4
  c.rollout.prompts_per_chunk = 16


def get_config(arg: str = "tiny") -> config_dict.ConfigDict:
  variant = arg or "tiny"
  c = base()
  if variant in ("tiny", "tiny_control", "smoke"):
    tiny(c)
    if variant == "tiny_control":
      c.job = "control"
      c.optim.lr = 0.0
    if variant == "smoke":
      c.data.procedural_sizes = (100, 20, 20)
      c.rollout.max_new_tokens = 48
      c.rl.num_minibatches = 1
      c.loop.steps = c.optim.total_steps = 3
      c.loop.eval_every = c.loop.save_every = 2
      c.eval.num_problems = 4
      c.eval.num_samples = 2
      c.eval.pass_at = (1, 2)
  elif variant == "v3":
    v3(c)
  elif variant == "smoke_v3":
    c = get_config("smoke")
    c.base_model = ""
    c.tokenizer = "char"
    c.data.max_prompt_len = 512          # the character tokenizer spells prompts out
    c.model.update({k: v for k, v in PRESETS["deepseek-v3-tiny"].items() if k not in ("moe", "mla")})
    c.model.mla = config_dict.ConfigDict(dataclasses.asdict(MLAConfig(**PRESETS["deepseek-v3-tiny"]["mla"])))
    c.model.moe = config_dict.ConfigDict(dataclasses.asdict(MoEConfig(**PRESETS["deepseek-v3-tiny"]["moe"])))
    c.model.moe.routing_replay = True
  elif variant in SCALE_VARIANTS:
    scale(c, SCALE_VARIANTS[variant], paper=variant == "paper")
  else:
    raise ValueError(f"unknown variant {variant!r}; known: tiny, tiny_control, smoke, "
                     f"{', '.join(SCALE_VARIANTS)}, v3, smoke_v3")
  return c
