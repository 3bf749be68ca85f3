"""Code verifier: run a model's program against unit tests in the sandbox and count what passes.

Tests come in two shapes: Python ``assert`` lines (plus optional imports and helper definitions),
or a JSON list of ``{"input": str, "output": str}`` stdin/stdout pairs. Either way the jailed
program never sees an expected value. For stdin/stdout tests it gets only the inputs and the parent
compares the outputs. For asserts the parent splits each assert: the sub-expressions that call into
the program (``f(3)`` in ``assert abs(f(3) - 1.5) < 1e-6``) are evaluated in the jail and come back
as plain data, and the parent evaluates the rest of the assert itself. A program that overrides
``__eq__``, patches builtins, exits early or prints "PASSED" therefore cannot forge a pass.
"""

from __future__ import annotations

import ast
import builtins
import dataclasses
import importlib
import json
from collections.abc import Sequence

from r1jax.rewards import extract, sandbox

STATUSES = ("ok", "failed", "timeout", "memory", "crashed", "output_limit", "backstop")
MODES = ("fraction", "all_or_nothing")
# Builtins the parent may evaluate in a test's own (trusted) part; anything else is the program's.
SAFE_BUILTINS = ("abs", "all", "any", "bool", "bytes", "chr", "complex", "dict", "divmod",
                 "enumerate", "filter", "float", "frozenset", "int", "isinstance", "len", "list",
                 "map", "max", "min", "ord", "pow", "range", "repr", "reversed", "round", "set",
                 "sorted", "str", "sum", "tuple", "zip", "True", "False", "None")
# Modules a test may import and use in its trusted part (imported on both sides).
SAFE_MODULES = ("math", "cmath", "fractions", "decimal", "collections", "itertools", "functools",
                "string", "re", "heapq", "bisect", "operator", "statistics")


@dataclasses.dataclass(frozen=True)
class ExecResult:
  passed: int
  total: int
  status: str
  detail: str = ""

  @property
  def fraction(self) -> float:
    return self.passed / self.total if self.total else 0.0


@dataclasses.dataclass(frozen=True)
class _Assert:
  parent_expr: str       # evaluated in the parent, with program values bound to __v
  remote: tuple[str, ...]  # evaluated in the jail, in order


@dataclasses.dataclass(frozen=True)
class _AssertTests:
  setup: str
  modules: tuple[tuple[str, str], ...]  # (bound name, module) from safe imports
  constants: tuple[tuple[str, object], ...]  # literal assignments, bound in the parent
  asserts: tuple[_Assert, ...]


@dataclasses.dataclass(frozen=True)
class _StdioTests:
  inputs: tuple[str, ...]
  outputs: tuple[str, ...]


def execute(program: str, tests: str, *, time_limit_s: float, memory_limit_mb: int,
            wall_limit_s: float | None = None) -> ExecResult:
  """Runs ``program`` against ``tests`` in a fresh sandbox; raises ValueError for malformed tests.

  ``time_limit_s`` is the program's charged time (CPU plus idle, see ``program_clock``), so the
  verdict does not depend on how busy the host is. ``wall_limit_s`` is the wall-clock backstop
  (default: ``sandbox.Limits.backstop_s``); status ``backstop`` means it ended the run, which says
  nothing about the program (the reward service runs it once more).
  """
  spec = parse_tests(tests)
  limits = sandbox.Limits(time_s=time_limit_s, memory_mb=memory_limit_mb, wall_s=wall_limit_s)
  if isinstance(spec, _StdioTests):
    result = sandbox.run({"mode": "stdio", "program": program, "setup": "",
                          "items": list(spec.inputs)}, limits)
    verdicts = [_stdio_ok(rec, want) for rec, want in zip(result.records, spec.outputs)]
  else:
    items = [expr for a in spec.asserts for expr in a.remote]
    result = sandbox.run({"mode": "calls", "program": program, "setup": spec.setup,
                          "items": items}, limits)
    verdicts = _judge_asserts(spec, result.records)
  passed, total = sum(verdicts), len(verdicts)
  status = result.status
  if status == "ok" and passed < total:
    status = "failed"
  return ExecResult(passed, total, status, result.detail)


def judge(completion: str, tests: str, *, mode: str = "fraction", time_limit_s: float = 2.0,
          memory_limit_mb: int = 512, wall_limit_s: float | None = None) -> tuple[float, str]:
  """(reward, status) for a completion whose answer holds a fenced ```python block."""
  if mode not in MODES:
    raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
  program = extract.fenced_code(extract.answer_region(completion))
  if program is None:
    return 0.0, "no_answer"
  result = execute(program, tests, time_limit_s=time_limit_s, memory_limit_mb=memory_limit_mb,
                   wall_limit_s=wall_limit_s)
  if mode == "all_or_nothing":
    return float(result.total > 0 and result.passed == result.total), result.status
  return result.fraction, result.status


def score(completion: str, tests: str, *, mode: str = "fraction", time_limit_s: float = 2.0,
          memory_limit_mb: int = 512, wall_limit_s: float | None = None) -> float:
  return judge(completion, tests, mode=mode, time_limit_s=time_limit_s,
               memory_limit_mb=memory_limit_mb, wall_limit_s=wall_limit_s)[0]


def parse_tests(tests: str) -> _AssertTests | _StdioTests:
  """Splits a tests string into its jail part and its parent part; ValueError if malformed."""
  if tests.lstrip().startswith("["):
    try:
      pairs = json.loads(tests)
    except ValueError as e:
      raise ValueError(f"stdin/stdout tests are not valid JSON: {e}") from None
    if not pairs or not all(isinstance(p, dict) and isinstance(p.get("input"), str)
                            and isinstance(p.get("output"), str) for p in pairs):
      raise ValueError('stdin/stdout tests must be a non-empty list of {"input": str, "output": str}')
    return _StdioTests(tuple(p["input"] for p in pairs), tuple(p["output"] for p in pairs))
  try:
    tree = ast.parse(tests)
  except SyntaxError as e:
    raise ValueError(f"assert tests do not parse: {e}") from None
  setup, modules, constants, asserts = [], [], {}, []
  for stmt in tree.body:
    if isinstance(stmt, ast.Assert):
      asserts.append(_split_assert(stmt.test, {name for name, _ in modules} | set(constants)))
    else:
      setup.append(ast.unparse(stmt))
      modules.extend(_safe_imports(stmt))
      constants.update(_literal_constants(stmt))
  if not asserts:
    raise ValueError("assert tests contain no assert statement")
  return _AssertTests("\n".join(setup), tuple(modules), tuple(constants.items()), tuple(asserts))


def _literal_constants(stmt: ast.stmt) -> dict[str, object]:
  """``EPS = 1e-6``: constants the parent binds itself, so the jail cannot report another value."""
  if isinstance(stmt, ast.Assign) and all(isinstance(t, ast.Name) for t in stmt.targets):
    try:
      value = ast.literal_eval(stmt.value)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
      return {}
    return {t.id: value for t in stmt.targets}
  return {}


def _safe_imports(stmt: ast.stmt) -> list[tuple[str, str]]:
  if isinstance(stmt, ast.Import):
    return [(a.asname or a.name, a.name) for a in stmt.names if a.name in SAFE_MODULES]
  return []


def _split_assert(test: ast.expr, module_names: set[str]) -> _Assert:
  safe = set(SAFE_BUILTINS) | module_names | _locally_bound(test)
  remote: list[str] = []
  local = _locally_bound(test)

  class Split(ast.NodeTransformer):

    def generic_visit(self, node):
      if isinstance(node, ast.expr) and _calls_program(node, safe):
        if _free_names(node) & local:
          raise _Opaque()
        remote.append(ast.unparse(node))
        return ast.Subscript(ast.Name("__v", ast.Load()), ast.Constant(len(remote) - 1), ast.Load())
      return super().generic_visit(node)

  try:
    rewritten = Split().visit(ast.Expression(test))
  except _Opaque:
    # A program call depends on a comprehension variable: evaluate the whole test in the jail and
    # accept only a plain True (weaker: see docs/sandbox.md).
    return _Assert("__v[0] is True", (ast.unparse(test),))
  return _Assert(ast.unparse(ast.fix_missing_locations(rewritten)), tuple(remote))


class _Opaque(Exception):
  pass


def _calls_program(node: ast.expr, safe: set[str]) -> bool:
  """True for a name, call, attribute or subscript whose head is not one of the safe names."""
  if isinstance(node, ast.Name):
    return node.id not in safe
  if isinstance(node, ast.Call):
    return _calls_program(node.func, safe)
  if isinstance(node, (ast.Attribute, ast.Subscript)):
    return _calls_program(node.value, safe)
  return False


def _locally_bound(expr: ast.expr) -> set[str]:
  names = set()
  for node in ast.walk(expr):
    if isinstance(node, ast.comprehension):
      names |= {n.id for n in ast.walk(node.target) if isinstance(n, ast.Name)}
    elif isinstance(node, ast.Lambda):
      names |= {a.arg for a in node.args.args + node.args.kwonlyargs}
    elif isinstance(node, ast.NamedExpr):
      names.add(node.target.id)
  return names


def _free_names(node: ast.expr) -> set[str]:
  return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _judge_asserts(spec: _AssertTests, records: Sequence[dict | None]) -> list[bool]:
  scope = {"__builtins__": {n: getattr(builtins, n) for n in SAFE_BUILTINS if n[0].islower()}}
  scope.update({name: importlib.import_module(mod) for name, mod in spec.modules})
  scope.update(spec.constants)
  verdicts, k = [], 0
  for a in spec.asserts:
    values = _values(records[k:k + len(a.remote)])
    k += len(a.remote)
    verdicts.append(values is not None and _holds(a.parent_expr, scope, values))
  return verdicts


def _values(records: Sequence[dict | None]) -> list | None:
  out = []
  for rec in records:
    if rec is None or "value" not in rec:
      return None
    try:
      out.append(sandbox.decode(rec["value"]))
    except (ValueError, TypeError, KeyError, IndexError, RecursionError, OverflowError):
      return None
  return out


def _holds(expr: str, scope: dict, values: list) -> bool:
  try:
    return bool(eval(expr, dict(scope, __v=values)))  # noqa: S307 - trusted test text, plain data
  except Exception:  # noqa: BLE001 - a test that errors on the program's values fails
    return False


def _stdio_ok(record: dict | None, want: str) -> bool:
  if record is None or "value" not in record:
    return False
  try:
    got = sandbox.decode(record["value"])
  except (ValueError, TypeError, RecursionError):
    return False
  return isinstance(got, str) and _lines(got) == _lines(want)


def _lines(text: str) -> list[str]:
  """Output compared line by line, ignoring trailing spaces and trailing blank lines."""
  lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
  while lines and not lines[-1]:
    lines.pop()
  return lines
