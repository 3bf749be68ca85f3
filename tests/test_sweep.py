"""The tiny KL x clip sweep through launch/sweep.py: four real runs, one table, one heatmap."""
import csv
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_tiny_kl_clip_sweep_collects_a_table_and_heatmap(tmp_path):
  env = dict(os.environ, XLA_FLAGS="", JAX_PLATFORMS="cpu")
  proc = subprocess.run(
      [sys.executable, os.path.join(ROOT, "launch", "sweep.py"),
       f"--config={os.path.join(ROOT, 'experiments', 'r1_zero.py')}:smoke",
       f"--sweep={os.path.join(ROOT, 'experiments', 'sweeps', 'kl_clip.py')}:tiny",
       f"--workdir={tmp_path}", "--parallel=2", "--override=loop.steps=1",
       "--override=optim.total_steps=1"],   # one step is a run to its end, its KL and eval
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  rows = list(csv.DictReader(open(tmp_path / "results.csv")))
  assert sorted((float(r["rl.kl_coef"]), float(r["rl.eps_high"])) for r in rows) == [
      (0.0, 0.2), (0.0, 10.0), (0.01, 0.2), (0.01, 10.0)]
  for row in rows:  # each point really ran to its end and evaluated
    assert 0.0 <= float(row["pass@1"]) <= 1.0 and float(row["response_length"]) > 0
    assert abs(float(row["KL end"])) < 10   # the heatmap's second panel: the KL at the end
  assert "| point |" in open(tmp_path / "results.md").read()
  assert os.path.getsize(tmp_path / "heatmap.png") > 1000
  # The SLURM form writes one array task per point.
  slurm = subprocess.run(
      [sys.executable, os.path.join(ROOT, "launch", "sweep.py"),
       f"--config={os.path.join(ROOT, 'experiments', 'r1_zero.py')}:smoke",
       f"--sweep={os.path.join(ROOT, 'experiments', 'sweeps', 'kl_clip.py')}:tiny",
       f"--workdir={tmp_path / 'slurm'}", "--slurm"], cwd=ROOT, capture_output=True, text=True)
  script = open(tmp_path / "slurm" / "sweep.sbatch").read()
  assert slurm.returncode == 0 and "#SBATCH --array=0-3" in script and "rl.kl_coef=0.01" in script
