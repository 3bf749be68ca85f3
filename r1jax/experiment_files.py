"""Loading one experiment file from another: `experiments/` is a folder of config files, not a
package, so a file that builds on another (the pipeline on r1_zero's tiny and paper settings)
loads it by path with :func:`sibling`."""

from __future__ import annotations

import importlib.util
import os
from types import ModuleType


def sibling(config_file: str, name: str) -> ModuleType:
  """The module `name`.py from the folder of `config_file` (pass ``__file__``)."""
  path = os.path.join(os.path.dirname(os.path.abspath(config_file)), f"{name}.py")
  if not os.path.exists(path):
    raise FileNotFoundError(f"no experiment file {path}")
  spec = importlib.util.spec_from_file_location(f"r1jax_experiments_{name}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module
