"""Command line: ``python -m r1jax.main --config=experiments/<file>.py[:variant] --workdir=DIR``.

Only flag parsing lives here; the work is `r1jax.jobs.run(experiment, workdir)`. Config values
are overridden with ``--config.section.key=value``; the config is locked, so a misspelled key is
an error that lists the known keys. ``--list_variants`` prints the config file's variants. Bad
input ends in a one-line error (`r1jax.cli`); ``--verbose`` shows its traceback.
"""

from absl import flags, logging
from ml_collections import config_flags

from r1jax import cli, distributed

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file[:variant].",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and reports.")
_LIST = flags.DEFINE_bool("list_variants", False, "Print the config file's variants and exit.")
flags.mark_flags_as_required(["config"])


def main(argv):
  if len(argv) > 1:
    raise cli.BadInput(f"unexpected arguments: {argv[1:]} (flags are written --name=value)")
  if _LIST.value:
    print(cli.variant_listing(config_flags.get_config_filename(flags.FLAGS["config"])))
    return
  if not _WORKDIR.value:
    raise cli.BadInput("--workdir is required: the directory for checkpoints, metrics and "
                         "reports (rerunning with the same one resumes)")
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
  cli.run(main)
