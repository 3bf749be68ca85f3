"""The compile-only planner, ``python -m r1jax.plan``: an experiment's memory, FLOPs, collectives
and step time on a target mesh, from the real train step and sampler compiled on fake devices.

`__main__` (the command line), `estimate` (one layout compiled and priced, with advice),
`compiled` (lowering the real programs on abstract inputs), `hlo` (FLOPs and collective bytes
read from compiled HLO), `memory` (analytic per-device counts), `hardware` (accelerator peaks),
`render` (the printed plan).
"""
