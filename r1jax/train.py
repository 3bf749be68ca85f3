"""The R1-Zero loop: ``train_and_evaluate(config, workdir)``.

Per rollout: a batch of Q questions from the Grain pipeline, G samples each (chunked, rewards
scored asynchronously, reference log-probs dispatched per chunk), group advantages, then
M minibatches x E inner epochs of optimizer steps against the rollout's pi_old. The reference is
replaced by the policy every K optimizer steps. Evaluation runs at step 0, every `eval_every`
steps and at the end. Orbax saves (policy + optimizer, reference, rng, step, data-iterator
state, evaluation history) every `save_every` steps; rerunning in the same workdir resumes there,
and because every random draw is keyed by (seed, rollout index), a resumed run repeats the
uninterrupted run's metrics step for step. A non-finite loss or gradient stops the run with the
last good checkpoint kept.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from r1jax import experiment as experiment_lib
from r1jax import mesh as mesh_lib
from r1jax.checkpoint import Checkpointer, abstract_like
from r1jax.data.pipeline import load_examples, make_batch, make_prompt_dataset
from r1jax.evaluate import summarize
from r1jax.metrics import MetricsWriter, progress, read_jsonl
from r1jax.policy import load_policy, sampling_for
from r1jax.policy_eval import scored_samples
from r1jax.reward_model.hook import PreferenceReward
from r1jax.rewards.service import RewardService
from r1jax.rl import schedule
from r1jax.rl.advantages import rollout_metrics
from r1jax.rl.experience import collect_experience, sample_and_score
from r1jax.rl.optim import make_optimizer
from r1jax.rl.step import TrainState, make_train_step, state_shardings

SUMMARY_KEYS = ("pass@1", "cons@k", "response_length", "reflective_words_per_response")


class NonFiniteLossError(FloatingPointError):
  pass


def _state_from_params(model_cfg, optim_cfg, params, mesh, rules) -> TrainState:
  """A train state around given (e.g. pretrained) params, created in its shardings."""
  shardings = state_shardings(model_cfg, optim_cfg, mesh, rules)
  tx = make_optimizer(optim_cfg, params)
  make = jax.jit(lambda p: TrainState(p, tx.init(p), jnp.zeros((), jnp.int32)),
                 out_shardings=shardings)
  with mesh_lib.use_mesh(mesh, rules):
    return make(jax.device_put(params, shardings.params))


def _truncate_jsonl(path: str, last_step: int) -> None:
  """Drops records written after the checkpoint a run resumes from (they will be rewritten)."""
  if os.path.exists(path):
    kept = [r for r in read_jsonl(path) if r["step"] <= last_step]
    with open(path, "w", encoding="utf-8") as f:
      f.writelines(json.dumps(r) + "\n" for r in kept)


class Trainer:

  def __init__(self, exp: experiment_lib.Experiment, workdir: str):
    self.exp, self.workdir = exp, workdir
    self.rules = exp.mesh.rules
    self.mesh = mesh_lib.make_mesh(exp.mesh)
    self.model_cfg, params, self.tokenizer = load_policy(exp.base_model, exp.model, exp.tokenizer,
                                                         exp.loop.seed)
    self.sampling = sampling_for(exp.rollout, self.tokenizer)
    self.state = _state_from_params(self.model_cfg, exp.optim, params, self.mesh, self.rules)
    self.ref_params = schedule.copy_params(self.state.params)
    self._train_steps: dict[float, Any] = {}
    self.data = make_prompt_dataset(exp.data, self.tokenizer, "train", seed=exp.loop.seed,
                                    process_index=jax.process_index(),
                                    process_count=jax.process_count())
    self.data_iter = iter(self.data.dataset)
    examples = load_examples(exp.data, exp.eval.split, tokenizer=self.tokenizer)
    self.eval_batch = make_batch(examples[:exp.eval.num_problems], self.tokenizer,
                                 template=exp.data.template, max_prompt_len=exp.data.max_prompt_len)
    self.rewards = RewardService(exp.rewards)
    # RL stage 2: a reward model's score joins the rule rewards from preference.start_step on.
    self.preference = PreferenceReward.from_config(exp.preference, self.tokenizer)
    self.ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), keep=exp.loop.keep_checkpoints)
    self.writer = MetricsWriter(workdir)
    self.eval_writer = MetricsWriter(workdir, filename="eval.jsonl")
    self.seed_key = jax.random.key(exp.loop.seed)
    self.step = 0            # optimizer steps done
    self.rollouts = 0        # rollouts done (keys the sampling rng)
    self.wall_time_s = 0.0
    self.evals: list[dict[str, float]] = []
    self._restore()

  # ------------------------------------------------------------------ checkpoints

  def _restore(self) -> None:
    last = self.ckpt.latest_step()
    if last is None:
      return
    target = {"train": abstract_like(self.state), "ref": abstract_like(self.ref_params)}
    state, meta, data = self.ckpt.restore(last, target)
    self.state, self.ref_params = state["train"], state["ref"]
    self.step, self.rollouts = meta["step"], meta["rollouts"]
    self.wall_time_s, self.evals = meta["wall_time_s"], meta["evals"]
    self.data_iter.set_state(data["iterator"])
    for writer in (self.writer, self.eval_writer):
      if writer.enabled:
        _truncate_jsonl(writer.path, self.step)
    logging.info("resumed from step %d (%d rollouts) in %s", self.step, self.rollouts, self.workdir)

  def _save(self, force: bool = False) -> None:
    meta = {"step": self.step, "rollouts": self.rollouts, "wall_time_s": self.wall_time_s,
            "evals": self.evals}
    self.ckpt.save(self.step, {"train": self.state, "ref": self.ref_params}, meta,
                   {"iterator": self.data_iter.get_state()}, force=force)

  # ------------------------------------------------------------------ one rollout

  def _train_step(self, temperature: float):
    if temperature not in self._train_steps:
      grpo = dataclasses.replace(self.exp.rl, temperature=temperature)
      self._train_steps[temperature] = make_train_step(self.model_cfg, grpo, self.exp.optim,
                                                       self.mesh, self.rules)
    return self._train_steps[temperature]

  def _sampling_now(self) -> Any:
    loop = self.exp.loop
    return dataclasses.replace(
        self.sampling,
        max_new_tokens=int(experiment_lib.scheduled(loop.max_new_tokens_schedule, self.step,
                                                    self.sampling.max_new_tokens)),
        temperature=float(experiment_lib.scheduled(loop.temperature_schedule, self.step,
                                                   self.sampling.temperature)))

  def _rollout_and_learn(self, batch) -> list[dict[str, float]]:
    exp, g = self.exp, self.exp.rl.num_generations
    sampling = self._sampling_now()
    rng = jax.random.fold_in(self.seed_key, self.rollouts)
    start = time.perf_counter()
    with mesh_lib.use_mesh(self.mesh, self.rules):
      scored = collect_experience(self.model_cfg, self.state.params, self.ref_params, batch, rng,
                                  sampling, self.tokenizer, self.rewards)
    rollout_s = time.perf_counter() - start
    arrays = scored.arrays
    preference_info = self.preference.apply(arrays, self.step) if self.preference else {}
    info = rollout_metrics(arrays["rewards"], np.asarray(batch["data_type"]), g)
    info.update(preference_info)
    info.update({"reward/timeouts": float(scored.rewards.timed_out.sum()),
                 "reward/crashes": float(scored.rewards.crashed.sum()),
                 "time/rollout_s": rollout_s, "time/reward_wait_s": scored.reward_wait_s})
    prepared = schedule.prepare_rollout(exp.rl, arrays)
    groups = schedule.num_groups(prepared, g)
    usable = groups - groups % exp.rl.num_minibatches
    self.rollouts += 1
    if usable == 0:
      logging.warning("rollout %d: no informative groups left after dynamic sampling; no update",
                      self.rollouts)
      return [info]
    prepared = schedule.take_groups(prepared, np.arange(usable), g)
    learner = {k: v for k, v in prepared.items() if k != "rewards"}
    train_step = self._train_step(sampling.temperature)
    start = time.perf_counter()
    pending = []
    for minibatch in schedule.minibatches(learner, exp.rl, seed=exp.loop.seed + self.rollouts):
      if self.step >= exp.loop.steps:   # the last rollout may hold more minibatches than are due
        break
      self.state, metrics = train_step(self.state, minibatch)   # dispatched, not yet read
      pending.append(metrics)
      self.step += 1
      self.ref_params = schedule.maybe_reset_reference(self.step, exp.rl.ref_reset_every,
                                                       self.state.params, self.ref_params)
    records = [dict(jax.device_get(m)) for m in pending]
    learn_s = time.perf_counter() - start
    for i, record in enumerate(records):
      bad = [k for k in ("loss", "grad_norm") if not math.isfinite(float(record[k]))]
      if bad:
        raise NonFiniteLossError(
            f"{', '.join(bad)} is {[float(record[k]) for k in bad]} at step "
            f"{self.step - len(records) + i + 1}; stopping. The last good checkpoint is kept in "
            f"{self.ckpt.directory} (step {self.ckpt.latest_step()}).")
    records[0].update(info, **{"time/learn_s": learn_s,
                               "time/step_s": rollout_s + learn_s})
    return records

  # ------------------------------------------------------------------ evaluation

  def evaluate(self) -> dict[str, float]:
    cfg = self.exp.eval
    now = self._sampling_now()
    sampling = dataclasses.replace(now, num_samples=cfg.num_samples, temperature=cfg.temperature,
                                   max_new_tokens=cfg.max_new_tokens or now.max_new_tokens)
    rng = jax.random.fold_in(jax.random.fold_in(self.seed_key, 1 << 30), self.step)
    with mesh_lib.use_mesh(self.mesh, self.rules):
      scored = sample_and_score(self.model_cfg, self.state.params, self.eval_batch, rng, sampling,
                                self.tokenizer, self.rewards)
    k = cfg.num_samples
    samples = scored_samples(scored, self.eval_batch, k)
    metrics = summarize(samples, k, cfg.pass_at)
    metrics["cons@k"] = metrics[f"cons@{k}"]
    self.eval_writer.write(self.step, metrics)
    for i in range(min(self.exp.loop.log_samples, len(samples))):
      s = samples[i * k]
      self.writer.write_text(self.step, f"samples/{i}", f"Q: {self.eval_batch['prompt'][i]}\n\n"
                             f"A: {s['completion']}\n\ncorrect: {s['correct']}")
    self.evals.append({"step": self.step, **{key: metrics[key] for key in SUMMARY_KEYS}})
    return metrics

  # ------------------------------------------------------------------ the loop

  def _due(self, every: int, before: int) -> bool:
    return every > 0 and self.step // every > before // every

  def run(self) -> dict[str, Any]:
    loop = self.exp.loop
    bar = progress(loop.steps, self.step, "r1-zero")
    if not self.evals:
      self.evaluate()
    while self.step < loop.steps:
      tick = time.perf_counter()
      try:
        batch = next(self.data_iter)
      except StopIteration:
        logging.info("data exhausted after %d rollouts (data.num_epochs=%s)", self.rollouts,
                     self.exp.data.num_epochs)
        break
      before = self.step
      records = self._rollout_and_learn(batch)
      for i, record in enumerate(records):
        self.writer.write(before + i + 1, record)
      bar.update(self.step - before)
      bar.set_postfix(reward=f"{records[0].get('reward/mean', float('nan')):.3f}")
      self.wall_time_s += time.perf_counter() - tick
      if self._due(loop.eval_every, before) or self.step >= loop.steps:
        tick = time.perf_counter()
        metrics = self.evaluate()
        self.wall_time_s += time.perf_counter() - tick
        logging.info("step %d: pass@1 %.3f cons@k %.3f length %.1f", self.step, metrics["pass@1"],
                     metrics["cons@k"], metrics["response_length"])
      if self._due(loop.save_every, before) or self.step >= loop.steps:
        self._save()
    bar.close()
    summary = self.summary()
    if jax.process_index() == 0:
      with open(os.path.join(self.workdir, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
    return summary

  def summary(self) -> dict[str, Any]:
    first, last = self.evals[0], self.evals[-1]
    return {"first": first, "last": last, "steps": self.step, "rollouts": self.rollouts,
            "wall_time_s": self.wall_time_s, "reward_service": self.rewards.metrics()}

  def close(self) -> None:
    self.ckpt.close()
    self.rewards.close()
    self.writer.close()
    self.eval_writer.close()


def train_and_evaluate(config, workdir: str) -> dict[str, Any]:
  """Runs (or resumes) an RL experiment in `workdir`; returns its summary."""
  exp = config if isinstance(config, experiment_lib.Experiment) else experiment_lib.load(config)
  os.makedirs(workdir, exist_ok=True)
  trainer = Trainer(exp, workdir)
  try:
    return trainer.run()
  finally:
    trainer.close()
