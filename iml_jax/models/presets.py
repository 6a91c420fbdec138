"""The pretrained models the study uses, by name: (family, Hugging Face hub id, shape fields of our config).

`model=<name>` in a study config selects one (`config_defaults.pretrained`); docs/study.md §7.1 lists them.
"""

PRETRAINED = {
    **{f"pythia-{size}": ("gpt_neox", f"EleutherAI/pythia-{size}-deduped", dict(
        d_model=d, n_layers=n, n_heads=h, d_mlp=4 * d)) for size, d, n, h in (
            ("70m", 512, 6, 8), ("160m", 768, 12, 12), ("410m", 1024, 24, 16), ("1b", 2048, 16, 8),
            ("1.4b", 2048, 24, 16), ("2.8b", 2560, 32, 32), ("6.9b", 4096, 32, 32))},
    **{f"gpt-neo-{size}": ("gpt_neo", f"EleutherAI/gpt-neo-{size}", dict(
        d_model=d, n_layers=n, n_heads=h, d_mlp=4 * d, local_layers=tuple(range(1, n, 2)))) for size, d, n, h in (
            ("125M", 768, 12, 12), ("1.3B", 2048, 24, 16), ("2.7B", 2560, 32, 20))},
    # The study's "gpt-neo-6B" is not a hub id; EleutherAI's 6B model is GPT-J (docs/study.md §7.1).
    "gpt-j-6b": ("gptj", "EleutherAI/gpt-j-6b", dict(d_model=4096, n_layers=28, n_heads=16, d_mlp=16384)),
    "gpt2": ("gpt2", "gpt2", dict(d_model=768, n_layers=12, n_heads=12, d_mlp=3072)),
    "llama-2-7b": ("llama", "meta-llama/Llama-2-7b-hf", dict(d_model=4096, n_layers=32, n_heads=32, d_mlp=11008)),
    "t5-small": ("t5", "google-t5/t5-small", dict(d_model=512, d_kv=64, d_ff=2048, n_heads=8, n_layers=6)),
    "t5-3b": ("t5", "google-t5/t5-3b", dict(d_model=1024, d_kv=128, d_ff=16384, n_heads=32, n_layers=24)),
}
