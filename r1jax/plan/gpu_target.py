"""Compile-only CUDA devices: XLA:GPU builds the real programs for a card it cannot see.

With the CUDA PJRT plugin and the nvcc wheel (ptxas, libdevice) importable, JAX can describe a
topology of GPUs from a ``GpuTargetConfigProto`` (the card's compute capability, SM count,
memory) and compile for it on a machine without a GPU; :func:`compile_only_devices` returns those
devices, or None with the reason. Nothing is autotuned without a device, so only memory, HLO and
collectives of such a compile are figures; its timings are not.

`make install` puts the plugin in ``<venv>/gpu-compiler`` rather than the environment itself: a
CUDA plugin in the environment makes every CPU process log that it found no driver. The planner
re-executes itself with that directory on ``PYTHONPATH`` (:func:`pythonpath`).
"""

from __future__ import annotations

import importlib.util
import os
import sys

from r1jax.plan.hardware import Accelerator

# Where `make install` puts the plugin and the nvcc wheel (see the module doc).
SIDE_DIR = os.path.join(sys.prefix, "gpu-compiler")
# Without a device nothing is autotuned, and the Triton GEMM emitter then fails to tile some
# split-K dots of the backward; cuBLAS GEMMs compile (and have the same buffers). XLA:CPU
# ignores GPU flags.
XLA_FLAGS = ("--xla_gpu_enable_triton_gemm=false",)


def pythonpath(current: str | None) -> str | None:
  """PYTHONPATH for the planner's process: the side directory first, when it exists."""
  if not os.path.isdir(SIDE_DIR):
    return current
  parts = [p for p in (current or "").split(os.pathsep) if p and p != SIDE_DIR]
  return os.pathsep.join([SIDE_DIR] + parts)


def missing() -> str | None:
  """Why the CUDA compiler cannot run here (None when it can): it must be importable, or be in
  the side directory the planner puts on its path."""
  for module, what in (("jax_plugins.xla_cuda12", "jax-cuda12-plugin"),
                       ("nvidia.cuda_nvcc", "nvidia-cuda-nvcc-cu12 (ptxas)")):
    try:
      found = importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
      found = False
    if not (found or os.path.isdir(os.path.join(SIDE_DIR, *module.split(".")))):
      return f"{what} is not installed (make install puts it in {SIDE_DIR})"
  return None


def target_config(accel: Accelerator) -> str:
  """The card as a GpuTargetConfigProto in text form (only fields this XLA's proto knows)."""
  major, minor = accel.compute_capability
  return f"""
gpu_device_info {{
  cuda_compute_capability {{ major: {major} minor: {minor} }}
  threads_per_block_limit: 1024
  threads_per_warp: 32
  shared_memory_per_block: 49152
  shared_memory_per_block_optin: {accel.shared_memory_per_block_optin}
  shared_memory_per_core: {accel.shared_memory_per_sm}
  threads_per_core_limit: 2048
  core_count: {accel.sm_count}
  fpus_per_core: 128
  block_dim_limit_x: 2147483647
  block_dim_limit_y: 65535
  block_dim_limit_z: 65535
  memory_bandwidth: {int(accel.hbm_bytes_per_s)}
  l2_cache_size: {accel.l2_cache_bytes}
  clock_rate_ghz: {accel.clock_ghz}
  device_memory_size: {int(accel.hbm_bytes)}
  registers_per_core_limit: 65536
  registers_per_block_limit: 65536
}}
platform_name: "CUDA"
device_description_str: "{accel.name}"
"""


def compiler_name(accel: Accelerator) -> str:
  major, minor = accel.compute_capability
  return f"XLA:GPU (sm_{major}{minor}, compile-only)"


def compile_only_devices(accel: Accelerator, nodes: int, per_node: int):
  """`nodes` x `per_node` compile-only GPUs, or (None, why not)."""
  why = missing()
  if why is not None:
    return None, why
  from jax.experimental import topologies  # pylint: disable=g-import-not-at-top
  try:
    topology = topologies.get_topology_desc(
        platform="cuda", target_config=target_config(accel),
        topology=f"1x{nodes}x{per_node}")
  except Exception as e:  # the plugin is there but cannot describe the card: say so, use the CPU
    why = str(e).splitlines()[0]
    return None, f"the CUDA plugin could not make a {accel.name} topology ({why})"
  return list(topology.devices), None
