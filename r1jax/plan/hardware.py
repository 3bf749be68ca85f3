"""Peak figures of the accelerators a plan is priced on, and the efficiency assumed of them.

The planner turns compiled FLOPs, HBM bytes and collective bytes into seconds with these numbers;
every one of them is printed with the plan, so a reader can redo the arithmetic. Figures are the
vendor's dense (no sparsity) peaks; the efficiencies are assumptions, not measurements.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Accelerator:
  name: str
  hbm_bytes: float                 # memory per device
  flops_bf16: float                # dense tensor-core peak, FLOP/s
  flops_fp32: float                # TF32 tensor-core peak, used for float32 compute
  hbm_bytes_per_s: float
  node_bytes_per_s: float          # per device, inside a node (NVLink)
  cross_bytes_per_s: float         # per device, across nodes (the node's NICs / devices per node)
  devices_per_node: int = 8
  usable_fraction: float = 0.9     # of HBM for XLA: the rest is NCCL buffers and fragmentation
  mfu: float = 0.4                 # assumed model-FLOPs utilisation of the train step
  bandwidth_efficiency: float = 0.7  # assumed fraction of peak HBM / link bandwidth achieved
  # What XLA:GPU needs to compile for the card without seeing it (`gpu_target`).
  compute_capability: tuple[int, int] = (9, 0)
  sm_count: int = 132
  shared_memory_per_sm: int = 228 * 1024
  shared_memory_per_block_optin: int = 227 * 1024
  l2_cache_bytes: int = 50 * 1024 * 1024
  clock_ghz: float = 1.98

  def flops(self, compute_dtype: str) -> float:
    return self.flops_bf16 if compute_dtype in ("bfloat16", "float16") else self.flops_fp32

  def describe(self) -> str:
    return (f"{self.name}: {self.hbm_bytes / 1e9:.0f} GB HBM ({self.usable_fraction:.0%} usable), "
            f"{self.flops_bf16 / 1e12:.0f} TFLOP/s bf16 / {self.flops_fp32 / 1e12:.0f} TFLOP/s tf32 "
            f"dense, HBM {self.hbm_bytes_per_s / 1e12:.2f} TB/s, NVLink "
            f"{self.node_bytes_per_s / 1e9:.0f} GB/s/device, inter-node "
            f"{self.cross_bytes_per_s / 1e9:.0f} GB/s/device, {self.devices_per_node} per node; "
            f"assumed MFU {self.mfu:.0%}, bandwidth efficiency {self.bandwidth_efficiency:.0%}")


# H800 SXM: H100 compute and HBM3, NVLink cut to 400 GB/s; the paper's nodes have 8 x 400 Gb/s
# InfiniBand NICs, i.e. 400 GB/s per node = 50 GB/s per GPU.
H800 = Accelerator("H800 SXM", hbm_bytes=80e9, flops_bf16=989e12, flops_fp32=494e12,
                   hbm_bytes_per_s=3.35e12, node_bytes_per_s=400e9, cross_bytes_per_s=50e9)
H100 = dataclasses.replace(H800, name="H100 SXM", node_bytes_per_s=900e9)
# H200 SXM: H100 compute with 141 GB of HBM3e at 4.8 TB/s.
H200 = dataclasses.replace(H100, name="H200 SXM", hbm_bytes=141e9, hbm_bytes_per_s=4.8e12)
# A100 SXM 80 GB: NVLink 3 at 600 GB/s, nodes with 8 x 200 Gb/s HDR InfiniBand (25 GB/s per GPU).
A100 = Accelerator("A100 SXM 80GB", hbm_bytes=80e9, flops_bf16=312e12, flops_fp32=156e12,
                   hbm_bytes_per_s=2.039e12, node_bytes_per_s=600e9, cross_bytes_per_s=25e9,
                   compute_capability=(8, 0), sm_count=108, shared_memory_per_sm=164 * 1024,
                   shared_memory_per_block_optin=163 * 1024, l2_cache_bytes=40 * 1024 * 1024,
                   clock_ghz=1.41)

ACCELERATORS = {"h800": H800, "h100": H100, "h200": H200, "a100": A100}
