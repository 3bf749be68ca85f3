"""The import rules of the design (shared/DESIGN.md, "Import rules") hold for every module of
r1jax/, lazy imports inside functions included, and the modules import each other without a
cycle and never by a name string."""
import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "r1jax"
LOOP = ("r1jax.experience", "r1jax.train")
ORCHESTRATION = (*LOOP, "r1jax.jobs", "r1jax.plan", "r1jax.main", "r1jax.report",
                 "r1jax.experiment")
LIBRARY = ("r1jax.models", "r1jax.rollout", "r1jax.rl", "r1jax.rewards", "r1jax.data",
           "r1jax.sft", "r1jax.reward_model", "r1jax.dpo")
# part -> what it must not import: a model knows nothing of sampling or RL; sampling is
# independent of the loss; the learner takes arrays; the data pipeline feeds both.
FORBIDDEN = {
    "r1jax.models": ("r1jax.rollout", "r1jax.rl", "r1jax.rewards", "r1jax.data", *ORCHESTRATION),
    "r1jax.rollout": ("r1jax.rl", "r1jax.rewards"),
    "r1jax.rl": ("r1jax.rollout", "r1jax.rewards", "r1jax.data"),
    "r1jax.data": ("r1jax.rl", "r1jax.rollout"),
    **{lib: ("r1jax.jobs", "r1jax.train", "r1jax.main") for lib in ("r1jax.sft",
                                                                      "r1jax.reward_model",
                                                                      "r1jax.dpo")},
}
# Verifiers run in CPU worker processes: of the project, they import only themselves and config.
REWARDS_MAY_IMPORT = ("r1jax.rewards", "r1jax.config")


def _name(path: pathlib.Path) -> str:
  parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _within(module: str, part: str) -> bool:
  return module == part or module.startswith(part + ".")


def _imports(path: pathlib.Path) -> set[str]:
  """The project modules a file imports anywhere in it (``from a import b`` counts as ``a.b``
  when that is a module)."""
  found = set()
  for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
    if isinstance(node, ast.Import):
      found |= {alias.name for alias in node.names}
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
      for alias in node.names:
        sub = f"{node.module}.{alias.name}"
        found.add(sub if sub in MODULES else node.module)
  return {m for m in found if _within(m, "r1jax")}


GRAPH = {name: _imports(path) for name, path in MODULES.items()}


def test_the_graph_is_read():
  assert "r1jax.rollout" in GRAPH["r1jax.experience"]
  assert "r1jax.jobs.registry" in GRAPH["r1jax.experiment"]


@pytest.mark.parametrize("part", sorted(FORBIDDEN))
def test_part_imports_nothing_it_must_not(part):
  bad = {(m, t) for m, targets in GRAPH.items() if _within(m, part) for t in targets
         if any(_within(t, f) for f in FORBIDDEN[part])}
  assert not bad, f"{part} breaks the design's import rules: {sorted(bad)}"


def test_rewards_import_no_jax_code_of_the_project():
  bad = {(m, t) for m, targets in GRAPH.items() if _within(m, "r1jax.rewards") for t in targets
         if not any(_within(t, ok) for ok in REWARDS_MAY_IMPORT)}
  assert not bad, sorted(bad)


def test_nothing_imports_main_and_libraries_never_import_jobs_or_the_loop():
  assert not [m for m, targets in GRAPH.items() if "r1jax.main" in targets]
  bad = {(m, t) for m, targets in GRAPH.items() if any(_within(m, lib) for lib in LIBRARY)
         for t in targets if _within(t, "r1jax.jobs") or t == "r1jax.train"}
  assert not bad, sorted(bad)


def test_no_import_cycle():
  done, on_path = set(), []

  def visit(module):
    if module in on_path:
      raise AssertionError("import cycle: " + " -> ".join(on_path[on_path.index(module):]
                                                          + [module]))
    if module in done:
      return
    on_path.append(module)
    for target in sorted(GRAPH.get(module, ())):
      if target != module:
        visit(target)
    on_path.pop()
    done.add(module)

  for module in sorted(GRAPH):
    visit(module)


def _command_line_modules(tree) -> set[int]:
  """Ids of the string nodes that follow "-m" in a command line written as a list."""
  out = set()
  for node in ast.walk(tree):
    if isinstance(node, (ast.List, ast.Tuple)):
      for flag, arg in zip(node.elts, node.elts[1:]):
        if isinstance(flag, ast.Constant) and flag.value == "-m":
          out.add(id(arg))
  return out


def test_no_module_is_named_by_a_string():
  # What string dispatch looks like: a dotted module path kept as data, imported on use. A
  # command line that runs a module (python -m ...) is not dispatch.
  names = set()
  for name, path in MODULES.items():
    tree = ast.parse(path.read_text(encoding="utf-8"))
    commands = _command_line_modules(tree)
    names |= {(name, node.value) for node in ast.walk(tree) if isinstance(node, ast.Constant)
              and node.value in MODULES and id(node) not in commands}
  assert not names
