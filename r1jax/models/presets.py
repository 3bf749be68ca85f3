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
    # A ~100M Qwen2-shaped model for benchmarks and mid-size plans.
    "qwen2-100m": dict(vocab_size=32_000, dim=768, num_layers=12, num_heads=12, num_kv_heads=2,
                       head_dim=64, ffn_dim=2048, qkv_bias=True, max_seq_len=4096),
}
