"""The model families `limit` trains and scores exactly, each through transformers' own classes (no remote code).

- mpt: ALiBi; packed rows and shared gauntlet contexts attend through limit's document attention
  (limit/models/mpt/attention.py).
- llama, mistral, qwen2, qwen3: RoPE; a packed row restarts its position ids at every document and transformers'
  own attention takes a mask that keeps documents (and gauntlet branches) apart (limit/models/rope.py).

A family is its config's `model_type`. Adding one: its tiny config below, its config names in
`limit.costs.shape_of` if they differ from Llama's, and the exactness tests' family lists.
"""

from __future__ import annotations

from limit.errors import LimitError
from limit.spec.study import TinyModel

FAMILIES = ("mpt", "llama", "mistral", "qwen2", "qwen3")
ROPE_FAMILIES = FAMILIES[1:]


def family(model_type: str | None, what: str) -> str:
    """`model_type` if limit supports it; else one line naming `what` (the model) and the supported families."""
    if model_type not in FAMILIES:
        raise LimitError(
            f"{what}: model_type '{model_type}' is not a supported family (supported: {', '.join(FAMILIES)})"
        )
    return model_type


def tiny_config(cfg: TinyModel, vocab_size: int, special: dict[str, int]):
    """transformers' config of the tiny model `cfg` describes, over a tokenizer of `vocab_size` tokens."""
    from transformers import AutoConfig, MptConfig

    if cfg.arch == "mpt":
        return MptConfig(
            d_model=cfg.d_model,
            n_heads=cfg.n_heads,
            n_layers=cfg.n_layers,
            max_seq_len=cfg.max_seq_len,
            vocab_size=vocab_size,
            **special,
        )
    return AutoConfig.for_model(
        cfg.arch,
        hidden_size=cfg.d_model,
        num_hidden_layers=cfg.n_layers,
        num_attention_heads=cfg.n_heads,
        num_key_value_heads=cfg.kv_heads,
        head_dim=cfg.d_model // cfg.n_heads,  # Qwen3's default is 128
        intermediate_size=cfg.intermediate,
        max_position_embeddings=cfg.max_seq_len,
        vocab_size=vocab_size,
        tie_word_embeddings=cfg.tied,
        sliding_window=None,  # full attention at every length, as Llama's
        **special,
    )
