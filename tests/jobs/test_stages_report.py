"""The pipeline job's reports from stage summaries: the distillation table in the paper's layout (pass@1 /
cons@k per task), the scale table's gains, and their plots."""
import os

from r1jax.jobs.stages_report import write_stages_report


def _eval(p1, cons, by):
  return {"job": "evaluate", "wall_s": 3.0, "summary": {
      "last": {"pass@1": p1, "cons@k": cons},
      "by_difficulty": {d: {"pass@1": a, "cons@k": b} for d, (a, b) in by.items()}}}


def test_distill_table_and_plot(tmp_path):
  done = {"student_rl": {"job": "rl", "wall_s": 50.0, "output": "x", "summary": {
              "first": {"pass@1": 0.1, "cons@k": 0.0}, "last": {"pass@1": 0.2, "cons@k": 0.25}}},
          "eval_student_rl": _eval(0.2, 0.25, {"1": (0.3, 0.5), "2": (0.1, 0.0)}),
          "eval_student_distill": _eval(0.4, 0.5, {"1": (0.6, 1.0), "2": (0.2, 0.0)})}
  path = write_stages_report("distill_vs_rl", done, str(tmp_path))
  text = open(path).read()
  assert "| model | d1 pass@1 | d1 cons@k | d2 pass@1 | d2 cons@k | all pass@1 | all cons@k |" in text
  assert "| student_distill | 60.0 | 100.0 | 20.0 | 0.0 | 40.0 | 50.0 |" in text
  assert "| student_rl | rl | 50 | pass@1 10.0 -> 20.0, cons@k 0.0 -> 25.0 |" in text
  assert os.path.getsize(tmp_path / "distill_vs_rl.png") > 1000


def _rl_stages(tmp_path, weight_bytes, runs):
  """Finished rl stages {name: first -> last pass@1 (= cons@k)} sharing one export of
  `weight_bytes` (the scale table reads the parameter count from its size: 4 bytes each)."""
  export = tmp_path / "export"
  export.mkdir()
  (export / "model.safetensors").write_bytes(b"\0" * weight_bytes)
  return {f"rl_{name}": {"job": "rl", "wall_s": 1.0, "output": str(export), "summary": {
              "first": {"pass@1": a, "cons@k": a}, "last": {"pass@1": b, "cons@k": b}}}
          for name, a, b in runs}


def test_scale_table_gains_and_plot(tmp_path):
  done = _rl_stages(tmp_path, 4000, (("xs", 0.0, 0.0), ("demo", 0.2, 0.35)))
  text = open(write_stages_report("scale", done, str(tmp_path))).read()
  assert "| demo | 1,000 | 20.0 | 35.0 | +15.0 | 20.0 | 35.0 | +15.0 |" in text
  assert "| xs | 1,000 | 0.0 | 0.0 | +0.0 |" in text
  assert os.path.getsize(tmp_path / "scale.png") > 1000


def test_seeded_repeats_are_grouped_with_mean_and_spread(tmp_path):
  done = {f"eval_student_rl_s{seed}": _eval(p1, p1, {"1": (p1, p1)})
          for seed, p1 in ((0, 0.2), (1, 0.4), (2, 0.3))}
  done["eval_student_base"] = _eval(0.1, 0.0, {"1": (0.1, 0.0)})
  text = open(write_stages_report("distill_vs_rl", done, str(tmp_path))).read()
  # mean 30.0, sample sd of (20, 40, 30) = 10.0
  assert "| student_rl | 30.0 ± 10.0 (n=3) | 30.0 ± 10.0 (n=3) | 30.0 ± 10.0 (n=3) |" in text
  assert "| student_base | 10.0 | 0.0 | 10.0 | 0.0 |" in text


def test_scale_gain_spread_over_seeds(tmp_path):
  done = _rl_stages(tmp_path, 400, (("demo_s0", 0.2, 0.6), ("demo_s1", 0.3, 0.9)))
  text = open(write_stages_report("scale", done, str(tmp_path))).read()
  # gains 0.4 and 0.6: mean 50.0, sd 14.1
  assert "| demo | 100 | 25.0 ± 7.1 (n=2) | 75.0 ± 21.2 (n=2) | +50.0 ± 14.1 (n=2) |" in text
