"""Bad input through the real command lines (r1jax.main, r1jax.plan, r1jax.report and the
launchers) ends in a short error on stderr, naming what was wrong and what is allowed, and a
non-zero exit; --verbose or R1JAX_VERBOSE=1 brings the traceback back. Variants are listed."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = "--config=experiments/r1_zero.py:smoke"


def _run(*args, env=None):
  full = {k: v for k, v in os.environ.items() if k != "R1JAX_VERBOSE"}
  full.update(XLA_FLAGS="", JAX_PLATFORMS="cpu", **(env or {}))
  return subprocess.run([sys.executable, *args], cwd=ROOT, env=full, capture_output=True,
                        text=True, timeout=300)


def _error_lines(proc):
  """stderr without absl's own log lines ('I1130 12:00:00.000 ...')."""
  return [line for line in proc.stderr.splitlines()
          if line.strip() and not (line[:1] in "IWE" and line[1:5].isdigit())]


def _assert_short_error(proc, *phrases, max_lines=2):
  lines = _error_lines(proc)
  assert proc.returncode != 0
  assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
  # The error itself, and the one hint line of how to see the traceback.
  assert lines[-1].startswith("(rerun with --verbose"), lines
  message = lines[:-1]
  assert 1 <= len(message) <= max_lines and message[0].startswith("error: "), lines
  for phrase in phrases:
    assert phrase in "\n".join(message), (phrase, message)


@pytest.mark.parametrize("args,phrases", [
    (["--config.rl.kl_coeff=1"], ["--config.rl.kl_coeff", "'kl_coeff'", 'Did you mean "kl_coef"']),
    (["--config.rl.kl_coef=-1.0"], ["config key 'rl.kl_coef': got -1.0; allowed range: [0.0, inf]"]),
    (["--config.rl.kl_coef=abc"], ["--config.rl.kl_coef=abc", "could not convert"]),
    (["--config.base_model=/no/such/model"], ["base_model '/no/such/model'", "Hugging Face"]),
    (["--config.data.datasets=('r1_nope',)"], ["data.datasets[0]", "'r1_procedural'"]),
    (["extra"], ["unexpected arguments: ['extra']"]),
])
def test_main_bad_input_is_one_line(tmp_path, args, phrases):
  _assert_short_error(_run("-m", "r1jax.main", SMOKE, f"--workdir={tmp_path}", *args), *phrases)


def test_main_missing_files_and_flags(tmp_path):
  _assert_short_error(_run("-m", "r1jax.main", "--config=experiments/nope.py",
                           f"--workdir={tmp_path}"), "no experiment file at experiments/nope.py")
  _assert_short_error(_run("-m", "r1jax.main", SMOKE), "--workdir is required")
  _assert_short_error(_run("-m", "r1jax.main", f"--workdir={tmp_path}"), "--config")


def test_unknown_variant_lists_the_known_ones(tmp_path):
  proc = _run("-m", "r1jax.main", "--config=experiments/r1_zero.py:tinyy", f"--workdir={tmp_path}")
  _assert_short_error(proc, "unknown variant 'tinyy' of experiments/r1_zero.py", max_lines=11)
  listing = _error_lines(proc)[1:-1]
  names = [line.split()[0] for line in listing]
  assert names == ["tiny", "tiny_control", "smoke", "paper", "7b", "16b_moe", "30b", "v3", "smoke_v3"]
  assert all(len(line.split()) > 2 for line in listing)          # each with its description
  listed = _run("-m", "r1jax.main", "--config=experiments/r1_pipeline.py", "--list_variants")
  assert listed.returncode == 0, listed.stderr[-2000:]
  assert [line.split()[0] for line in listed.stdout.splitlines()] == ["tiny", "smoke", "paper"]
  assert "every stage for a step or two" in listed.stdout


def test_verbose_and_the_environment_variable_show_the_traceback(tmp_path):
  for proc in (_run("-m", "r1jax.main", SMOKE, f"--workdir={tmp_path}",
                    "--config.rl.kl_coef=-1.0", "--verbose"),
               _run("-m", "r1jax.main", SMOKE, f"--workdir={tmp_path}",
                    "--config.rl.kl_coef=-1.0", env={"R1JAX_VERBOSE": "1"})):
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr and "ConfigError" in proc.stderr


@pytest.mark.slow
def test_plan_report_and_launchers_bad_input(tmp_path):
  _assert_short_error(_run("-m", "r1jax.plan", SMOKE, "--mesh=ici:1,2,3"),
                      "config key 'ici'", "needs 4 sizes")
  _assert_short_error(_run("-m", "r1jax.plan", SMOKE, "--accelerator=tpu"),
                      "--accelerator=tpu", "h800")
  _assert_short_error(_run("-m", "r1jax.report", f"--workdir={tmp_path}"), "no eval.jsonl")
  _assert_short_error(_run("-m", "r1jax.report", "--compare", str(tmp_path)),
                      "neither a run", "nor a folder of runs")
  _assert_short_error(_run("launch/sweep.py", SMOKE, "--sweep=experiments/sweeps/nope.py",
                           f"--workdir={tmp_path}"), "--sweep: no sweep file")
  _assert_short_error(_run("launch/slurm.py", "--nodes=0", "--config=experiments/r1_zero.py",
                           f"--workdir={tmp_path}"), "--nodes and --gpus_per_node must be >= 1")
  _assert_short_error(_run("launch/slurm.py", "--config=experiments/r1_zero.py"),
                      "required: --nodes, --workdir")
