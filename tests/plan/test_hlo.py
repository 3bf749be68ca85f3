"""FLOPs and trip counts read from HLO text: cuBLAS GEMM custom calls (what XLA:GPU makes of a
dot) count as the dot they replace, and data-dependent loops take their trip count by nesting."""

import pytest

from r1jax.plan import hlo

_GEMM = ('  %g = (f32[64,32]{1,0}, s8[1024]{0}) custom-call(%a, %b), '
         'custom_call_target="__cublas$lt$matmul", backend_config={"gemm_backend_config":'
         '{"dot_dimension_numbers":{"lhs_contracting_dimensions":["1"],'
         '"rhs_contracting_dimensions":["0"],"lhs_batch_dimensions":[],"rhs_batch_dimensions":[]}}}')
_DOT = "  %d = f32[64,32]{1,0} dot(%a, %b), lhs_contracting_dims={1}, rhs_contracting_dims={0}"


def _module(inner: str) -> str:
  return "\n".join([
      "%inner_body (p: (s32[], f32[64,128], f32[128,32])) -> (s32[], f32[64,128], f32[128,32]) {",
      "  %p = (s32[], f32[64,128]{1,0}, f32[128,32]{1,0}) parameter(0)",
      "  %a = f32[64,128]{1,0} get-tuple-element(%p), index=1",
      "  %b = f32[128,32]{1,0} get-tuple-element(%p), index=2",
      inner,
      "  ROOT %r = (s32[], f32[64,128]{1,0}, f32[128,32]{1,0}) tuple(%p)",
      "}",
      "%outer_body (q: (s32[], f32[64,128], f32[128,32])) -> (s32[], f32[64,128], f32[128,32]) {",
      "  %q = (s32[], f32[64,128]{1,0}, f32[128,32]{1,0}) parameter(0)",
      "  ROOT %w = (s32[], f32[64,128]{1,0}, f32[128,32]{1,0}) while(%q), condition=%cond, "
      "body=%inner_body",
      "}",
      "ENTRY %main (x: (s32[], f32[64,128], f32[128,32])) -> (s32[], f32[64,128], f32[128,32]) {",
      "  %x = (s32[], f32[64,128]{1,0}, f32[128,32]{1,0}) parameter(0)",
      "  ROOT %v = (s32[], f32[64,128]{1,0}, f32[128,32]{1,0}) while(%x), condition=%cond, "
      "body=%outer_body",
      "}",
  ])


@pytest.mark.parametrize("inner", [_GEMM, _DOT], ids=["cublas", "dot"])
def test_gemm_and_dot_flops_with_nested_unknown_loops(inner):
  stats = hlo.analyse(_module(inner), unknown_trip_count=(10, 3))
  assert stats.unknown_loops == 2
  assert stats.dot_flops == 2 * 64 * 32 * 128 * 10 * 3
  # One value holds for every depth.
  assert hlo.analyse(_module(inner), unknown_trip_count=10).dot_flops == 2 * 64 * 32 * 128 * 100
