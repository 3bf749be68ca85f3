"""What a compiled XLA program does per step, read from its optimised HLO text.

XLA's own ``cost_analysis()`` counts the body of a ``while`` loop once, and the layer scan, the
micro-batch scan and the decode loop are all while loops, so its FLOPs are far too low for a
real step. :func:`analyse` walks the computations from ENTRY, multiplies each loop body by its
``known_trip_count`` (or by ``unknown_trip_count`` for data-dependent loops such as decoding),
and sums matmul FLOPs (2 x output elements x contracted size of every ``dot``, or of every cuBLAS
GEMM custom call XLA:GPU made of one) and the operand
bytes of every collective by kind. Each collective's replica groups are resolved to device ids
so that traffic inside a node (NVLink) is told apart from traffic across nodes (InfiniBand).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections import defaultdict

import numpy as np

COLLECTIVES = ("all-gather", "reduce-scatter", "all-reduce", "all-to-all", "collective-permute")
DTYPE_BYTES = {"pred": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "bf16": 2, "f16": 2, "s32": 4,
               "u32": 4, "f32": 4, "s64": 8, "u64": 8, "f64": 8, "c64": 8, "c128": 16,
               "f8e4m3fn": 1, "f8e5m2": 1, "token": 0}

_HEADER = re.compile(r"^(ENTRY\s+)?%(\S+)\s+\(.*\)\s+->\s+.*\{\s*$")
_INSTR = re.compile(r"^\s*(?:ROOT\s+)?%(\S+)\s+=\s+(.+?)\s+([a-z][a-z0-9\-]*)\((.*)$")
_ARRAY = re.compile(r"([a-z][a-z0-9]*)\[([0-9,]*)\]")


def _shape_bytes(text: str) -> int:
  """Bytes of a (possibly tuple) HLO shape string such as '(f32[2,3]{1,0}, s32[])'."""
  return sum(DTYPE_BYTES.get(dt, 4) * math.prod(int(d) for d in dims.split(",") if d)
             for dt, dims in _ARRAY.findall(text))


def _dims(text: str) -> list[int]:
  m = _ARRAY.search(text)
  return [int(d) for d in m.group(2).split(",") if d] if m else []


@dataclasses.dataclass
class _Instr:
  name: str
  shape: str
  op: str
  rest: str


def _parse(text: str) -> tuple[dict[str, list[_Instr]], str]:
  computations: dict[str, list[_Instr]] = {}
  entry, current = "", None
  for line in text.splitlines():
    header = _HEADER.match(line)
    if header:
      current = computations.setdefault(header.group(2), [])
      entry = header.group(2) if header.group(1) else entry
      continue
    m = _INSTR.match(line) if current is not None else None
    if m:
      current.append(_Instr(m.group(1), m.group(2), m.group(3), m.group(4)))
  if not entry:
    raise ValueError("no ENTRY computation in the HLO text")
  return computations, entry


def _operands(rest: str) -> list[str]:
  """Operand names of an instruction (the text inside its top-level parentheses)."""
  depth, end = 1, len(rest)
  for i, ch in enumerate(rest):
    depth += ch == "("
    depth -= ch == ")"
    if depth == 0:
      end = i
      break
  return re.findall(r"%([\w.\-]+)", rest[:end])


def _iota(dims: list[int], perm: list[int] | None) -> np.ndarray:
  ids = np.arange(math.prod(dims)).reshape(dims)
  return ids.transpose(perm) if perm else ids


def replica_groups(rest: str) -> list[list[int]] | None:
  """The device groups of a collective, in the explicit, iota or mesh notation; None if absent."""
  m = re.search(r"replica_groups=\{(\{[\d,]*\}(?:,\{[\d,]*\})*)\}", rest)
  if m:
    return [[int(x) for x in g.split(",") if x] for g in re.findall(r"\{([\d,]*)\}", m.group(1))]
  m = re.search(r"replica_groups=\[([\d,]+)\]<=\[([\d,]+)\](?:T\(([\d,]+)\))?", rest)
  if m:
    shape = [int(x) for x in m.group(1).split(",")]
    perm = [int(x) for x in m.group(3).split(",")] if m.group(3) else None
    return _iota([int(x) for x in m.group(2).split(",")], perm).reshape(shape).tolist()
  m = re.search(r"replica_groups=mesh\[([^\]]*)\], device_ids=\(\[([\d,]+)\](?:T\(([\d,]+)\))?\)"
                r"\s*\{([^}]*)\}", rest)
  if m:
    axes = re.findall(r"'(\w+)'=(\d+)", m.group(1))
    names, sizes = [a for a, _ in axes], [int(s) for _, s in axes]
    perm = [int(x) for x in m.group(3).split(",")] if m.group(3) else None
    ids = _iota([int(x) for x in m.group(2).split(",")], perm).reshape(sizes)
    over = [names.index(a) for a in re.findall(r"'(\w+)'", m.group(4))]
    keep = [i for i in range(len(names)) if i not in over]
    ids = ids.transpose(keep + over)
    return ids.reshape(-1, math.prod(sizes[i] for i in over) if over else 1).tolist()
  m = re.search(r"source_target_pairs=\{([\d,{}]*)\}", rest)
  if m:
    return [[int(a), int(b)] for a, b in re.findall(r"\{(\d+),(\d+)\}", m.group(1))]
  return None


@dataclasses.dataclass
class HloStats:
  """Per-device totals of one execution of a compiled program."""
  dot_flops: float
  collective_bytes: dict[str, float]           # kind -> operand bytes
  collective_bytes_by_link: dict[str, float]   # "node" (inside a node) / "cross" (across nodes)
  collective_time_terms: dict[str, float]      # link -> bytes weighted by the ring factor
  unknown_loops: int                           # while loops whose trip count had to be assumed


def _ring_factor(kind: str, n: int) -> float:
  """Bytes each device sends per operand byte for a ring implementation of `kind` over n."""
  if n <= 1:
    return 0.0
  return {"all-reduce": 2 * (n - 1) / n, "all-gather": n - 1, "reduce-scatter": (n - 1) / n,
          "all-to-all": (n - 1) / n, "collective-permute": 1.0}[kind]


def analyse(text: str, *, node_of=None,
            unknown_trip_count: float | tuple[float, ...] = 1) -> HloStats:
  """Walks the program from ENTRY. `node_of(logical_device_id) -> node index` classifies links
  (None: every collective counts as crossing nodes). `unknown_trip_count` is the trip count of a
  loop without a known one, by how many such loops enclose it (the decode loop, then the block
  loop of its filled-only attention); the last value holds for deeper ones."""
  unknown_trips = (unknown_trip_count if isinstance(unknown_trip_count, tuple)
                   else (unknown_trip_count,))
  computations, entry = _parse(text)
  flops = 0.0
  by_kind: dict[str, float] = defaultdict(float)
  by_link: dict[str, float] = defaultdict(float)
  timed: dict[str, float] = defaultdict(float)
  unknown = 0

  def walk(name: str, times: float, seen: tuple[str, ...], depth: int):
    nonlocal flops, unknown
    if name in seen or name not in computations:
      return
    shapes = {ins.name: ins.shape for ins in computations[name]}
    for ins in computations[name]:
      kind = ins.op.removesuffix("-start")
      gemm = ins.op == "custom-call" and '"gemm_backend_config"' in ins.rest
      if ins.op == "dot" or gemm:
        lhs = _dims(shapes.get(_operands(ins.rest)[0], ""))
        # XLA:GPU turns dots into cuBLAS calls whose output is (result, workspace).
        contract = re.search(r'"lhs_contracting_dimensions":\[([\d",]*)\]' if gemm else
                             r"lhs_contracting_dims=\{([\d,]*)\}", ins.rest)
        k = math.prod(lhs[int(i)] for i in contract.group(1).replace('"', "").split(",") if i
                      ) if contract else 1
        flops += times * 2.0 * math.prod(_dims(ins.shape)) * k
      elif kind in COLLECTIVES:
        size = sum(_shape_bytes(shapes.get(o, "")) for o in _operands(ins.rest))
        groups = replica_groups(ins.rest)
        n = len(groups[0]) if groups and kind != "collective-permute" else 2
        cross = node_of is None or groups is None or any(
            len({node_of(d) for d in g}) > 1 for g in groups)
        link = "cross" if cross else "node"
        by_kind[kind] += times * size
        by_link[link] += times * size
        timed[link] += times * size * _ring_factor(kind, n)
      called = re.findall(r"(?:calls|to_apply|body|condition|branch_computations)=\{?%([\w.\-]+)"
                          r"((?:,\s*%[\w.\-]+)*)", ins.rest)
      for first, more in called:
        mult, inner = times, depth
        if ins.op == "while" and f"body=%{first}" in ins.rest:
          trip = re.search(r'"known_trip_count":\{"n":"(\d+)"\}', ins.rest)
          if trip is None:
            unknown += 1
            inner = depth + 1
          mult = times * (int(trip.group(1)) if trip else
                          unknown_trips[min(depth, len(unknown_trips) - 1)])
        for callee in [first] + re.findall(r"%([\w.\-]+)", more):
          walk(callee, mult, seen + (name,), inner)

  walk(entry, 1.0, (), 0)
  return HloStats(flops, {k: by_kind.get(k, 0.0) for k in COLLECTIVES}, dict(by_link),
                  dict(timed), unknown)
