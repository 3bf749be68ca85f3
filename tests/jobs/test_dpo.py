"""The dpo job: a rejection stage that also writes its failed samples, then DPO on (verified,
failed) pairs, through the real command line; and its config errors name the key."""
import json
import math
import os
import subprocess
import sys

import pytest
from absl import flags
from ml_collections import config_flags

from r1jax import experiment
from r1jax.config import ConfigError
from r1jax.jobs import dpo, registry
from r1jax.jobs.stages import stage_experiment
from r1jax.metrics import read_jsonl

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DPO = os.path.join(ROOT, "experiments", "dpo.py")


def _load(spec, **dpo_values):
  fv = flags.FlagValues()
  config_flags.DEFINE_config_file("config", None, "", flag_values=fv, lock_config=True)
  fv(["prog", f"--config={spec}"])
  fv.config.dpo.update(dpo_values)
  return experiment.load(fv.config)


def test_bad_values_name_the_key(tmp_path):
  with pytest.raises(ConfigError, match=r"'dpo.beta': got 0.0"):
    _load(f"{DPO}:smoke", beta=0.0)
  traces = tmp_path / "traces.jsonl"
  traces.write_text(json.dumps({"prompt": "p", "completion": "c"}) + "\n")
  with pytest.raises(ConfigError, match=r"'dpo.data'.*rejection.write_failed=true"):
    dpo.run(_load(f"{DPO}:smoke", data=str(traces)), str(tmp_path))
  # Like sft, it trains on one process's devices: a pipeline with a dpo stage refuses several.
  with pytest.raises(ValueError, match=r"its stages dpo \(dpo\) run on one process; got 2"):
    registry.check_processes(_load(f"{DPO}:smoke"), 2)


def test_rejection_then_dpo_through_the_command_line(tmp_path):
  exp = _load(f"{DPO}:tiny")
  stage = stage_experiment(exp, "dpo", {"rejection": "/r/traces.jsonl"})
  assert stage.job == "dpo" and stage.dpo.data == "/r/traces.jsonl"
  proc = subprocess.run([sys.executable, "-m", "r1jax.main", f"--config={DPO}:smoke",
                         f"--workdir={tmp_path}"], capture_output=True, text=True, timeout=600,
                        cwd=ROOT)
  assert proc.returncode == 0, proc.stderr[-3000:]
  kept = read_jsonl(str(tmp_path / "rejection" / "traces.jsonl"))
  failed = read_jsonl(str(tmp_path / "rejection" / "failed.jsonl"))
  stats = json.loads((tmp_path / "rejection" / "summary.json").read_text())
  assert len(failed) == stats["rejected"]["unverified"] > 0 and kept
  summary = json.loads((tmp_path / "dpo" / "summary.json").read_text())
  both = {r["prompt"] for r in kept} & {r["prompt"] for r in failed}
  assert summary["pairs"] >= len(both) > 0
  # The policy starts as its own reference: every margin is 0, the first loss log 2.
  assert summary["first_loss"] == pytest.approx(math.log(2), rel=1e-5)
  assert len(read_jsonl(str(tmp_path / "dpo" / "metrics.jsonl"))) == 2
  assert os.path.isfile(tmp_path / "export" / "model.safetensors")
  assert "| dpo | dpo |" in (tmp_path / "report.md").read_text()
