"""The KL coefficient x clip ratio grid (R1 uses beta = 0.001; clip 0.2 is PPO's usual, 10 the
R1 stage-1 value). `get_sweep(arg)` returns (name, overrides) pairs; "tiny" is the test-sized grid."""

import itertools


def get_sweep(arg: str = ""):
  kls, clips = ((0.0, 0.01), (0.2, 10.0)) if arg == "tiny" else ((0.0, 0.001, 0.01, 0.1),
                                                                 (0.1, 0.2, 0.28, 10.0))
  return [(f"kl{kl:g}_clip{clip:g}", {"rl.kl_coef": kl, "rl.eps_low": min(clip, 0.2),
                                      "rl.eps_high": clip})
          for kl, clip in itertools.product(kls, clips)]
