"""Shapes of the models the paper's experiments use, as ModelConfig keyword dicts.

Experiment files pick one by name (``--config=experiments/r1_zero.py:30b``). The shapes follow
the public config.json of each model; the weights themselves come from `load_hf`.
"""

QWEN25 = dict(rope_theta=1_000_000.0, norm_eps=1e-6, qkv_bias=True, max_seq_len=32_768)

PRESETS: dict[str, dict] = {
    # Qwen2.5-1.5B / 7B / 32B: the distillation students and the 30B-class RL ablation base.
    "qwen2.5-1.5b": dict(QWEN25, vocab_size=151_936, dim=1536, num_layers=28, num_heads=12,
                         num_kv_heads=2, head_dim=128, ffn_dim=8960, tie_embeddings=True),
    "qwen2.5-7b": dict(QWEN25, vocab_size=152_064, dim=3584, num_layers=28, num_heads=28,
                       num_kv_heads=4, head_dim=128, ffn_dim=18_944),
    "qwen2.5-32b": dict(QWEN25, vocab_size=152_064, dim=5120, num_layers=64, num_heads=40,
                        num_kv_heads=8, head_dim=128, ffn_dim=27_648),
    # DeepSeekMoE 16B: 1 dense layer, then 64 fine-grained experts (top 6) + 2 shared experts.
    "deepseekmoe-16b": dict(vocab_size=102_400, dim=2048, num_layers=28, num_heads=16,
                            num_kv_heads=16, head_dim=128, ffn_dim=10_944, rope_theta=10_000.0,
                            max_seq_len=32_768,
                            moe=dict(num_experts=64, top_k=6, expert_ffn_dim=1408,
                                     shared_ffn_dim=2816, first_dense_layers=1, gating="softmax",
                                     norm_top_k=False)),
    # DeepSeek-V3(-Base) 671B, the base of R1 and R1-Zero: MLA (latent 512 + RoPE key 64, query
    # rank 1536), 3 dense layers, then 256 routed experts (top 8 within the best 4 of 8 groups,
    # sigmoid scores, aux-loss-free bias) + 1 shared expert per layer, one MTP module. The
    # released config's YaRN RoPE extension (factor 40) is not modelled: plain RoPE here.
    "deepseek-v3-671b": dict(vocab_size=129_280, dim=7168, num_layers=61, num_heads=128,
                             num_kv_heads=128, head_dim=192, ffn_dim=18_432, rope_theta=10_000.0,
                             norm_eps=1e-6, max_seq_len=163_840, mtp_layers=1, mtp_loss_weight=0.1,
                             mla=dict(kv_lora_rank=512, q_lora_rank=1536, qk_nope_head_dim=128,
                                      qk_rope_head_dim=64, v_head_dim=128),
                             moe=dict(num_experts=256, top_k=8, expert_ffn_dim=2048,
                                      shared_ffn_dim=2048, first_dense_layers=3, gating="sigmoid",
                                      norm_top_k=True, routed_scale=2.5, n_group=8, topk_group=4,
                                      balance="aux_free", bias_update_rate=1e-3)),
    # A tiny model of the same shape for tests and demos (every V3 feature, a few MB).
    "deepseek-v3-tiny": dict(vocab_size=256, dim=64, num_layers=3, num_heads=4, num_kv_heads=4,
                             head_dim=24, ffn_dim=128, rope_theta=10_000.0, max_seq_len=2048,
                             mtp_layers=1, mtp_loss_weight=0.3,
                             mla=dict(kv_lora_rank=32, q_lora_rank=24, qk_nope_head_dim=16,
                                      qk_rope_head_dim=8, v_head_dim=16),
                             moe=dict(num_experts=8, top_k=2, expert_ffn_dim=32, shared_ffn_dim=32,
                                      first_dense_layers=1, gating="sigmoid", norm_top_k=True,
                                      routed_scale=2.5, n_group=4, topk_group=2)),
    # A ~100M Qwen2-shaped model for benchmarks and mid-size plans.
    "qwen2-100m": dict(vocab_size=32_000, dim=768, num_layers=12, num_heads=12, num_kv_heads=2,
                       head_dim=64, ffn_dim=2048, qkv_bias=True, max_seq_len=4096),
}
