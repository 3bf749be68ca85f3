import collections
import dataclasses

import grain
import numpy as np
import orbax.checkpoint as ocp
import pytest

from r1jax.data import pipeline
from r1jax.data.schema import DataError
from r1jax.data.templates import apply_template
from r1jax.data.tokenizers import CharTokenizer

TOK = CharTokenizer()


def _batches(config, seed):
  """The train split's batches; `get_state()` / `set_state()` resume the iterator exactly."""
  return iter(pipeline.make_prompt_dataset(config, TOK, "train", seed=seed).dataset)


def replace(config, **changes):
  new = dataclasses.replace(config, **changes)
  new.validate()
  return new


def _ids(iterator, n=None):
  batches = iterator if n is None else (next(iterator) for _ in range(n))
  return [tuple(b["source_id"]) for b in batches]


def test_batch_layout_is_fixed_and_left_padded(procedural_config):
  batch = next(_batches(procedural_config, seed=0))
  q, p = procedural_config.questions_per_step, procedural_config.max_prompt_len
  assert batch["prompt_tokens"].shape == (q, p) and batch["prompt_tokens"].dtype == np.int32
  assert batch["prompt_mask"].dtype == bool and batch["prompt_lengths"].dtype == np.int32
  for row in range(q):
    n = batch["prompt_lengths"][row]
    assert batch["prompt_mask"][row].sum() == n and batch["prompt_mask"][row, p - n:].all()
    assert (batch["prompt_tokens"][row, :p - n] == TOK.pad_id).all()
    assert batch["prompt_tokens"][row, p - n] == TOK.bos_id
    assert TOK.decode(batch["prompt_tokens"][row]).endswith(f"User: {batch['prompt'][row]}. Assistant:")
  for key in ("prompt", "data_type", "gold", "source_id"):
    assert batch[key].dtype == object and batch[key].shape == (q,)
  assert len(set(batch["source_id"])) == q


def test_deterministic_per_seed_and_covers_each_epoch(procedural_config):
  config = replace(procedural_config, num_epochs=2.0)
  data = pipeline.make_prompt_dataset(config, TOK, "train", seed=3)
  first = _ids(iter(data.dataset))
  assert first == _ids(_batches(config, seed=3))
  assert first != _ids(_batches(config, seed=4))
  assert len(first) == data.num_batches == 2 * data.batches_per_epoch
  per_epoch = data.batches_per_epoch
  for epoch in (first[:per_epoch], first[per_epoch:]):
    ids = [i for batch in epoch for i in batch]
    assert len(ids) == len(set(ids)) == data.num_examples  # 96 fit, 12 batches of 8: all seen once
  assert first[:per_epoch] != first[per_epoch:]  # reshuffled


def test_fractional_epochs(procedural_config):
  data = pipeline.make_prompt_dataset(replace(procedural_config, num_epochs=1.6), TOK, "train", seed=0)
  assert data.num_batches == int(1.6 * data.batches_per_epoch) == len(_ids(iter(data.dataset)))


def test_processes_read_their_rows_of_one_global_order(procedural_config):
  config = replace(procedural_config, num_epochs=1.0)
  whole = pipeline.make_prompt_dataset(config, TOK, "train", seed=0)
  halves = [pipeline.make_prompt_dataset(config, TOK, "train", seed=0, rows=slice(i * 4, i * 4 + 4))
            for i in range(2)]
  assert halves[0].questions_per_batch == 4 and halves[0].num_batches == whole.num_batches
  # Side by side, the two processes' rows are exactly one process's batches, in order.
  joined = [a + b for a, b in zip(*(_ids(iter(h.dataset)) for h in halves))]
  assert joined == _ids(iter(whole.dataset))
  with pytest.raises(ValueError, match="rows"):
    pipeline.make_prompt_dataset(config, TOK, "train", seed=0, rows=slice(8, 12))


@pytest.mark.parametrize("workers", [0, 1])
def test_resume_across_an_epoch_boundary(procedural_config, workers):
  config = replace(procedural_config, num_epochs=2.5, worker_count=workers)
  whole = _batches(config, seed=7)
  expected = _ids(whole)
  interrupted = _batches(config, seed=7)
  cut = 10  # 12 batches per epoch: resume two batches before the boundary
  seen = _ids(interrupted, cut)
  state = interrupted.get_state()
  resumed = _batches(config, seed=7)
  resumed.set_state(state)
  assert seen + _ids(resumed) == expected
  for it in (whole, interrupted, resumed):
    if hasattr(it, "close"):
      it.close()


def test_iterator_state_checkpoints_with_orbax(procedural_config, tmp_path):
  config = replace(procedural_config, num_epochs=2.0)
  it = _batches(config, seed=1)
  _ids(it, 13)
  checkpointer = ocp.Checkpointer(grain.checkpoint.CheckpointHandler())
  checkpointer.save(tmp_path / "ckpt", args=grain.checkpoint.CheckpointSave(it))
  expected = _ids(it, 3)
  restored = _batches(config, seed=1)
  checkpointer.restore(tmp_path / "ckpt", args=grain.checkpoint.CheckpointRestore(restored))
  assert _ids(restored, 3) == expected


def test_type_weights_set_the_mix(procedural_config):
  config = replace(procedural_config, type_weights=(("math", 3.0), ("logic", 1.0)), num_epochs=3.0)
  data = pipeline.make_prompt_dataset(config, TOK, "train", seed=0)
  counts = collections.Counter(t for b in data.dataset for t in b["data_type"])
  assert set(counts) == {"math", "logic"}
  assert counts["math"] == 3 * counts["logic"]  # 48-example epochs: 36 math, 12 logic


def test_length_filter_drops_long_prompts_and_errors_when_nothing_fits(procedural_config):
  longest = max(len(e["prompt"]) for e in pipeline.load_examples(procedural_config, "train"))
  template = len(apply_template("r1_zero", "")) + 1  # + BOS
  config = replace(procedural_config, max_prompt_len=template + longest // 2)
  data = pipeline.make_prompt_dataset(config, TOK, "train", seed=0)
  assert 0 < data.num_too_long < 96 and data.num_examples == 96 - data.num_too_long
  kept = pipeline.load_examples(config, "train", tokenizer=TOK)
  assert len(kept) == data.num_examples and all(len(e["prompt"]) <= longest // 2 for e in kept)
  with pytest.raises(DataError, match="none of its 96 prompts fits max_prompt_len=20"):
    pipeline.make_prompt_dataset(replace(config, max_prompt_len=20), TOK, "train", seed=0)


def test_too_few_examples_for_a_batch(procedural_config):
  with pytest.raises(DataError, match="fewer than one batch"):
    pipeline.make_prompt_dataset(replace(procedural_config, questions_per_step=64), TOK, "eval", seed=0)


def test_load_examples_shards_in_a_fixed_order(procedural_config):
  everything = pipeline.load_examples(procedural_config, "eval")
  halves = [pipeline.load_examples(procedural_config, "eval", process_index=i, process_count=2)
            for i in range(2)]
  assert everything == pipeline.load_examples(procedural_config, "eval")
  assert sorted(e["source_id"] for h in halves for e in h) == sorted(e["source_id"] for e in everything)
