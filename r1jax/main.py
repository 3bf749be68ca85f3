"""Command line: ``python -m r1jax.main --config=experiments/<file>.py[:variant] --workdir=DIR``.

Only flag parsing lives here; the work is `r1jax.jobs.run(experiment, workdir)`. Config values
are overridden with ``--config.section.key=value``; the config is locked, so a misspelled key is
an error that lists the known keys.
"""

from absl import app, flags, logging
from ml_collections import config_flags

from r1jax import distributed

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file[:variant].",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and reports.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  distributed.initialize()
  from r1jax import experiment, jobs  # after jax.distributed is up
  exp = experiment.load(_CONFIG.value)
  logging.info("job %s in %s", exp.job, _WORKDIR.value)
  try:
    jobs.run(exp, _WORKDIR.value)
  except BaseException:
    distributed.abandon()  # several processes: exit now, the heartbeat tells the others
    raise
  distributed.shutdown()


if __name__ == "__main__":
  app.run(main)
