"""The R1-Zero loop: ``train_and_evaluate(exp, workdir)``.

Per rollout: a batch of Q questions from the Grain pipeline, G samples each with rewards and
reference log-probs (`r1jax.experience.sample_and_score`), group advantages, then M minibatches
x E inner epochs of optimizer steps against the rollout's pi_old (:func:`learn`). The reference
is replaced by the policy every K optimizer steps. Evaluation runs at step 0, every `eval_every`
steps and at the end. Orbax saves (policy + optimizer, reference, rng, step, data-iterator
state, evaluation history) every `save_every` steps; rerunning in the same workdir resumes there,
and because every random draw is keyed by (seed, rollout index), a resumed run repeats the
uninterrupted run's metrics step for step. A non-finite loss or gradient stops the run with the
last good checkpoint kept.

On several processes (`r1jax.distributed`) every process reads its rows of the same global batch,
samples and learns on global arrays, and reaches the same host-side results (rewards, advantages,
minibatches, metrics) through explicit gathers, so the run's metrics equal one process's; only
process 0 writes metrics and samples, and a checkpoint resumes on any number of processes.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Iterable
from typing import Any

import jax
import numpy as np
from absl import logging

from r1jax import distributed
from r1jax import mesh as mesh_lib
from r1jax.checkpoint import Checkpointer, abstract_like
from r1jax.config import check_range
from r1jax.data.pipeline import make_prompt_dataset
from r1jax.evaluate import SUMMARY_KEYS
from r1jax.experience import eval_batch, evaluate, sample_and_score, sampling_for
from r1jax.metrics import MetricsWriter, progress, read_jsonl
from r1jax.policy import EXPORT, export_policy, load_policy
from r1jax.reward_model.hook import PreferenceReward
from r1jax.rewards.service import RewardService
from r1jax.rl import offload
from r1jax.rl.advantages import rollout_metrics
from r1jax.rl.batch import LearnerBatch
from r1jax.rl.dynamic_sampling import needs_more, refilled_batch
from r1jax.rl.minibatch import minibatches, prepare
from r1jax.rl.reference import make_reference, maybe_reset_reference
from r1jax.rl.step import TrainState, init_train_state, make_train_step

Schedule = tuple[tuple[int, float], ...]


@dataclasses.dataclass(frozen=True)
class LoopConfig:
  """The RL loop. A step is one optimizer step; one rollout feeds rl.num_minibatches x epochs."""
  steps: int = 100
  eval_every: int = 10            # steps between evaluations; the last step always evaluates
  save_every: int = 10            # steps between checkpoints (rounded to whole rollouts)
  keep_checkpoints: int = 3
  log_samples: int = 3            # completions per evaluation written as text
  export_every_save: bool = False  # also refresh <workdir>/export at each checkpoint
  # (from_step, value) pairs: the paper raised the length from 32,768 to 65,536 at step 8.2k.
  max_new_tokens_schedule: tuple[tuple[int, int], ...] = ()
  temperature_schedule: tuple[tuple[int, float], ...] = ()
  seed: int = 0

  def validate(self):
    check_range("steps", self.steps, 1)
    check_range("eval_every", self.eval_every, 0)
    check_range("save_every", self.save_every, 1)
    check_range("keep_checkpoints", self.keep_checkpoints, 1)
    check_range("log_samples", self.log_samples, 0)
    for _, value in self.max_new_tokens_schedule:
      check_range("max_new_tokens_schedule", value, 1)
    for _, value in self.temperature_schedule:
      check_range("temperature_schedule", value, 0.0)


def scheduled(schedule: Schedule, step: int, default: float) -> float:
  """The value of a piecewise-constant schedule ((from_step, value), ...) at `step`."""
  value = default
  for start, v in sorted(schedule):
    if step >= start:
      value = v
  return value


class NonFiniteLossError(FloatingPointError):
  pass


def learn(train_step, state: TrainState, ref_params, batches: Iterable, *, step: int,
          last_step: int, ref_reset_every: int) -> tuple[TrainState, Any, list[dict]]:
  """Optimizer steps on `batches`, counting from `step` and stopping at `last_step`; the
  reference becomes a copy of the policy every `ref_reset_every` steps. Every step is dispatched
  before any metrics are read. Returns (state, reference params, each step's metrics)."""
  pending = []
  for batch in batches:
    if step >= last_step:   # the last rollout may hold more minibatches than are due
      break
    state, metrics = train_step(state, batch)
    pending.append(metrics)
    step += 1
    ref_params = maybe_reset_reference(step, ref_reset_every, state.params, ref_params)
  return state, ref_params, pending


def global_batches(batches: Iterable[LearnerBatch], mesh, rules) -> Iterable[dict[str, jax.Array]]:
  """Each host minibatch (whole on every process) as global arrays split along the batch axis:
  every process places only the rows its devices hold."""
  for batch in batches:
    fields = batch.fields()
    yield distributed.global_batch(
        {k: v[distributed.process_rows(v.shape, mesh, rules)] for k, v in fields.items()},
        {k: v.shape[0] for k, v in fields.items()}, mesh, rules)


def period_due(every: int, before: int, after: int) -> bool:
  """Whether going from step `before` to `after` crosses a multiple of `every` (0: never)."""
  return every > 0 and after // every > before // every


def _truncate_jsonl(path: str, last_step: int) -> None:
  """Drops records written after the checkpoint a run resumes from (they will be rewritten)."""
  if os.path.exists(path):
    kept = [r for r in read_jsonl(path) if r["step"] <= last_step]
    with open(path, "w", encoding="utf-8") as f:
      f.writelines(json.dumps(r) + "\n" for r in kept)


class Trainer:

  def __init__(self, exp, workdir: str):
    self.exp, self.workdir = exp, workdir
    self.rules = exp.mesh.rules
    self.mesh = mesh_lib.make_mesh(exp.mesh)
    self.model_cfg, params, self.tokenizer = load_policy(exp.base_model, exp.model, exp.tokenizer,
                                                         exp.loop.seed)
    self.sampling = sampling_for(exp.rollout, self.tokenizer)
    self.state = init_train_state(self.model_cfg, exp.optim, params, self.mesh, self.rules)
    self.ref_params = make_reference(self.model_cfg,   # bf16 under bf16 compute, on the device
                                     offload.place(self.state.params, offload.DEVICE))
    self._train_steps: dict[float, Any] = {}
    # Every process reads the same global order of questions and takes its rows of each batch.
    self.data = make_prompt_dataset(
        exp.data, self.tokenizer, "train", seed=exp.loop.seed,
        rows=distributed.process_rows((exp.data.questions_per_step,), self.mesh, self.rules))
    self.data_iter = iter(self.data.dataset)
    self.eval_batch = eval_batch(exp, self.tokenizer)
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
    # Reading data and the model takes each process its own time; gloo gives a late process only
    # 30 s to join the first collectives, so start the first programs together.
    distributed.barrier("trainer_ready")

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

  def _save(self) -> None:
    meta = {"step": self.step, "rollouts": self.rollouts, "wall_time_s": self.wall_time_s,
            "evals": self.evals}
    self.ckpt.save(self.step, {"train": self.state, "ref": self.ref_params}, meta,
                   {"iterator": self.data_iter.get_state()})
    if self.exp.loop.export_every_save:
      self.export()

  def export(self) -> None:
    """Writes the current policy to <workdir>/export (Hugging Face layout)."""
    params = distributed.fetch(self.state.params)   # every process takes part in the gather
    if distributed.is_chief():
      export_policy(self.model_cfg, params, self.exp.base_model,
                    os.path.join(self.workdir, EXPORT), tokenizer=self.exp.tokenizer,
                    template=self.exp.data.template)

  # ------------------------------------------------------------------ one rollout

  def _train_step(self, temperature: float):
    if temperature not in self._train_steps:
      self._train_steps[temperature] = make_train_step(
          self.model_cfg, self.exp.rl, self.exp.optim, self.mesh, self.exp.mesh.learner_rules(),
          temperature=temperature)
    return self._train_steps[temperature]

  def _sampling_now(self) -> Any:
    loop = self.exp.loop
    return dataclasses.replace(
        self.sampling,
        max_new_tokens=int(scheduled(loop.max_new_tokens_schedule, self.step,
                                     self.sampling.max_new_tokens)),
        temperature=float(scheduled(loop.temperature_schedule, self.step,
                                    self.sampling.temperature)))

  def _sample(self, batch, sampling):
    """One rollout of `batch`: (scored samples, learner groups, rewards, preference metrics)."""
    rng = jax.random.fold_in(self.seed_key, self.rollouts)
    recompute = self.exp.rl.recompute_old_logprobs
    # optim.offload: the sampler reads a compute-dtype copy while the state waits in host memory.
    weights, self.state = offload.rollout_phase(self.model_cfg, self.state, self.exp.optim.offload)
    with mesh_lib.use_mesh(self.mesh, self.rules):
      scored = sample_and_score(self.model_cfg, weights, batch, rng, sampling,
                                self.exp.rl.num_generations, self.tokenizer, self.rewards,
                                ref_params=self.ref_params,
                                old_params=weights if recompute else None,
                                num_prompts=self.exp.data.questions_per_step)
    self.state = offload.learner_phase(self.state, weights, self.exp.optim.offload)
    self.rollouts += 1
    groups, rewards, info = scored.groups(), scored.rewards.reward, {}
    if self.preference:
      rewards, info = self.preference.apply(groups, rewards, self.step)
    return scored, groups, rewards, info

  def _rollout_and_learn(self, batch) -> list[dict[str, float]]:
    exp, g = self.exp, self.exp.rl.num_generations
    sampling = self._sampling_now()
    start = time.perf_counter()
    scored, groups, rewards, info = self._sample(batch, sampling)
    rounds = [(groups, rewards)]
    # DAPO: sample more prompts until the batch holds enough informative groups.
    while exp.rl.dynamic_sampling and needs_more(exp.rl, rounds, exp.data.questions_per_step):
      try:
        rounds.append(self._sample(next(self.data_iter), sampling)[1:3])
      except StopIteration:
        break
    rollout_s = time.perf_counter() - start
    info.update(rollout_metrics(rewards, np.asarray(scored.batch["data_type"]), g))
    info.update({"reward/timeouts": float(scored.rewards.timed_out.sum()),
                 "reward/retries": float(scored.rewards.retried.sum()),
                 "reward/crashes": float(scored.rewards.crashed.sum()),
                 "time/rollout_s": rollout_s, "time/reward_wait_s": scored.reward_wait_s})
    if exp.rl.dynamic_sampling:   # always questions_per_step groups: one compiled step shape
      prepared, refill_info = refilled_batch(exp.rl, rounds, exp.data.questions_per_step,
                                             self.sampling.pad_id)
      info.update(refill_info)
    else:
      prepared = prepare(exp.rl, groups, rewards)
    usable = prepared.num_prompts - prepared.num_prompts % exp.rl.num_minibatches
    if usable == 0:
      logging.warning("rollout %d: no informative groups left after dynamic sampling; no update",
                      self.rollouts)
      return [info]
    prepared = prepared.take_groups(np.arange(usable))
    start = time.perf_counter()
    self.state, self.ref_params, pending = learn(
        self._train_step(sampling.logprob_temperature), self.state, self.ref_params,
        global_batches(minibatches(prepared, exp.rl, seed=exp.loop.seed + self.rollouts),
                       self.mesh, exp.mesh.learner_rules()), step=self.step,
        last_step=exp.loop.steps, ref_reset_every=exp.rl.ref_reset_every)
    self.step += len(pending)
    records = [dict(m) for m in distributed.fetch(pending)]
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
    rng = jax.random.fold_in(jax.random.fold_in(self.seed_key, 1 << 30), self.step)
    weights, self.state = offload.rollout_phase(self.model_cfg, self.state, self.exp.optim.offload)
    with mesh_lib.use_mesh(self.mesh, self.rules):
      metrics, samples = evaluate(self.model_cfg, weights, self.eval_batch, rng,
                                  self._sampling_now(), self.tokenizer, self.rewards,
                                  self.exp.eval)
    self.state = offload.learner_phase(self.state, weights, self.exp.optim.offload)
    k = self.exp.eval.num_samples
    self.eval_writer.write(self.step, metrics)
    for i in range(min(self.exp.loop.log_samples, len(samples) // k)):
      s = samples[i * k]
      self.writer.write_text(self.step, f"samples/{i}", f"Q: {self.eval_batch['prompt'][i]}\n\n"
                             f"A: {s['completion']}\n\ncorrect: {s['correct']}")
    self.evals.append({"step": self.step, **{key: metrics[key] for key in SUMMARY_KEYS}})
    return metrics

  # ------------------------------------------------------------------ the loop

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
      if period_due(loop.eval_every, before, self.step) or self.step >= loop.steps:
        tick = time.perf_counter()
        metrics = self.evaluate()
        self.wall_time_s += time.perf_counter() - tick
        logging.info("step %d: pass@1 %.3f cons@k %.3f length %.1f", self.step, metrics["pass@1"],
                     metrics["cons@k"], metrics["response_length"])
      if period_due(loop.save_every, before, self.step) or self.step >= loop.steps:
        self._save()
    bar.close()
    return self.summary()

  def summary(self) -> dict[str, Any]:
    first, last = self.evals[0], self.evals[-1]
    return {"first": first, "last": last, "steps": self.step, "rollouts": self.rollouts,
            "wall_time_s": self.wall_time_s, "reward_service": self.rewards.metrics()}

  def close(self) -> None:
    self.ckpt.close()
    self.rewards.close()
    self.writer.close()
    self.eval_writer.close()


def train_and_evaluate(exp, workdir: str, *, export: bool = False) -> dict[str, Any]:
  """Runs (or resumes) the RL experiment `exp` (an `r1jax.experiment.Experiment`) in `workdir`;
  returns its summary. With `export`, the final policy is also written to <workdir>/export."""
  os.makedirs(workdir, exist_ok=True)
  trainer = Trainer(exp, workdir)
  try:
    summary = trainer.run()
    if export:
      trainer.export()
      if not exp.base_model:
        logging.warning("RL from a random init: its export has no tokenizer files")
    return summary
  finally:
    trainer.close()
