"""The benchmark harness refuses a busy machine, flags a run that became busy, and reports spread."""

import argparse

import pytest

from benchmarks import machine


def _args(allow_busy=False):
  return argparse.Namespace(allow_busy=allow_busy)


def _loads(monkeypatch, *values):
  it = iter(values)
  monkeypatch.setattr(machine.os, "getloadavg", lambda: (next(it), 0.0, 0.0))
  monkeypatch.setattr(machine.os, "cpu_count", lambda: 2)


def test_busy_machine_is_refused(monkeypatch):
  _loads(monkeypatch, 2.5)
  with pytest.raises(SystemExit, match="machine busy: 1-minute load 2.5 > 2 cores"):
    with machine.Session(_args()):
      pass


def test_allowed_busy_run_is_marked(monkeypatch, capsys):
  _loads(monkeypatch, 2.5, 0.5, 0.5, 0.5, 0.5)
  with machine.Session(_args(allow_busy=True)) as session:
    assert "BUSY" in session.mark()
  assert "run was BUSY" in capsys.readouterr().out


def test_quiet_run_tolerates_its_own_threads_only(monkeypatch):
  _loads(monkeypatch, 0.8, 2.9, 3.2, 3.2, 3.2)   # before; its own load; then others join in
  with machine.Session(_args()) as session:
    assert session.mark() == ""
    assert "BUSY" in session.mark()


def test_rates_and_ratio_use_medians_and_ranges():
  ours, peer = machine.Timing([1.0, 2.0, 4.0]), machine.Timing([3.0, 4.0, 8.0])
  assert ours.median == 2.0
  assert ours.rate(8.0) == "4 (2-8)"
  assert machine.ratio(ours, peer) == "2.00x (range 0.75-8.00)"


def test_timings_warm_up_once_then_time_each_call():
  calls = []
  t = machine.timings(lambda: calls.append(1), repeats=3)
  assert len(calls) == 4 and len(t.seconds) == 3
