"""What every command line of the project does with bad input: one or two lines on stderr and a
non-zero exit, not a traceback. ``--verbose`` (or ``R1JAX_VERBOSE=1``) shows the traceback.

A bad-input error is a `ValueError` (config values, data, usage: `r1jax.config.ConfigError` and
`r1jax.data.schema.DataError` are ValueErrors), a missing file or directory, or a flag that does
not parse; anything else is a bug and keeps its traceback. :func:`run` wraps an absl program,
:func:`reporting_errors` an argparse one. Experiment files list their variants in their docstring
("Variants ...:" then one indented ``name  description`` entry each); :func:`variants` reads them.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import textwrap
import traceback
from collections.abc import Callable, Sequence

from absl import app, flags

VERBOSE_ENV = "R1JAX_VERBOSE"
EXIT_BAD_INPUT = 2
BAD_INPUT = (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError, flags.Error,
             app.UsageError)

flags.DEFINE_bool("verbose", False, f"On an error, show the traceback (or set {VERBOSE_ENV}=1).")


class BadInput(ValueError):
  """A command-line problem already phrased for the user."""


def verbose(argv: Sequence[str] | None = None) -> bool:
  """--verbose on the command line or R1JAX_VERBOSE set: read from argv, since an error can come
  before the flags are parsed."""
  argv = sys.argv if argv is None else argv
  on_argv = any(a in ("--verbose", "--verbose=true", "--verbose=True", "--verbose=1")
                for a in argv)
  return on_argv or os.environ.get(VERBOSE_ENV, "").lower() in ("1", "true", "yes")


_EXC_PREFIX = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?\w*(?:Error|Exception): ")


def message(exc: BaseException) -> str:
  """The sentence of an error a user needs, on one line. A config file's own error reaches absl
  wrapped in a formatted traceback; its last line is the sentence."""
  text = str(exc).strip() or type(exc).__name__
  if "Traceback (most recent call last)" in text:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    head = lines[0].split(": Error whilst parsing config file")[0]
    text = f"{head}: {_EXC_PREFIX.sub('', lines[-1])}"
  text = text.removeprefix("FATAL Flags parsing error: ")
  return " ".join(text.split())


def variants(config_file: str) -> dict[str, str]:
  """{variant: description} from an experiment file's docstring ({} if it lists none)."""
  import ast
  with open(config_file, encoding="utf-8") as f:
    doc = ast.get_docstring(ast.parse(f.read())) or ""
  found: dict[str, str] = {}
  names: list[str] = []
  in_block = False
  for line in doc.splitlines():
    if re.match(r"^Variants\b.*:\s*$", line):
      in_block = True
      continue
    if not in_block:
      continue
    if not line.startswith("  "):    # the block ends at the first unindented line
      break
    body = line.strip()
    if not line.startswith("   "):    # an entry: names, then the description after 2+ spaces
      head, description = (re.split(r"\s{2,}", body, maxsplit=1) + [""])[:2]
      names = [n.strip() for n in head.split(",") if n.strip()]
      found.update({name: description.strip() for name in names})
    else:                              # a continuation line of the entry's description
      for name in names:
        found[name] = f"{found[name]} {body}".strip()
  return found


def variant_listing(config_file: str) -> str:
  known = variants(config_file)
  if not known:
    return f"{config_file} has no variants (its get_config takes no variant)"
  width = max(map(len, known))
  return "\n".join(f"  {name:{width}s}  {textwrap.shorten(text, 100, placeholder=' ...')}"
                   for name, text in known.items())


def _config_path(argv: Sequence[str]) -> tuple[str, str] | None:
  """(file, variant) of --config=FILE[:VARIANT] in argv, if given."""
  for arg in argv:
    if arg.startswith("--config="):
      path, _, variant = arg[len("--config="):].partition(":")
      return path, variant
  return None


def _unknown_variant(argv: Sequence[str]) -> str | None:
  """The error for a --config variant its file does not list, with the known ones."""
  spec = _config_path(argv)
  if spec is None or not spec[1] or not os.path.isfile(spec[0]):
    return None
  known = variants(spec[0])
  if not known or spec[1] in known:
    return None
  return (f"unknown variant {spec[1]!r} of {spec[0]}; known variants:\n"
          f"{variant_listing(spec[0])}")


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with the failures of config overrides phrased as one line."""
  spec = _config_path(argv)
  if spec is not None and not os.path.isfile(spec[0]):  # ml_collections would defer this error
    raise BadInput(f"--config: no experiment file at {spec[0]} (experiment files are in "
                   "experiments/)")
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    raise BadInput(_unknown_variant(argv) or message(e)) from e
  except AttributeError as e:  # ml_collections: --config.<key> names no key of the config
    key = re.search(r"'([^'\\]+)", str(e))
    hint = re.search(r'Did you mean "([^"]+)"', str(e).replace('\\"', '"'))
    flag = next((a.split("=")[0] for a in argv if key and a.startswith("--config.")
                 and a.split("=")[0].endswith("." + key.group(1))), "--config.*")
    raise BadInput(f"{flag}: the config has no key {key.group(1) if key else '?'!r}"
                   + (f'. Did you mean "{hint.group(1)}"?' if hint else "")
                   + " (every key is listed in the experiment file's base config)") from e


def fail(exc: BaseException) -> None:
  """Prints the one-line error and how to see more, then exits non-zero."""
  print(f"error: {message(exc)}" if not isinstance(exc, BadInput) else f"error: {exc}",
        file=sys.stderr)
  print(f"(rerun with --verbose or {VERBOSE_ENV}=1 for the traceback)", file=sys.stderr)
  sys.stderr.flush()
  sys.exit(EXIT_BAD_INPUT)


def run(main: Callable[[list[str]], object], argv: list[str] | None = None) -> None:
  """absl's app.run(main) with bad input reported in one or two lines."""
  argv = list(sys.argv if argv is None else argv)
  try:
    app.run(main, argv=argv, flags_parser=_parse_flags)
  except BAD_INPUT as e:
    if verbose(argv):
      raise
    fail(e)


@contextlib.contextmanager
def reporting_errors(argv: Sequence[str] | None = None):
  """For argparse programs: bad input raised inside the block becomes the one-line error."""
  try:
    yield
  except BAD_INPUT as e:
    if verbose(argv):
      traceback.print_exc()
      sys.exit(EXIT_BAD_INPUT)
    fail(e)
