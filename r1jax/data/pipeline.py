"""The prompt pipeline in front of the rollout, on Grain. At start-up every process reads the
split's prompts once (all datasets, in a fixed order), drops those whose templated tokens exceed the
fixed prompt length P, and lays out the whole run's global order up front: each epoch a fresh
seeded permutation (or a weighted per-type draw), cut to whole batches of Q questions so that a
batch never spans two epochs and holds Q distinct questions. Every process computes the same order
and reads only its own rows of each global batch (``rows``, e.g. `r1jax.distributed.process_rows`),
so N processes together see exactly the batches of one process, whatever N is. Grain then reads,
templates, tokenizes and left-pads batches in background threads (and optionally worker
processes). Because the order is a pure function of (config, seed, split), the iterator state is
just a position: a restored iterator yields exactly the batches an uninterrupted one would, across
epoch boundaries and across process counts too.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import grain
import numpy as np
from absl import flags, logging

from r1jax.data import builders
from r1jax.data.config import DataConfig
from r1jax.data.schema import DATA_TYPES, FIELDS, DataError
from r1jax.data.templates import apply_template
from r1jax.data.tokenizers import Tokenizer

_SCAN_CHUNK = 1024


def _decode(record: dict[str, Any]) -> dict[str, Any]:
  """TFDS returns text features as bytes; the pipeline hands out str."""
  return {k: v.decode("utf-8") if isinstance(v, bytes) else int(v) if k == "difficulty" else v
          for k, v in record.items() if k in FIELDS}


class _Records(grain.sources.RandomAccessDataSource):
  """Several TFDS splits seen as one indexable sequence, read in the order given by ``order``."""

  def __init__(self, sources: Sequence[Any], order: np.ndarray):
    self._sources = list(sources)
    self._starts = np.cumsum([0] + [len(s) for s in sources])
    self._order = order

  def __len__(self) -> int:
    return len(self._order)

  def __getitem__(self, index: int) -> dict[str, Any]:
    g = int(self._order[index])
    s = int(np.searchsorted(self._starts, g, side="right")) - 1
    return _decode(self._sources[s][g - int(self._starts[s])])


def _open_sources(config: DataConfig, split: str) -> list[Any]:
  """TFDS data sources of ``split`` for every configured dataset, built first where allowed."""
  sources = []
  for name in config.datasets:
    builder = builders.prepared(name, config)
    splits = builder.info.splits
    if split not in splits:
      logging.warning("dataset %s has no %r split (it has %s); skipping it", name, split,
                      ", ".join(splits))
      continue
    sources.append(builder.as_data_source(split=split))
  if not sources:
    raise DataError(f"no configured dataset ({', '.join(config.datasets)}) has a {split!r} split")
  if sum(len(s) for s in sources) == 0:
    raise DataError(f"split {split!r} of {', '.join(config.datasets)} is empty")
  return sources


def prompt_token_ids(text: str, tokenizer: Tokenizer) -> list[int]:
  ids = tokenizer.encode(text)
  return [tokenizer.bos_id] + ids if tokenizer.bos_id is not None else ids


def make_batch(examples: Sequence[dict[str, Any]], tokenizer: Tokenizer, *, template: str,
               max_prompt_len: int) -> dict[str, np.ndarray]:
  """Templates, tokenizes and left-pads examples to ``max_prompt_len``; keeps the raw fields."""
  batch = np.full((len(examples), max_prompt_len), tokenizer.pad_id, np.int32)
  lengths = np.zeros(len(examples), np.int32)
  for row, example in enumerate(examples):
    ids = prompt_token_ids(apply_template(template, example["prompt"]), tokenizer)
    if len(ids) > max_prompt_len:
      raise DataError(f"example {example['source_id']}: {len(ids)} prompt tokens exceed "
                      f"max_prompt_len={max_prompt_len}")
    lengths[row] = len(ids)
    batch[row, max_prompt_len - len(ids):] = ids
  out = {
      "prompt_tokens": batch,
      "prompt_mask": np.arange(max_prompt_len)[None, :] >= (max_prompt_len - lengths)[:, None],
      "prompt_lengths": lengths,
  }
  for key in FIELDS:
    out[key] = np.array([e[key] for e in examples], np.int32 if key == "difficulty" else object)
  return out


@dataclasses.dataclass(frozen=True)
class _Collate:
  """:func:`make_batch` as a picklable object, so Grain worker processes can run it."""
  tokenizer: Tokenizer
  template: str
  max_prompt_len: int

  def __call__(self, examples: Sequence[dict[str, Any]]) -> dict[str, np.ndarray]:
    return make_batch(examples, self.tokenizer, template=self.template,
                      max_prompt_len=self.max_prompt_len)


@dataclasses.dataclass(frozen=True)
class _Scan:
  """What start-up learns about a split: usable global indices (in order) and their data types."""
  indices: np.ndarray  # int64 global record indices whose prompts fit
  types: np.ndarray  # int8 index into DATA_TYPES
  total: int
  longest: int


def _scan(sources, tokenizer: Tokenizer | None, config: DataConfig) -> _Scan:
  indices, types, longest, offset = [], [], 0, 0
  for source in sources:
    for start in range(0, len(source), _SCAN_CHUNK):
      chunk = source.__getitems__(range(start, min(start + _SCAN_CHUNK, len(source))))
      for i, record in enumerate(chunk):
        example = _decode(record)
        if tokenizer is not None:
          n = len(prompt_token_ids(apply_template(config.template, example["prompt"]), tokenizer))
          longest = max(longest, n)
          if n > config.max_prompt_len:
            continue
        indices.append(offset + start + i)
        types.append(DATA_TYPES.index(example["data_type"]))
    offset += len(source)
  return _Scan(np.asarray(indices, np.int64), np.asarray(types, np.int8), offset, longest)


def _check_scan(scan: _Scan, config: DataConfig, split: str) -> None:
  if len(scan.indices) == 0:
    raise DataError(f"split {split!r} of {', '.join(config.datasets)}: none of its {scan.total} "
                    f"prompts fits max_prompt_len={config.max_prompt_len} tokens after the "
                    f"{config.template!r} template (longest: {scan.longest}); raise max_prompt_len")
  dropped = scan.total - len(scan.indices)
  if dropped:
    logging.info("split %s: dropped %d of %d prompts longer than %d tokens", split, dropped,
                 scan.total, config.max_prompt_len)


def _permutation(n: int, seed: int, *tag: int) -> np.ndarray:
  return np.random.default_rng([seed, *tag]).permutation(n)


def _quotas(weights: dict[int, float], sizes: dict[int, int]) -> dict[int, int]:
  """Examples per type per epoch, proportional to the weights, summing to the epoch size."""
  epoch = sum(sizes[t] for t in weights)
  total = sum(weights.values())
  exact = {t: epoch * w / total for t, w in weights.items()}
  quotas = {t: int(v) for t, v in exact.items()}
  for t in sorted(exact, key=lambda t: quotas[t] - exact[t])[:epoch - sum(quotas.values())]:
    quotas[t] += 1  # largest remainders first
  return quotas


def _epoch_order(mine: np.ndarray, mine_types: np.ndarray, config: DataConfig, seed: int,
                 epoch: int) -> np.ndarray:
  """One epoch of the global indices: a permutation, or a weighted per-type draw."""
  if not config.type_weights:
    return mine[_permutation(len(mine), seed, epoch)] if config.shuffle else mine
  weights = {DATA_TYPES.index(t): w for t, w in config.type_weights}
  pools = {t: mine[mine_types == t] for t in weights}
  quotas = _quotas(weights, {t: len(p) for t, p in pools.items()})
  parts = []
  for t, pool in pools.items():
    # Type t's stream: pool permuted afresh for each of its own passes, read from epoch*quota on.
    positions = np.arange(epoch * quotas[t], (epoch + 1) * quotas[t])
    passes = positions // len(pool)
    picked = np.empty(len(positions), np.int64)
    for p in np.unique(passes):
      at = passes == p
      perm = _permutation(len(pool), seed, 1_000_003, t, int(p)) if config.shuffle else np.arange(len(pool))
      picked[at] = pool[perm[positions[at] % len(pool)]]
    parts.append(picked)
  order = np.concatenate(parts)
  return order[_permutation(len(order), seed, epoch)] if config.shuffle else order


def _check_weights(config: DataConfig, types: np.ndarray, split: str) -> None:
  for t, _ in config.type_weights:
    if not np.any(types == DATA_TYPES.index(t)):
      raise DataError(f"data.type_weights gives {t!r} a weight but split {split!r} of "
                      f"{', '.join(config.datasets)} has no {t} examples that fit")


@dataclasses.dataclass(frozen=True)
class PromptDataset:
  """A run's batches as a Grain dataset, with the counts the trainer plans with."""
  dataset: grain.IterDataset
  num_batches: int  # batches this process will yield (the same on every process)
  batches_per_epoch: int
  questions_per_batch: int  # this process's rows of each batch of Q
  num_examples: int  # usable examples in the split
  num_too_long: int  # prompts dropped by the length filter


def make_prompt_dataset(config: DataConfig, tokenizer: Tokenizer, split: str, *, seed: int,
                        rows: slice = slice(None)) -> PromptDataset:
  """Batches for ``config.num_epochs`` epochs: of each global batch of ``Q`` prompts, the rows
  ``rows`` (all of them by default; a process of several passes its own)."""
  q = config.questions_per_step
  rows = range(q)[rows]
  if not rows or rows.step != 1:
    raise ValueError(f"rows={rows} must be a non-empty contiguous slice of the "
                     f"questions_per_step={q} rows of a batch")
  sources = _open_sources(config, split)
  scan = _scan(sources, tokenizer, config)
  _check_scan(scan, config, split)
  _check_weights(config, scan.types, split)
  usable, usable_types = scan.indices, scan.types
  if config.type_weights:
    keep = np.isin(usable_types, [DATA_TYPES.index(t) for t, _ in config.type_weights])
    usable, usable_types = usable[keep], usable_types[keep]
  batches_per_epoch = len(usable) // q
  if batches_per_epoch == 0:
    raise DataError(f"split {split!r} has {len(usable)} usable examples, fewer than one batch of "
                    f"{q}; lower questions_per_step or add data")
  num_batches = math.floor(config.num_epochs * batches_per_epoch)
  if num_batches == 0:
    raise DataError(f"num_epochs={config.num_epochs} of {batches_per_epoch} batches is less than "
                    "one batch")
  order = np.concatenate([
      _epoch_order(usable, usable_types, config, seed, e)[:batches_per_epoch * q]
      for e in range(math.ceil(num_batches / batches_per_epoch))])[:num_batches * q]
  # The global order, batch by batch; this process reads its rows of each.
  order = order.reshape(num_batches, q)[:, rows.start:rows.stop].reshape(-1)
  per_batch = len(rows)

  ds = grain.MapDataset.source(_Records(sources, order)).batch(
      per_batch, drop_remainder=True, batch_fn=_Collate(tokenizer, config.template,
                                                        config.max_prompt_len))
  # Threads read and tokenize whole batches ahead of the consumer; 0 threads reads inline.
  ids = ds.to_iter_dataset(grain.ReadOptions(num_threads=config.read_threads,
                                             prefetch_buffer_size=config.prefetch_batches))
  if config.worker_count:
    if not flags.FLAGS.is_parsed():
      # Grain's worker processes read absl flags; outside an absl app (tests, notebooks) they
      # would never be parsed, so take their defaults.
      flags.FLAGS.mark_as_parsed()
    ids = ids.mp_prefetch(grain.MultiprocessingOptions(
        num_workers=config.worker_count, per_worker_buffer_size=config.worker_buffer_size))
  return PromptDataset(ids, num_batches, batches_per_epoch, per_batch, len(scan.indices),
                       scan.total - len(scan.indices))


def load_examples(config: DataConfig, split: str, *, tokenizer: Tokenizer | None = None,
                  process_index: int = 0, process_count: int = 1) -> list[dict[str, Any]]:
  """The split's examples in a fixed order (no shuffling, no epochs), e.g. for evaluation.

  With a tokenizer, prompts longer than ``max_prompt_len`` after the template are left out, as in
  the training pipeline. Processes get interleaved shards whose sizes differ by at most one.
  """
  sources = _open_sources(config, split)
  scan = _scan(sources, tokenizer, config)
  _check_scan(scan, config, split)
  records = _Records(sources, scan.indices[process_index::process_count])
  return [records[i] for i in range(len(records))]
