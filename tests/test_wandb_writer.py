"""The optional Weights & Biases writer: off unless R1JAX_WANDB_PROJECT is set; then, offline, it
logs what the JSONL files hold (one run per workdir, eval keys prefixed), read back here from the
run's own .wandb file; through the real command line with an SFT job."""
import glob
import json
import os
import struct
import subprocess
import sys
import time

import pytest

from r1jax.metrics import WANDB_PROJECT_ENV, MetricsWriter, read_jsonl

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OFFLINE = {WANDB_PROJECT_ENV: "r1jax-tests", "WANDB_MODE": "offline", "WANDB_SILENT": "true"}


def _records(path):
  """The protobuf records of a .wandb file: a ':W&B' header, then LevelDB-log blocks of 32 KiB
  whose records (crc, length, type: full / first / middle / last) may span blocks."""
  from wandb.proto import wandb_internal_pb2
  data = open(path, "rb").read()
  assert data[:4] == b":W&B"
  pos, block, buf = 7, 32768, b""
  while pos + 7 <= len(data):
    if block - pos % block < 7:          # a block's tail too short for a header is padding
      pos += block - pos % block
      continue
    _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
    if pos + 7 + length > len(data):     # still being written
      return
    chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
    if kind == 0:
      continue
    buf = chunk if kind in (1, 2) else buf + chunk
    if kind in (1, 4):
      record = wandb_internal_pb2.Record()
      record.ParseFromString(buf)
      yield record


def _history(workdir):
  (path,) = glob.glob(os.path.join(workdir, "wandb", "offline-run-*", "run-*.wandb"))
  # The wandb service may still be writing the file when finish() returns (seen on the first run
  # of a process); its last record is "exit".
  deadline = time.monotonic() + 120
  while not any(r.WhichOneof("record_type") == "exit" for r in _records(path)):
    assert time.monotonic() < deadline, f"{path} never got its exit record"
    time.sleep(0.2)
  rows = []
  for record in _records(path):
    if record.WhichOneof("record_type") == "history":
      rows.append({i.key or "/".join(i.nested_key): json.loads(i.value_json)
                   for i in record.history.item})
  return rows


def _scalars(rows, prefix=""):
  """{(step, key): value} of the logged scalars."""
  return {(r["step"], k[len(prefix):]): v for r in rows for k, v in r.items()
          if k.startswith(prefix) and not k.startswith("_") and k != "step"
          and "/_" not in k and isinstance(v, (int, float)) and not k.endswith("/size")}


def test_off_unless_configured_then_one_offline_run_per_workdir(tmp_path, monkeypatch):
  monkeypatch.delenv(WANDB_PROJECT_ENV, raising=False)
  quiet = MetricsWriter(str(tmp_path / "off"), enabled=True)
  quiet.write(1, {"loss": 1.0})
  quiet.close()
  assert not os.path.exists(tmp_path / "off" / "wandb")

  for key, value in OFFLINE.items():
    monkeypatch.setenv(key, value)
  workdir = str(tmp_path / "on")
  train = MetricsWriter(workdir, enabled=True)
  evals = MetricsWriter(workdir, filename="eval.jsonl", enabled=True)
  evals.write(0, {"pass@1": 0.25})
  train.write(1, {"reward/mean": 0.5, "loss": 2.0, "skipped": "not a number"})
  train.write_text(1, "samples/0", "Q: 1 + 1 <think>")
  evals.write(2, {"pass@1": 0.75})
  train.close()
  evals.close()
  rows = _history(workdir)
  logged = _scalars(rows)
  assert logged == {(0, "eval/pass@1"): 0.25, (1, "reward/mean"): 0.5, (1, "loss"): 2.0,
                    (2, "eval/pass@1"): 0.75}
  assert any("samples/0/_type" in r for r in rows)       # the text sample, as HTML
  # The JSONL files say the same.
  assert [r["pass@1"] for r in read_jsonl(os.path.join(workdir, "eval.jsonl"))] == [0.25, 0.75]


@pytest.mark.slow
def test_sft_job_logs_to_wandb_offline_through_the_command_line(tmp_path):
  env = dict(os.environ, XLA_FLAGS="", JAX_PLATFORMS="cpu", **OFFLINE)
  proc = subprocess.run(
      [sys.executable, "-m", "r1jax.main", f"--config={ROOT}/experiments/r1_zero.py:smoke",
       f"--workdir={tmp_path}", "--config.job=sft", "--config.sft.steps=2",
       "--config.sft.log_every=1", "--config.sft.batch_rows=2", "--config.sft.row_len=448",
       "--config.sft.max_examples=4"], cwd=ROOT, env=env, capture_output=True, text=True,
      timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  jsonl = {(r["step"], k): v for r in read_jsonl(tmp_path / "metrics.jsonl") for k, v in r.items()
           if k != "step" and isinstance(v, float)}
  assert {step for step, _ in jsonl} == {1, 2} and (1, "loss") in jsonl
  assert _scalars(_history(tmp_path)) == pytest.approx(jsonl)
