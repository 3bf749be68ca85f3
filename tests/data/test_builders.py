import concurrent.futures
import dataclasses
import fcntl
import json
import os
import threading
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from r1jax.data import builders, pipeline
from r1jax.data.config import DataConfig
from r1jax.data.schema import DataError
from r1jax.data.tokenizers import CharTokenizer


def _write_jsonl(path, rows):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))


def _config(tmp_path, dataset, **kwargs) -> DataConfig:
  config = DataConfig(datasets=(dataset,), data_dir=str(tmp_path / "data"),
                      manual_dir=str(tmp_path / "manual"), questions_per_step=2,
                      max_prompt_len=1024, read_threads=0, **kwargs)
  config.validate()
  return config


def _load(tmp_path, dataset, split="train", **kwargs):
  return pipeline.load_examples(_config(tmp_path, dataset, **kwargs), split)


GSM8K = [{"question": f"Tom has {i} apples and buys 1000 more. How many?",
          "answer": f"{i} + 1000 = {i + 1000}\n#### {i + 1000:,}"} for i in range(4)]


def test_gsm8k_answer_after_hashes_and_pipeline_batches(tmp_path):
  _write_jsonl(tmp_path / "manual/r1_gsm8k/train.jsonl", GSM8K)
  _write_jsonl(tmp_path / "manual/r1_gsm8k/test.jsonl", GSM8K[:2])
  examples = sorted(_load(tmp_path, "r1_gsm8k"), key=lambda e: e["source_id"])
  assert [e["gold"] for e in examples] == ["1000", "1001", "1002", "1003"]
  assert {e["data_type"] for e in examples} == {"math"}
  batch = next(iter(pipeline.make_prompt_dataset(_config(tmp_path, "r1_gsm8k"), CharTokenizer(),
                                                 "test", seed=0).dataset))
  assert batch["prompt_tokens"].shape == (2, 1024)
  assert sorted(batch["gold"]) == ["1000", "1001"]


def test_math_from_parquet_takes_the_last_boxed_answer(tmp_path):
  rows = [{"problem": "Simplify 2/4.", "solution": r"First \boxed{1}. Then $\boxed{\frac{1}{2}}$.",
           "level": "Level 3"},
          {"problem": "What is 1+1?", "solution": r"It is \boxed{2}.", "level": "Level ?"}]
  (tmp_path / "manual/r1_math").mkdir(parents=True)
  pq.write_table(pa.Table.from_pylist(rows), tmp_path / "manual/r1_math/test.parquet")
  examples = {e["prompt"]: e for e in _load(tmp_path, "r1_math", split="test")}
  assert examples["Simplify 2/4."]["gold"] == r"\frac{1}{2}"
  assert examples["Simplify 2/4."]["difficulty"] == 3
  assert examples["What is 1+1?"]["difficulty"] == 0


def test_mmlu_choices_become_lettered_options(tmp_path):
  _write_jsonl(tmp_path / "manual/r1_mmlu/eval.jsonl", [
      {"question": "Which is a noble gas?", "choices": ["O2", "Ne", "N2", "H2"], "answer": 1,
       "subject": "chemistry"},
      {"question": "2+2?", "A": "3", "B": "5", "C": "4", "D": "6", "answer": "c"}])
  examples = {e["gold"]: e for e in _load(tmp_path, "r1_mmlu", split="eval")}
  assert examples["B"]["prompt"] == "Which is a noble gas?\nA) O2\nB) Ne\nC) N2\nD) H2"
  assert examples["B"]["source_id"].startswith("chemistry/")
  assert examples["C"]["prompt"] == "2+2?\nA) 3\nB) 5\nC) 4\nD) 6"
  assert {e["data_type"] for e in examples.values()} == {"stem"}


def test_mbpp_and_humaneval_gold_are_runnable_tests(tmp_path):
  _write_jsonl(tmp_path / "manual/r1_mbpp/train.jsonl", [
      {"task_id": 601, "text": "Write a function to add two numbers.",
       "test_list": ["assert add(1, 2) == 3", "assert add(0, 0) == 0"], "test_setup_code": ""}])
  _write_jsonl(tmp_path / "manual/r1_humaneval/test.jsonl", [
      {"task_id": "HumanEval/0", "prompt": "def inc(x):\n    \"\"\"x plus one\"\"\"\n",
       "test": "def check(candidate):\n    assert candidate(1) == 2\n", "entry_point": "inc"}])
  (mbpp,) = _load(tmp_path, "r1_mbpp")
  (humaneval,) = _load(tmp_path, "r1_humaneval", split="test")
  for example, program in ((mbpp, "def add(a, b):\n  return a + b\n"),
                           (humaneval, "def inc(x):\n  return x + 1\n")):
    assert example["data_type"] == "code"
    exec(program + "\n" + example["gold"], {})  # the gold runs and passes on a right program
  assert "assert add(1, 2) == 3" in mbpp["prompt"] and humaneval["source_id"] == "HumanEval/0"


def test_generic_jsonl_maps_user_columns(tmp_path):
  _write_jsonl(tmp_path / "manual/r1_jsonl/mine/train.jsonl", [
      {"q": "Is 7 prime?", "a": "yes", "kind": "logic", "level": 2, "uid": "p7"},
      {"q": "Echo the input", "a": [{"input": "x\n", "output": "x\n"}], "kind": "code",
       "level": 1, "uid": "e1"}])
  examples = {e["source_id"]: e for e in _load(
      tmp_path, "r1_jsonl", jsonl_name="mine", jsonl_prompt="q", jsonl_gold="a",
      jsonl_type_column="kind", jsonl_difficulty_column="level", jsonl_id_column="uid")}
  assert examples["p7"] == {"prompt": "Is 7 prime?", "data_type": "logic", "gold": "yes",
                            "difficulty": 2, "source_id": "p7"}
  assert json.loads(examples["e1"]["gold"]) == [{"input": "x\n", "output": "x\n"}]


def test_procedural_builder_splits_are_disjoint(procedural_config):
  prompts = {s: {e["prompt"] for e in pipeline.load_examples(procedural_config, s)}
             for s in ("train", "eval", "test")}
  assert len(prompts["train"]) == 4 * 2 * 12 and len(prompts["test"]) == 4 * 2 * 3
  assert not (prompts["train"] & prompts["eval"] or prompts["train"] & prompts["test"]
              or prompts["eval"] & prompts["test"])


# --- bad input -------------------------------------------------------------------------------


def _error(tmp_path, dataset, rows, split="train", **kwargs) -> str:
  folder = tmp_path / "manual" / dataset / kwargs.get("jsonl_name", "")
  _write_jsonl(folder / f"{split}.jsonl", rows)
  with pytest.raises(DataError) as info:
    _load(tmp_path, dataset, split=split, **kwargs)
  return str(info.value)


def test_malformed_row_names_file_and_line(tmp_path):
  message = _error(tmp_path, "r1_gsm8k", [GSM8K[0], '{"question": "unterminated'])
  assert "r1_gsm8k/train.jsonl line 2" in message and "not valid JSON" in message


def test_missing_field_names_file_line_and_field(tmp_path):
  message = _error(tmp_path, "r1_gsm8k", [GSM8K[0], GSM8K[1], {"question": "no answer here"}])
  assert "train.jsonl line 3" in message and "missing field 'answer'" in message


@pytest.mark.parametrize("dataset, row, expected", [
    ("r1_gsm8k", {"question": "q", "answer": "no final line"}, "'answer' has no '####"),
    ("r1_math", {"problem": "p", "solution": "no box"}, "'solution' has no \\boxed"),
    ("r1_mmlu", {"question": "q", "choices": ["a", "b"], "answer": "C"}, "field 'answer' is 'C'"),
    ("r1_mbpp", {"text": "t", "test_list": []}, "field 'test_list'"),
])
def test_missing_gold_answer_is_an_error(tmp_path, dataset, row, expected):
  message = _error(tmp_path, dataset, [row])
  assert "train.jsonl line 1" in message and expected in message


def test_generic_empty_gold_and_bad_type(tmp_path):
  message = _error(tmp_path, "r1_jsonl", [{"prompt": "p", "gold": "  "}], jsonl_name="a")
  assert "line 1" in message and "'gold'" in message
  message = _error(tmp_path, "r1_jsonl", [{"prompt": "p", "gold": "1", "t": "poetry"}],
                   jsonl_name="b", jsonl_type_column="t")
  assert "line 1" in message and "field 't' is 'poetry'" in message


def test_empty_file_and_empty_dataset(tmp_path):
  (tmp_path / "manual/r1_gsm8k").mkdir(parents=True)
  (tmp_path / "manual/r1_gsm8k/train.jsonl").write_text("\n")
  with pytest.raises(DataError, match="train.jsonl: the file has no rows"):
    _load(tmp_path, "r1_gsm8k")
  with pytest.raises(DataError, match="has a 'train' split"):
    _load(tmp_path, "r1_procedural", procedural_sizes=(0, 0, 2), procedural_difficulties=(1,))


def test_missing_manual_files_say_what_to_put_where(tmp_path):
  with pytest.raises(DataError) as info:
    _load(tmp_path, "r1_humaneval")
  message = str(info.value)
  assert str(tmp_path / "manual" / "r1_humaneval") in message
  assert "train.jsonl, eval.jsonl and/or test.jsonl" in message and "'entry_point'" in message


def test_unbuilt_dataset_without_prepare(tmp_path):
  with pytest.raises(DataError, match="prepare=True"):
    _load(tmp_path, "r1_procedural", prepare=False)


def test_make_builder_rejects_unknown_names(tmp_path):
  with pytest.raises(ValueError, match="r1_gsm8k"):
    builders.make_builder("gsm9k", _config(tmp_path, "r1_gsm8k"))


def test_prepare_all_builds_once(tmp_path):
  config = _config(tmp_path, "r1_procedural", procedural_sizes=(2, 1, 1), procedural_difficulties=(1,))
  builders.prepare_all(config)
  assert builders.make_builder("r1_procedural", config).is_prepared()
  assert len(pipeline.load_examples(dataclasses.replace(config, prepare=False), "train")) == 8


def test_processes_asking_at_once_build_a_dataset_once(tmp_path, monkeypatch):
  # Two workers (threads here: each opens the lock file itself, as a process would) ask for the
  # same missing dataset together; one builds it while the other waits, then both read it.
  config = _config(tmp_path, "r1_procedural", procedural_sizes=(2, 1, 1),
                   procedural_difficulties=(1,))
  real_prepare, builds, start = builders.prepare, [], threading.Barrier(2)

  def slow_prepare(builder, config):
    builds.append(threading.get_ident())
    time.sleep(0.5)   # wide enough for the other worker to find the dataset missing too
    real_prepare(builder, config)

  monkeypatch.setattr(builders, "prepare", slow_prepare)

  def ask():
    start.wait()
    return builders.prepared("r1_procedural", config).info.splits["train"].num_examples

  with concurrent.futures.ThreadPoolExecutor(2) as pool:
    counts = [f.result() for f in [pool.submit(ask) for _ in range(2)]]
  assert len(builds) == 1 and counts == [8, 8]


def test_a_waiter_that_runs_out_of_time_names_the_lock_and_the_key(tmp_path):
  config = _config(tmp_path, "r1_procedural", procedural_sizes=(2, 1, 1), prepare_timeout_s=1)
  lock = builders.make_builder("r1_procedural", config).data_dir + ".lock"
  os.makedirs(os.path.dirname(lock))
  with open(lock, "w") as held:   # another process is preparing it
    fcntl.flock(held, fcntl.LOCK_EX)
    with pytest.raises(DataError,
                       match=r"waited 1 s .*r1_procedural.*\.lock.*data\.prepare_timeout_s"):
      builders.prepared("r1_procedural", config)
  assert builders.prepared("r1_procedural", config).is_prepared()   # released: built at once


def test_procedural_kinds_name_their_own_copy(tmp_path):
  config = _config(tmp_path, "r1_procedural", procedural_types=("math",),
                   procedural_kinds=("chain_sum",), procedural_sizes=(4, 1, 1))
  assert "_kchain_sum_" in builders.make_builder("r1_procedural", config).builder_config.name
  assert all(e["prompt"].startswith("Compute ") and "value" not in e["prompt"]
             for e in pipeline.load_examples(config, "train"))
